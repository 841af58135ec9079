"""Base class of multi-stream LMs: joint-vocabulary embedding, per-stream heads, the loss.

Loss (the one definition used everywhere):

    loss = sum_{b,t,k} w[b,t,k] * CE(logits[b,t,k], target[b,t,k]) / sum_{b,t,k} w[b,t,k]

over every (position, stream) target token; w = 0 on conditions and PAD. `acc` is the
same weighted average of [argmax == target]. `weight_sum` is returned so a trainer can
re-weight across micro-batches / ranks (sum of loss * weight_sum / total weight_sum).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from espnet2.speechlm.vocab import PAD


class AbsMultiStreamLM(nn.Module, ABC):
    def __init__(self, body: nn.Module, vocab_size: int, n_streams: int, shared_head: bool = False):
        super().__init__()
        self.body = body
        self.vocab_size, self.n_streams = vocab_size, n_streams
        D = body.d_model
        # one table over the joint vocabulary; a frame's input is the sum of its streams' rows
        self.embed = nn.Embedding(vocab_size, D, padding_idx=PAD)
        nn.init.normal_(self.embed.weight, std=0.02)
        with torch.no_grad():
            self.embed.weight[PAD].zero_()  # PAD contributes nothing to the sum
        self.shared_head = shared_head
        if shared_head:
            # one projection; a learned per-stream offset tells it which stream it predicts
            self.head = nn.Linear(D, vocab_size, bias=False)
            self.stream_offset = nn.Parameter(torch.zeros(n_streams, D))
        else:
            self.heads = nn.ModuleList(nn.Linear(D, vocab_size, bias=False) for _ in range(n_streams))
        for p in self.parameters_of_heads():
            nn.init.normal_(p, std=0.02)

    def parameters_of_heads(self):
        return [self.head.weight] if self.shared_head else [h.weight for h in self.heads]

    # ---- pieces ---------------------------------------------------------------------
    def embed_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """rows [B, T, nq] -> [B, T, D] (sum over streams)."""
        return self.embed(rows).sum(dim=2)

    def head_logits(self, h: torch.Tensor, k: int) -> torch.Tensor:
        """h [..., D] -> logits of stream k [..., V]."""
        if self.shared_head:
            return self.head(h + self.stream_offset[k])
        return self.heads[k](h)

    def weighted_loss(self, h: torch.Tensor | Sequence[torch.Tensor], target: torch.Tensor,
                      weight: torch.Tensor) -> Tuple[torch.Tensor, Dict[str, torch.Tensor], torch.Tensor]:
        """h [B, T, D] (or [B, T, nq, D], or a list of nq [B, T, D]: one state per stream),
        target / weight [B, T, nq] -> (loss, stats, weight_sum).

        Logits are computed only where w > 0 (conditions and padding are skipped), which
        keeps the [*, V] tensors small for long prompts and big vocabularies.
        """
        loss_sum = weight.new_zeros((), dtype=torch.float32)
        hit_sum = weight.new_zeros((), dtype=torch.float32)
        n_tok = weight.new_zeros((), dtype=torch.float32)
        for k in range(self.n_streams):
            sel = weight[..., k] > 0  # [B, T]
            w, tgt = weight[..., k][sel].float(), target[..., k][sel]  # [n_k]
            hk = h[k] if isinstance(h, (list, tuple)) else h[..., k, :] if h.dim() == 4 else h  # [B, T, D]
            logits = self.head_logits(hk[sel], k).float()  # [n_k, V]
            ce = F.cross_entropy(logits, tgt, reduction="none")  # [n_k]
            loss_sum = loss_sum + (w * ce).sum()
            hit_sum = hit_sum + (w * (logits.argmax(-1) == tgt)).sum().detach()
            n_tok = n_tok + sel.sum()
        weight_sum = weight.float().sum()
        denom = weight_sum.clamp(min=1e-8)
        loss = loss_sum / denom
        stats = {"loss": loss.detach(), "acc": hit_sum / denom, "n_tokens": n_tok}
        return loss, stats, weight_sum.detach()

    # ---- interface --------------------------------------------------------------------
    @abstractmethod
    def forward(self, seq: torch.Tensor, weight: torch.Tensor, lengths: torch.Tensor
                ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor], torch.Tensor]:
        """seq [B, T, nq] long, weight [B, T, nq] float, lengths [B] -> (loss, stats, weight_sum)."""

    def generate(self, prefix: torch.Tensor, prefix_lengths: torch.Tensor, search, modality,
                 use_cache: bool = True) -> List[List[torch.Tensor]]:
        """prefix [B, T0, nq] right-padded -> per example, nbest continuations [T_i, nq] (no eos).

        The shared decoding loop drives the architecture through its `new_cache` /
        `next_frame` hooks; an architecture with another scheme (Vall-E) overrides this.
        """
        from espnet2.speechlm.inference.decoding import decode

        was_training = self.training
        self.eval()
        try:
            return decode(self, prefix, prefix_lengths, search, modality, use_cache=use_cache)
        finally:
            self.train(was_training)
