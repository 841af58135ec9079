"""Codebook patterns: where stream k of frame t sits in the sequence the body reads.

A pattern is data (one shift per stream) plus two pure functions:
    build:  frames [B, T, nq] -> rows [B, T + D, nq], rows[t + shift[k], k] = frames[t, k]
    revert: rows   [B, T + D, nq] -> frames [B, T, nq]
with D = max(shift). Rows no frame maps to are filled (PAD for tokens, 0 for weights).
The sequence is *extended* by D rows, never truncated, so every frame token survives.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from espnet2.speechlm.registry import Registry

PATTERNS: Registry = Registry("codebook pattern")


@dataclass(frozen=True)
class CodebookPattern:
    shifts: tuple[int, ...]  # shift[k] >= 0 rows for stream k; shift[0] == 0

    @property
    def max_shift(self) -> int:
        return max(self.shifts)

    @property
    def n_streams(self) -> int:
        return len(self.shifts)

    def build(self, frames: torch.Tensor, fill=0) -> torch.Tensor:
        """frames [B, T, nq] -> rows [B, T + D, nq]."""
        B, T, nq = frames.shape
        assert nq == self.n_streams, f"pattern has {self.n_streams} streams, input has {nq}"
        rows = frames.new_full((B, T + self.max_shift, nq), fill)
        for k, s in enumerate(self.shifts):
            rows[:, s: s + T, k] = frames[:, :, k]
        return rows

    def revert(self, rows: torch.Tensor) -> torch.Tensor:
        """rows [B, T + D, nq] -> frames [B, T, nq]."""
        T = rows.shape[1] - self.max_shift
        return torch.stack([rows[:, s: s + T, k] for k, s in enumerate(self.shifts)], dim=2)


@PATTERNS.register("delay")
def delay_pattern(n_streams: int) -> CodebookPattern:
    """MusicGen-style: stream k is k rows late, so it is predicted after seeing streams < k of its frame."""
    return CodebookPattern(tuple(range(n_streams)))


@PATTERNS.register("parallel")
def parallel_pattern(n_streams: int) -> CodebookPattern:
    """All streams of a frame in one row, predicted together."""
    return CodebookPattern((0,) * n_streams)


def custom_pattern(shifts: Sequence[int]) -> CodebookPattern:
    return CodebookPattern(tuple(int(s) for s in shifts))
