"""Time-stamped class labels: `spk1 0.50 1.20 spk2 1.20 3.00` (diarization, sound events, VAD).

The `label` tokenizer maps a whole line to one class, so it cannot carry times.
This one reads an item as whitespace-separated triples `LABEL START END`
(seconds, 0 <= START <= END <= max_seconds), kept in the order written, and
emits three tokens per segment on one stream: label, start time, end time.

Local ids:

    0             <unk>      label not in the trained inventory
    1 .. L        labels     sorted, as seen in training (like `label`)
    L+1 .. L+G    times      k * resolution seconds, k = 0 .. G-1, G = round(max_seconds / resolution) + 1

Times are rounded half-up to the grid (`resolution`, default 0.02 s, Whisper's
step); `detokenize` writes `LABEL START END` triples back with as many decimals as
the resolution needs, so tokenize(detokenize(t)) == t and times round trip to
within resolution / 2.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Tuple

import numpy as np

from espnet2.speechlm.tokenizers.abs_tokenizer import AbsTokenizer, register_tokenizer
from espnet2.speechlm.tokenizers.label import Inventory, check_str
from espnet2.speechlm.tokenizers.music_score import grid_decimals

FILE = "timestamp.json"
Segment = Tuple[str, float, float]  # (label, start s, end s)


def parse_segments(item: str, who: str = "timestamp") -> List[Segment]:
    """`a 0.5 1.2 b 1.2 3` -> [('a', 0.5, 1.2), ('b', 1.2, 3.0)]; errors name the segment."""
    fields = item.split()
    if len(fields) % 3:
        raise ValueError(f"{who}: {len(fields)} fields is not a whole number of `LABEL START END` triples: {item!r}")
    segs = []
    for j in range(0, len(fields), 3):
        label, a, b = fields[j : j + 3]
        text = " ".join(fields[j : j + 3])
        try:
            start, end = float(a), float(b)
        except ValueError:
            raise ValueError(f"{who}: segment {j // 3} {text!r}: start and end must be seconds") from None
        if not (math.isfinite(start) and math.isfinite(end)) or start < 0 or end < start:
            raise ValueError(f"{who}: segment {j // 3} {text!r}: need 0 <= start <= end")
        segs.append((label, start, end))
    return segs


@register_tokenizer("timestamp")
class TimestampTokenizer(AbsTokenizer):
    def __init__(self, labels: Inventory, resolution: float = 0.02, max_seconds: float = 30.0):
        if not resolution > 0 or not max_seconds >= resolution:
            raise ValueError(f"timestamp: need 0 < resolution <= max_seconds, got {resolution}, {max_seconds}")
        self.labels = labels
        self.resolution = float(resolution)
        self.max_seconds = float(max_seconds)
        self.n_times = int(round(max_seconds / resolution)) + 1
        self.time_offset = len(labels)
        self.codebook_size = self.time_offset + self.n_times
        self.n_streams = 1
        self._decimals = grid_decimals(self.resolution)

    def time_id(self, seconds: float) -> int:
        """Seconds -> local id of the nearest grid time (half-up); -1 beyond max_seconds."""
        k = math.floor(seconds / self.resolution + 0.5 + 1e-9)
        return self.time_offset + k if k < self.n_times else -1

    def encode_segments(self, segs: Sequence[Segment], who: str = "timestamp") -> np.ndarray:
        ids = np.empty((len(segs), 3), dtype=np.int64)
        for j, (label, start, end) in enumerate(segs):
            t0, t1 = self.time_id(start), self.time_id(end)
            if t1 < 0:
                raise ValueError(f"{who}: segment {j} ({label} {start} {end}) ends after max_seconds={self.max_seconds}")
            ids[j] = (self.labels.index.get(label, 0), t0, t1)
        return ids.reshape(-1, 1)  # [3 * n_segments, 1]

    def tokenize(self, items: Sequence[str]) -> list[np.ndarray]:
        """items -> list of [3 * n_segments, 1] int64 (label, start, end per segment)."""
        if isinstance(items, str):
            raise TypeError("timestamp.tokenize takes a list of items; wrap a single one as [item]")
        out = []
        for i, x in enumerate(items):
            who = f"timestamp: item {i}"
            out.append(self.encode_segments(parse_segments(check_str(x, i, "timestamp"), who), who))
        return out

    def decode_segments(self, tokens: np.ndarray) -> List[Segment]:
        ids = np.asarray(tokens).reshape(-1)
        if ids.size % 3:
            raise ValueError(f"timestamp: {ids.size} tokens is not a whole number of (label, start, end) segments")
        segs = []
        for j, (lab, t0, t1) in enumerate(ids.reshape(-1, 3).tolist()):
            if not 0 <= lab < self.time_offset:
                raise ValueError(f"timestamp: segment {j}: token {lab} is not a label")
            for t in (t0, t1):
                if not self.time_offset <= t < self.codebook_size:
                    raise ValueError(f"timestamp: segment {j}: token {t} is not a time")
            start, end = ((t - self.time_offset) * self.resolution for t in (t0, t1))
            segs.append((self.labels.symbols[lab], round(start, self._decimals), round(end, self._decimals)))
        return segs

    def detokenize(self, tokens: np.ndarray) -> str:
        """[3 * n_segments, 1] -> `LABEL START END ...` text."""
        d = self._decimals
        return " ".join(f"{lab} {a:.{d}f} {b:.{d}f}" for lab, a, b in self.decode_segments(tokens))

    def token_strings(self) -> list[str]:
        d = self._decimals
        return list(self.labels.symbols) + [f"<t{k * self.resolution:.{d}f}>" for k in range(self.n_times)]

    # --- training and persistence -------------------------------------------------------
    @classmethod
    def needs_training(cls) -> bool:
        return True

    @classmethod
    def train(cls, items: Iterable[str], out_dir: Path, resolution: float = 0.02, max_seconds: float = 30.0,
              min_count: int = 1, **conf) -> "TimestampTokenizer":
        """Label inventory of the training items (labels seen >= min_count times)."""
        segs = [parse_segments(check_str(x, i, "timestamp"), f"timestamp: item {i}") for i, x in enumerate(items)]
        if not any(segs):
            raise ValueError("timestamp.train: got no segments")
        labels = Inventory.fit(([lab for lab, _, _ in s] for s in segs), min_count=min_count)
        labels.save(Path(out_dir) / FILE, resolution=resolution, max_seconds=max_seconds)
        return cls(labels, resolution, max_seconds)

    @classmethod
    def load(cls, model_dir: Optional[Path], **conf) -> "TimestampTokenizer":
        if model_dir is None:
            raise ValueError("timestamp needs a trained model_dir (its label inventory)")
        labels, meta = Inventory.read(Path(model_dir) / FILE)
        for key in ("resolution", "max_seconds"):
            if key in conf and float(conf[key]) != float(meta[key]):
                raise ValueError(
                    f"timestamp: {key}={conf[key]!r} in config but the tokenizer was trained with {meta[key]!r}"
                )
        return cls(labels, meta["resolution"], meta["max_seconds"])
