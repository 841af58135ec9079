"""Search configuration and the registry of search strategies.

A strategy decides, once per decoding step, the stream-0 token of every hypothesis
(possibly re-ranking / duplicating hypotheses, as beam search does) and then the
tokens of streams 1..nq-1. The decoding loop (`decoding.py`) owns everything else:
cache, layout, modality masks, length limits, stopping.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from espnet2.speechlm.registry import Registry

SEARCHES: Registry = Registry("search method")


@dataclass
class SearchConfig:
    method: str = "greedy"  # greedy | top_k | top_p | beam
    temperature: float = 1.0
    top_k: int = 20
    top_p: float = 0.9
    beam_size: int = 4
    nbest: int = 1  # hypotheses returned per example (sampling: independent samples)
    # lengths count *frames* of the continuation (eos excluded), relative to the prefix length
    min_len_ratio: float = 0.0  # eos is masked until ceil(min_len_ratio * prefix_len) frames exist
    max_len_ratio: float = 10.0  # eos is forced after floor(max_len_ratio * prefix_len) frames
    max_new_tokens: int = 1024  # absolute cap on continuation frames
    seed: Optional[int] = 0

    def __post_init__(self):
        if self.temperature <= 0:
            raise ValueError("temperature must be > 0 (use method='greedy' for argmax)")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError("top_p must be in (0, 1]")
        if self.nbest < 1 or self.beam_size < 1:
            raise ValueError("nbest and beam_size must be >= 1")
        if self.method == "beam" and self.nbest > self.beam_size:
            raise ValueError(f"nbest ({self.nbest}) cannot exceed beam_size ({self.beam_size})")
