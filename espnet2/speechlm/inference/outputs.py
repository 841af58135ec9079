"""Turn generated token rows back into Kaldi-style outputs (text lines, wav files)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import soundfile as sf

from espnet2.speechlm.vocab import JointVocabulary


def target_tokens(vocab: JointVocabulary, name: str, rows: np.ndarray) -> np.ndarray:
    """Generated rows [T, nq] (global ids) -> local ids [T', n_streams] of tokenizer `name`.

    Decoding stops at the first row whose stream-0 token is outside the tokenizer's
    range (an indicator that opens a further item): only the first target is kept.
    """
    r = vocab.range(name)
    lo, hi = r.stream_range(0)
    first = np.asarray(rows[:, 0])
    inside = (first >= lo) & (first < hi)
    end = int(np.argmin(inside)) if not inside.all() else len(first)
    local = vocab.to_local(name, np.asarray(rows[:end, : r.n_streams]))
    return np.clip(local, 0, r.codebook_size - 1)


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
