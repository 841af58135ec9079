"""Joint vocabulary: fixed special slots 0-255, then one contiguous range per tokenizer.

Layout (never renumbered once a model is trained):

    0 <pad>   1 <unk>   2 <sos/eos>
    16-63     tokenizer indicators  (<text_start>, <codec_start>, ...)
    64-191    task tokens           (<task_asr>, <task_tts>, ...)
    192-255   reserved
    256-      tokenizer ranges, in the order they were first added

Known indicators and tasks have fixed slots below; a new tokenizer name or task
takes the first free slot of its block and is recorded in the vocabulary file,
so re-preparing with an extra task or tokenizer keeps every existing id.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional

import numpy as np

PAD, UNK, SOS_EOS = 0, 1, 2
N_SPECIAL = 256
INDICATOR_BLOCK = (16, 64)
TASK_BLOCK = (64, 192)

# Fixed slots. Append only: never reorder or delete an entry.
KNOWN_INDICATORS: Dict[str, int] = {
    name: INDICATOR_BLOCK[0] + i
    for i, name in enumerate(
        [
            "text", "g2p", "codec", "ssl", "codec_ssl", "spk", "spk_id", "label",
            "vision", "music_score", "llm_embed", "text_src", "text_tgt", "audio",
        ]
    )
}
KNOWN_TASKS: Dict[str, int] = {
    name: TASK_BLOCK[0] + i
    for i, name in enumerate(
        [
            "textlm", "audiolm", "asr", "tts", "mt", "st", "s2st", "text_to_audio",
            "text_to_music", "audio_caption", "svs", "se", "tse", "visual_tts",
            "codec_ssl_asr", "codec_ssl_tts", "codec_ssl_audiolm", "codec_ssl_denoise",
        ]
    )
}


@dataclass
class TokenizerRange:
    """Where one tokenizer's ids live: stream k occupies [offset + k*cb, offset + (k+1)*cb)."""

    name: str
    type: str
    offset: int
    codebook_size: int
    n_streams: int
    # ids stream k really uses, when streams differ (codec_ssl: SSL units + codec codes);
    # None: every stream uses all codebook_size ids. The layout (stream_range) stays uniform.
    stream_sizes: Optional[List[int]] = None

    def __post_init__(self):
        if self.stream_sizes is not None:
            self.stream_sizes = [int(n) for n in self.stream_sizes]
            if len(self.stream_sizes) != self.n_streams or not all(
                    0 < n <= self.codebook_size for n in self.stream_sizes):
                raise ValueError(f"tokenizer {self.name!r}: stream_sizes {self.stream_sizes} must give "
                                 f"{self.n_streams} sizes in 1..{self.codebook_size}")

    @property
    def size(self) -> int:
        return self.codebook_size * self.n_streams

    def stream_range(self, k: int) -> tuple[int, int]:
        lo = self.offset + k * self.codebook_size
        return lo, lo + self.codebook_size

    def stream_size(self, k: int) -> int:
        return self.codebook_size if self.stream_sizes is None else self.stream_sizes[k]

    def used_range(self, k: int) -> tuple[int, int]:
        """The ids stream k can hold: the head and the modality mask allow only these."""
        lo = self.offset + k * self.codebook_size
        return lo, lo + self.stream_size(k)


