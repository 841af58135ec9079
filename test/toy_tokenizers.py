"""A toy audio tokenizer for tests, used through the `module:Class` plugin form of the registry."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from espnet2.speechlm.tokenizers.abs_tokenizer import AbsTokenizer


class ToyAudioTokenizer(AbsTokenizer):
    """Two streams per 10 ms frame: quantised log-energy and zero-crossing count (test only)."""

    sample_rate = 16000
    frame_rate = 100.0

    def __init__(self, codebook_size: int = 16):
        self.codebook_size = codebook_size
        self.n_streams = 2

    def tokenize(self, items: Sequence[np.ndarray]) -> list[np.ndarray]:
        out = []
        for wav in items:
            frames = wav[: len(wav) // 160 * 160].reshape(-1, 160)  # [T, 160]
            energy = np.log10(1e-6 + (frames**2).mean(axis=1))  # [T]
            zc = (np.diff(np.sign(frames), axis=1) != 0).sum(axis=1)  # [T]
            e = np.clip(((energy + 6) / 6 * self.codebook_size).astype(int), 0, self.codebook_size - 1)
            z = np.clip(zc * self.codebook_size // 160, 0, self.codebook_size - 1)
            out.append(np.stack([e, z], axis=1).astype(np.int64))  # [T, 2]
        return out

    @classmethod
    def load(cls, model_dir: Optional[Path], **conf) -> "ToyAudioTokenizer":
        return cls(**conf)
