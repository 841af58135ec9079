"""The one interface every tokenizer family implements.

A tokenizer turns a batch of raw items (strings, waveforms, ...) into integer
arrays of shape [T, n_streams] holding *local* ids in [0, codebook_size).
The joint vocabulary (`espnet2.speechlm.vocab`) maps local ids of stream k to
global ids `offset + k * codebook_size + local`, so a tokenizer never needs to
know where its range lives.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from espnet2.speechlm.registry import Registry

TOKENIZERS: Registry = Registry("tokenizer")


def register_tokenizer(name: str):
    """Class decorator: `@register_tokenizer("sentencepiece")`."""
    return TOKENIZERS.register(name)


class AbsTokenizer(ABC):
    """Base class. Subclasses set the four attributes in __init__ (or as properties)."""

    #: ids per stream
    codebook_size: int
    #: number of parallel streams (1 for text, nq for a codec)
    n_streams: int = 1
    #: frames per second for audio tokenizers, None for text-like ones
    frame_rate: Optional[float] = None
    #: sample rate the tokenizer expects for waveform input (None if not audio)
    sample_rate: Optional[int] = None

    @property
    def vocab_size(self) -> int:
        """Size of this tokenizer's range in the joint vocabulary."""
        return self.codebook_size * self.n_streams

    @abstractmethod
    def tokenize(self, items: Sequence[Any]) -> list[np.ndarray]:
        """Batch of raw items -> list of int64 arrays [T_i, n_streams]."""

    def detokenize(self, tokens: np.ndarray) -> Any:
        """[T, n_streams] local ids -> raw item (text or waveform)."""
        raise NotImplementedError(f"{type(self).__name__} has no decoder")

    def token_strings(self) -> list[str]:
        """Human-readable names of the local ids of stream 0 (used in vocab.txt)."""
        return [str(i) for i in range(self.codebook_size)]

    # --- training and persistence -------------------------------------------------
    @classmethod
    def needs_training(cls) -> bool:
        return False

    @classmethod
    def train(cls, items: Sequence[Any], out_dir: Path, **conf) -> "AbsTokenizer":
        """Fit on raw items and save to out_dir (only for trainable tokenizers)."""
        raise NotImplementedError(f"{cls.__name__} is not trainable")

    @classmethod
    @abstractmethod
    def load(cls, model_dir: Optional[Path], **conf) -> "AbsTokenizer":
        """Build from a directory written by `train` (or from conf alone)."""