@dataclass
class JointVocabulary:
    indicators: Dict[str, int] = field(default_factory=dict)
    tasks: Dict[str, int] = field(default_factory=dict)
    ranges: List[TokenizerRange] = field(default_factory=list)

    # --- construction -------------------------------------------------------------
    def add_task(self, task: str) -> int:
        if task not in self.tasks:
            self.tasks[task] = KNOWN_TASKS.get(task) or self._free_slot(TASK_BLOCK, "task")
        return self.tasks[task]

    def add_tokenizer(self, name: str, type_: str, codebook_size: int, n_streams: int,
                      stream_sizes: Optional[List[int]] = None) -> TokenizerRange:
        """Add a tokenizer range and its indicator; an existing one must match exactly."""
        if name in self.indicators and self.has_range(name):
            old = self.range(name)
            if old.stream_sizes is None and stream_sizes is not None and (old.codebook_size, old.n_streams) == (
                    codebook_size, n_streams):  # a vocabulary from before stream sizes: same ids, now bounded
                old.stream_sizes = [int(n) for n in stream_sizes]
                old.__post_init__()
            if (old.codebook_size, old.n_streams, old.stream_sizes) != (
                    codebook_size, n_streams, None if stream_sizes is None else [int(n) for n in stream_sizes]):
                raise ValueError(
                    f"tokenizer {name!r} changed shape: vocabulary has "
                    f"{old.codebook_size}x{old.n_streams}, new is {codebook_size}x{n_streams}; "
                    "use a new tokenizer name instead of renumbering a trained model"
                )
            return old
        self.indicators[name] = KNOWN_INDICATORS.get(name) or self._free_slot(INDICATOR_BLOCK, "indicator")
        rng = TokenizerRange(name, type_, self.size, codebook_size, n_streams, stream_sizes)
        self.ranges.append(rng)
        return rng

    def _free_slot(self, block: tuple[int, int], kind: str) -> int:
        taken = set(self.indicators.values()) | set(self.tasks.values())
        fixed = set(KNOWN_INDICATORS.values()) | set(KNOWN_TASKS.values())
        for slot in range(*block):
            if slot not in taken and slot not in fixed:
                return slot
        raise ValueError(f"no free {kind} slot left in {block}")

    # --- lookup -------------------------------------------------------------------
    @property
    def size(self) -> int:
        return N_SPECIAL + sum(r.size for r in self.ranges)

    @property
    def max_streams(self) -> int:
        return max((r.n_streams for r in self.ranges), default=1)

    def has_range(self, name: str) -> bool:
        return any(r.name == name for r in self.ranges)

    def range(self, name: str) -> TokenizerRange:
        for r in self.ranges:
            if r.name == name:
                return r
        raise KeyError(f"tokenizer {name!r} is not in the vocabulary (has: {[r.name for r in self.ranges]})")

    def indicator(self, name: str) -> int:
        if name not in self.indicators:
            raise KeyError(f"no indicator for tokenizer {name!r}")
        return self.indicators[name]

    def task(self, name: str) -> int:
        if name not in self.tasks:
            raise KeyError(f"task {name!r} is not in the vocabulary (has: {sorted(self.tasks)})")
        return self.tasks[name]

    def range_of_indicator(self, indicator_id: int) -> TokenizerRange:
        for name, idx in self.indicators.items():
            if idx == indicator_id:
                return self.range(name)
        raise KeyError(f"{indicator_id} is not an indicator id")

    def to_global(self, name: str, local: np.ndarray) -> np.ndarray:
        """[T, n_streams] local ids -> global ids (stream k shifted by k * codebook_size)."""
        r = self.range(name)
        local = np.asarray(local, dtype=np.int64)
        if local.ndim != 2 or local.shape[1] != r.n_streams:
            raise ValueError(f"{name}: expected [T, {r.n_streams}] tokens, got {local.shape}")
        if local.size and (local.min() < 0 or local.max() >= r.codebook_size):
            raise ValueError(f"{name}: local ids outside [0, {r.codebook_size})")
        return local + r.offset + np.arange(r.n_streams) * r.codebook_size

    def to_local(self, name: str, global_ids: np.ndarray) -> np.ndarray:
        r = self.range(name)
        return np.asarray(global_ids, dtype=np.int64) - r.offset - np.arange(r.n_streams) * r.codebook_size

    def special_names(self) -> Dict[int, str]:
        names = {PAD: "<pad>", UNK: "<unk>", SOS_EOS: "<sos/eos>"}
        names.update({i: f"<{n}_start>" for n, i in self.indicators.items()})
        names.update({i: f"<task_{n}>" for n, i in self.tasks.items()})
        return names

    # --- persistence --------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "format": "espnet-speechlm-vocab/1",
            "size": self.size,
            "specials": {"pad": PAD, "unk": UNK, "sos_eos": SOS_EOS},
            "indicators": self.indicators,
            "tasks": self.tasks,
            "ranges": [{k: v for k, v in asdict(r).items() if k != "stream_sizes" or v is not None}
                       for r in self.ranges],
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> "JointVocabulary":
        return cls(
            indicators=dict(d["indicators"]),
            tasks=dict(d["tasks"]),
            ranges=[TokenizerRange(**r) for r in d["ranges"]],
        )

    def save(self, out_dir: Path, token_strings: Optional[Dict[str, List[str]]] = None) -> None:
        """Write vocab.json (machine) and vocab.txt (one `id token` per line, for people)."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        tmp = out_dir / "vocab.json.tmp"
        tmp.write_text(json.dumps(self.to_dict(), indent=2))
        tmp.replace(out_dir / "vocab.json")
        names = self.special_names()
        lines = [f"{i} {names.get(i, f'<reserved_{i}>')}" for i in range(N_SPECIAL)]
        for r in self.ranges:
            strings = (token_strings or {}).get(r.name)
            for k in range(r.n_streams):
                for j in range(r.codebook_size):
                    tok = strings[j] if strings and k == 0 and j < len(strings) else str(j)
                    lines.append(f"{r.stream_range(k)[0] + j} {r.name}:{k}:{tok}")
        (out_dir / "vocab.txt").write_text("\n".join(lines) + "\n")

    @classmethod
    def load(cls, path: Path) -> "JointVocabulary":
        path = Path(path)
        if path.is_dir():
            path = path / "vocab.json"
        return cls.from_dict(json.loads(path.read_text()))
