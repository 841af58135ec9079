"""Greedy and ancestral sampling (temperature, top-k, top-p), one hypothesis per row.

Every function takes logits already masked with -inf outside the allowed ids.
"""

from __future__ import annotations

from typing import Callable, Dict, Optional

import torch

from espnet2.speechlm.inference.search import SEARCHES, SearchConfig


def _tempered(logits: torch.Tensor, cfg: SearchConfig) -> torch.Tensor:
    return logits if cfg.temperature == 1.0 else logits / cfg.temperature


def pick_greedy(logits: torch.Tensor, cfg: SearchConfig, gen: Optional[torch.Generator]) -> torch.Tensor:
    return logits.argmax(dim=-1)  # [N]


def pick_top_k(logits: torch.Tensor, cfg: SearchConfig, gen: Optional[torch.Generator]) -> torch.Tensor:
    """Sample among the k most likely ids (k clipped to the vocabulary)."""
    k = min(cfg.top_k, logits.shape[-1])
    vals, ids = _tempered(logits, cfg).topk(k, dim=-1)  # [N, k]
    probs = vals.softmax(dim=-1)  # masked ids have -inf -> probability 0
    choice = torch.multinomial(probs, 1, generator=gen)  # [N, 1]
    return ids.gather(1, choice).squeeze(1)


def pick_top_p(logits: torch.Tensor, cfg: SearchConfig, gen: Optional[torch.Generator]) -> torch.Tensor:
    """Nucleus sampling: the smallest set of ids whose probability mass reaches top_p."""
    probs, ids = _tempered(logits, cfg).softmax(dim=-1).sort(dim=-1, descending=True)  # [N, V]
    mass_before = probs.cumsum(dim=-1) - probs  # mass of strictly more likely ids
    probs = probs.masked_fill(mass_before >= cfg.top_p, 0.0)  # the top id always survives
    choice = torch.multinomial(probs, 1, generator=gen)
    return ids.gather(1, choice).squeeze(1)


PICKERS: Dict[str, Callable] = {"greedy": pick_greedy, "top_k": pick_top_k, "top_p": pick_top_p}


class SamplingSearch:
    """Each row is one independent hypothesis; `nbest` rows per example."""

    def __init__(self, cfg: SearchConfig, device: torch.device):
        self.cfg = cfg
        self.width = cfg.nbest
        self.pick = PICKERS[cfg.method]
        self.gen = None
        if cfg.seed is not None and cfg.method != "greedy":
            self.gen = torch.Generator(device=device).manual_seed(cfg.seed)

    def init_scores(self, n_examples: int, device) -> torch.Tensor:
        return torch.zeros(n_examples * self.width, device=device)

    def choose_first(self, logits0: torch.Tensor, forced0: torch.Tensor, score: torch.Tensor, ended: torch.Tensor):
        """logits0 [N, V] masked; forced0 [N] (-1 = free) -> (parent=None, tok0 [N], score [N])."""
        tok = torch.where(forced0 >= 0, forced0, self.pick(logits0, self.cfg, self.gen))
        return None, tok, score  # samples are not ranked: skip the log-prob bookkeeping

    def choose_rest(self, logits: torch.Tensor, score: torch.Tensor):
        return self.pick(logits, self.cfg, self.gen), score

    def finish(self, rows, done: torch.Tensor, results) -> torch.Tensor:
        """Move finished rows to `results`; return the indices of rows to keep decoding."""
        for n in done.nonzero().flatten().tolist():
            results[int(rows.example[n])].append(rows.frames[n, : int(rows.eos_at[n])].clone())
        return (~done).nonzero().flatten()

    def flush(self, results):
        pass


for _name in PICKERS:
    SEARCHES.register(_name)(SamplingSearch)
