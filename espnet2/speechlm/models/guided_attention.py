"""Guided attention: a training loss that teaches chosen heads to read the text monotonically.

Why: a decoder-only TTS model must discover by itself which phone each audio frame says.
On the mini recipe it had not after 3,000 steps: its teacher-forced loss was the same with
the phones of each utterance shuffled (docs/mini_en_ablations.md, row G). Tacotron-style
models met the same wall and got past it with a diagonal prior on the attention (Tachibana
et al. 2018, "guided attention"); here the prior is put on a few self-attention heads of the
decoder, from the audio frames (queries) to the phones of the condition (keys).

For one example with N source tokens (condition tokens of the chosen tokenizers, e.g. `phn`)
at rows s_0 < ... < s_{N-1} and M target queries (the rows whose next stream-0 token is a
target) q_0 < ... < q_{M-1}, with A = softmax(q k^T / sqrt(Dh)) of one head (causal):

    G[m, n] = exp(-((n + 1/2) / N - (m + 1/2) / M)^2 / (2 sigma^2))     (the diagonal)
    loss    = mean_m (1 - sum_n A[q_m, s_n] * G[m, n])                  in [0, 1]

It is 0 only when query m puts all its mass on phones near the fraction m / M of the text, so
it pulls the head both onto the text and along the diagonal. Examples without source tokens
(ASR, text LM, audio LM) contribute nothing. Decoding is unchanged: the loss only shapes
what the heads learn.

Only the builtin body exposes its attention inputs; other bodies raise NotImplementedError.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn as nn


@dataclass
class GuidedAttentionConfig:
    source_ranges: List[Tuple[int, int]]  # [lo, hi) global ids of the tokens to align with (phones)
    layers: List[int] = field(default_factory=lambda: [1])
    heads: List[int] = field(default_factory=lambda: [0])
    sigma: float = 0.2  # width of the diagonal, as a fraction of the text and audio lengths
    weight: float = 1.0  # added to the LM loss as weight * guided loss

    def __post_init__(self):
        self.source_ranges = [(int(lo), int(hi)) for lo, hi in self.source_ranges]
        if not self.source_ranges or any(lo >= hi for lo, hi in self.source_ranges):
            raise ValueError(f"guided_attention.source_ranges must be non-empty [lo, hi) ranges, got "
                             f"{self.source_ranges}")
        if self.sigma <= 0 or self.weight < 0:
            raise ValueError(f"guided_attention needs sigma > 0 and weight >= 0, got {self.sigma}, {self.weight}")


class GuidedAttention(nn.Module):
    """Captures the attention inputs of the chosen layers in training, and scores their heads.

    Holds no parameters. `capture()` arms the hooks for one forward pass; `loss()` rebuilds
    the chosen heads' attention probabilities from the captured (normed input, RoPE tables)
    with the layer's own projections, so the gradient reaches q_proj and k_proj.
    """

    def __init__(self, body: nn.Module, cfg: GuidedAttentionConfig):
        super().__init__()
        layers = getattr(body, "layers", None)
        if layers is None or not all(hasattr(l, "self_attn") and hasattr(l.self_attn, "project") for l in layers):
            raise NotImplementedError(f"guided attention needs the builtin body (got {type(body).__name__})")
        n_layer, n_head = len(layers), layers[0].self_attn.n_head
        bad_layers = [i for i in cfg.layers if not 0 <= i < n_layer]
        bad_heads = [h for h in cfg.heads if not 0 <= h < n_head]
        if bad_layers or bad_heads:
            raise ValueError(f"guided_attention: layers {bad_layers} / heads {bad_heads} out of range "
                             f"(the body has {n_layer} layers of {n_head} heads)")
        self.cfg = cfg
        self._body = [body]  # a plain list: not a submodule (its parameters belong to the LM)
        self._armed = False
        self._inputs: dict = {}
        for i in cfg.layers:
            layers[i].self_attn.register_forward_pre_hook(self._hook(i))

    def _hook(self, i: int):
        def grab(module, args):
            if self._armed:
                self._inputs[i] = (args[0], args[1], args[2])  # normed x [B, T, D], cos, sin
        return grab

    def capture(self) -> "GuidedAttention":
        if getattr(self._body[0], "grad_checkpointing", False):
            raise ValueError("guided attention cannot be combined with activation checkpointing "
                             "(the captured attention inputs would be recomputed, not kept)")
        self._inputs, self._armed = {}, True
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._armed = False

    def spans(self, tok0: torch.Tensor, w_in: torch.Tensor, w_next: torch.Tensor
              ) -> List[Optional[Tuple[torch.Tensor, torch.Tensor]]]:
        """Stream 0 of the body's input rows [B, T]: tokens, their weights (0: a condition) and
        the weights of the rows they predict (> 0: a target) -> per example (source rows [N],
        query rows [M]: targets predicted after the last source token) or None."""
        is_src = torch.zeros_like(tok0, dtype=torch.bool)
        for lo, hi in self.cfg.source_ranges:
            is_src |= (tok0 >= lo) & (tok0 < hi)
        is_src &= w_in == 0  # a condition, never a target
        out: List[Optional[Tuple[torch.Tensor, torch.Tensor]]] = []
        for b in range(tok0.shape[0]):
            src, qry = is_src[b].nonzero().squeeze(1), (w_next[b] > 0).nonzero().squeeze(1)
            qry = qry[qry > src.max()] if src.numel() else qry
            out.append((src, qry) if src.numel() and qry.numel() else None)
        return out

    def loss(self, spans: Sequence[Optional[Tuple[torch.Tensor, torch.Tensor]]]) -> Optional[torch.Tensor]:
        """Mean guided loss over the chosen (layer, head) pairs and every guided query; None if
        no example of the batch has both source tokens and targets."""
        rows = [b for b, s in enumerate(spans) if s is not None]
        if not rows:
            return None
        missing = [i for i in self.cfg.layers if i not in self._inputs]
        if missing:
            raise RuntimeError(f"guided attention: layers {missing} were not run in this forward pass")
        layers = self._body[0].layers
        total, count = 0.0, 0
        for i in self.cfg.layers:
            x, cos, sin = self._inputs[i]
            attn = layers[i].self_attn
            q, k, _ = attn.project(x[rows], cos if cos.shape[0] == 1 else cos[rows], sin if sin.shape[0] == 1 else sin[rows])
            group = attn.n_head // attn.n_kv_head
            for h in self.cfg.heads:
                probs = _causal_probs(q[:, h], k[:, h // group])  # [B', T, T]
                for j, b in enumerate(rows):
                    src, qry = spans[b]
                    a = probs[j][qry][:, src]  # [M, N]
                    total = total + (1.0 - (a * _diagonal(len(qry), len(src), self.cfg.sigma, a)).sum(1)).sum()
                    count += len(qry)
        self._inputs = {}
        return total / count


def _causal_probs(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """q, k [B, T, Dh] -> softmax(q k^T / sqrt(Dh)) over keys j <= i: [B, T, T] (fp32)."""
    T = q.shape[1]
    scores = (q.float() @ k.float().transpose(1, 2)) / math.sqrt(q.shape[-1])
    causal = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()
    return scores.masked_fill(~causal, float("-inf")).softmax(-1)


def _diagonal(M: int, N: int, sigma: float, like: torch.Tensor) -> torch.Tensor:
    """G [M, N] = exp(-((n + 1/2) / N - (m + 1/2) / M)^2 / (2 sigma^2))."""
    m = (torch.arange(M, device=like.device, dtype=torch.float32) + 0.5) / M
    n = (torch.arange(N, device=like.device, dtype=torch.float32) + 0.5) / N
    return torch.exp(-((n[None, :] - m[:, None]) ** 2) / (2 * sigma ** 2))
