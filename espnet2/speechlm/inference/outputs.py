"""Turn generated token rows back into Kaldi-style outputs (text lines, wav files)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import soundfile as sf

from espnet2.speechlm.vocab import PAD, JointVocabulary


class OutOfRangeToken(ValueError):
    """A generated id outside the target tokenizer's range: the hypothesis cannot be written as is."""


def target_tokens(vocab: JointVocabulary, name: str, rows: np.ndarray) -> np.ndarray:
    """Generated rows [T, nq] (global ids) -> local ids [T', n_streams] of tokenizer `name`.

    Decoding stops at the first row whose stream-0 token is an indicator (it opens a
    further item): only the first target is kept. Any other id outside the target's
    range (or a non-PAD id in a stream the target does not have) raises OutOfRangeToken:
    clipping it into range or cutting the hypothesis there would silently change the output.
    """
    r = vocab.range(name)
    rows = np.asarray(rows)
    opens = np.isin(rows[:, 0], list(vocab.indicators.values()))
    rows = rows[: int(np.argmax(opens)) if opens.any() else len(rows)]
    local = vocab.to_local(name, rows[:, : r.n_streams])
    sizes = np.array([r.stream_size(k) for k in range(r.n_streams)])
    bad = (local < 0) | (local >= sizes)
    if bad.any():
        t, k = (int(x) for x in np.argwhere(bad)[0])
        lo, hi = r.used_range(k)
        raise OutOfRangeToken(f"frame {t} stream {k}: id {int(rows[t, k])} is outside tokenizer {name!r} "
                              f"(its stream {k} ids are {lo}..{hi - 1})")
    extra = rows[:, r.n_streams :] != PAD
    if extra.any():
        t, k = (int(x) for x in np.argwhere(extra)[0])
        raise OutOfRangeToken(f"frame {t} stream {k + r.n_streams}: id {int(rows[t, k + r.n_streams])} where "
                              f"tokenizer {name!r} has {r.n_streams} stream(s) and only <pad> may follow")
    return local


class OutputWriter:
    """Writes `text`, `wav.scp` + wav/*.wav, or `token` lines, one per example (nbest suffixes)."""

    def __init__(self, out_dir: Path, nbest: int = 1):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.nbest = nbest
        self._files: dict = {}

    def _file(self, name: str):
        if name not in self._files:
            self._files[name] = open(self.out_dir / name, "w", encoding="utf-8")
        return self._files[name]

    def _suffix(self, rank: int) -> str:
        return "" if rank == 0 else f"_nbest{rank + 1}"

    def write(self, example_id: str, rank: int, decoded, sample_rate: Optional[int], tokens: np.ndarray) -> None:
        sfx = self._suffix(rank)
        self._file(f"token{sfx}").write(f"{example_id} {' '.join(map(str, tokens.reshape(-1).tolist()))}\n")
        if isinstance(decoded, str):
            self._file(f"text{sfx}").write(f"{example_id} {decoded}\n")
        elif isinstance(decoded, np.ndarray) and sample_rate:
            wav_dir = self.out_dir / f"wav{sfx}"
            wav_dir.mkdir(exist_ok=True)
            path = (wav_dir / f"{example_id}.wav").resolve()
            sf.write(path, np.clip(decoded, -1.0, 1.0).astype(np.float32), sample_rate, subtype="PCM_16")
            self._file(f"wav.scp{sfx}").write(f"{example_id} {path}\n")

    def write_logprob(self, example_id: str, logprob: float, n_tokens: int) -> None:
        self._file("logprob").write(f"{example_id} {logprob:.6f} {n_tokens}\n")

    def write_failure(self, example_id: str, reason: str) -> None:
        self._file("failed").write(f"{example_id} {reason}\n")

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()
