"""Pass-through tokenizer for integer tokens made elsewhere (vision tokens, external codecs, ...).

Items are integer arrays, usually from the `npy` reader: [T] (one stream) or
[T, n_streams]. Nothing is learned or computed; the tokenizer only checks that
the file really holds what the config promises (integer dtype, ids in
[0, codebook_size), the stream count) so a wrong file fails at preparation
instead of silently aliasing another tokenizer's range at training time.

Config (recipe tokenizer entry, e.g. `vision: {type: precomputed, conf: {codebook_size: 8192}}`):
    codebook_size   ids per stream (required)
    n_streams       streams per frame (default 1)
    frame_rate      frames per second, if the tokens are time-aligned (optional, informational)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from espnet2.speechlm.tokenizers.abs_tokenizer import AbsTokenizer, register_tokenizer


@register_tokenizer("precomputed")
class PrecomputedTokenizer(AbsTokenizer):
    def __init__(self, codebook_size: int, n_streams: int = 1, frame_rate: Optional[float] = None):
        for key, val in (("codebook_size", codebook_size), ("n_streams", n_streams)):
            if isinstance(val, bool) or not isinstance(val, (int, np.integer)) or val < 1:
                raise ValueError(f"precomputed: {key} must be a positive integer, got {val!r}")
        self.codebook_size = int(codebook_size)
        self.n_streams = int(n_streams)
        self.frame_rate = frame_rate

    def check(self, item: Any, index: int = 0) -> np.ndarray:
        """One array -> validated int64 [T, n_streams]; raises ValueError/TypeError naming item `index`."""
        who = f"precomputed: item {index}"
        if not isinstance(item, np.ndarray):
            raise TypeError(f"{who} must be a numpy array (npy reader), got {type(item).__name__}")
        if not np.issubdtype(item.dtype, np.integer):
            raise TypeError(f"{who} has dtype {item.dtype}; precomputed tokens must be integers")
        if item.ndim == 1 and self.n_streams == 1:
            item = item.reshape(-1, 1)
        if item.ndim != 2:
            want = "[T] or [T, 1]" if self.n_streams == 1 else f"[T, {self.n_streams}]"
            raise ValueError(f"{who} has shape {item.shape}; expected {want}")
        if item.shape[1] != self.n_streams:
            raise ValueError(
                f"{who} has {item.shape[1]} streams (shape {item.shape}); config says n_streams={self.n_streams}"
            )
        if item.size:
            lo, hi = int(item.min()), int(item.max())
            if lo < 0 or hi >= self.codebook_size:
                bad = lo if lo < 0 else hi
                t, k = np.argwhere(item == bad)[0]
                raise ValueError(
                    f"{who}: id {bad} at frame {t}, stream {k} is outside [0, {self.codebook_size}) "
                    f"(codebook_size={self.codebook_size})"
                )
        return item.astype(np.int64, copy=True)

    def tokenize(self, items: Sequence[np.ndarray]) -> list[np.ndarray]:
        """arrays -> list of int64 [T_i, n_streams] (copies; the inputs may be memory-mapped)."""
        if isinstance(items, np.ndarray):
            raise TypeError("precomputed.tokenize takes a list of arrays; wrap a single one as [array]")
        return [self.check(x, i) for i, x in enumerate(items)]

    def detokenize(self, tokens: np.ndarray) -> np.ndarray:
        """[T, n_streams] (or [T] for one stream) local ids -> the same ids, validated, as int64 [T, n_streams]."""
        return self.check(np.asarray(tokens))

    @classmethod
    def load(cls, model_dir: Optional[Path], codebook_size: Optional[int] = None, n_streams: int = 1,
             frame_rate: Optional[float] = None, **conf) -> "PrecomputedTokenizer":
        if codebook_size is None:
            raise ValueError("precomputed needs `codebook_size` in its conf (ids per stream of the token files)")
        if conf:
            raise ValueError(f"precomputed: unknown conf keys {sorted(conf)} (has codebook_size, n_streams, frame_rate)")
        return cls(codebook_size, n_streams, frame_rate)
