"""Base class of multi-stream LMs: joint-vocabulary embedding, per-stream heads, the loss.

Loss (the one definition used everywhere):

    loss = sum_{b,t,k} w[b,t,k] * CE(logits[b,t,k], target[b,t,k]) / sum_{b,t,k} w[b,t,k]

over every (position, stream) target token; w = 0 on conditions and PAD. `acc` is the
same weighted average of [argmax == target]. `weight_sum` is returned so a trainer can
re-weight across micro-batches / ranks (sum of loss * weight_sum / total weight_sum).

Heads. By default every stream's head scores the whole joint vocabulary. With
`head_ranges` (see `models.heads`) head k scores only the ids stream k can hold, so
the softmax runs over those ids; targets are mapped to head-local columns here, and
decoding maps chosen columns back to global ids (`head_ids`). A target outside its
head's ids is an error, never silently dropped.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from espnet2.speechlm.models.heads import HeadRanges, head_index, ranges_to_ids
from espnet2.speechlm.vocab import PAD


class AbsMultiStreamLM(nn.Module, ABC):
    def __init__(self, body: nn.Module, vocab_size: int, n_streams: int, shared_head: bool = False,
                 head_ranges: Optional[HeadRanges] = None):
        super().__init__()
        self.body = body
        self.vocab_size, self.n_streams = vocab_size, n_streams
        D = body.d_model
        self.restricted_heads = head_ranges is not None
        head_sizes = [vocab_size] * n_streams
        if head_ranges is not None:
            if len(head_ranges) != n_streams:
                raise ValueError(f"head_ranges has {len(head_ranges)} streams, the model has {n_streams}")
            for k, ranges in enumerate(head_ranges):  # derived from the config: not saved with the weights
                ids = ranges_to_ids(ranges, vocab_size, k)
                self.register_buffer(f"head_ids_{k}", ids, persistent=False)  # [V_k] column -> global id
                self.register_buffer(f"head_index_{k}", head_index(ids, vocab_size), persistent=False)  # [V]
                head_sizes[k] = ids.numel()
        # one table over the joint vocabulary; a frame's input is the sum of its streams' rows
        self.embed = nn.Embedding(vocab_size, D, padding_idx=PAD)
        nn.init.normal_(self.embed.weight, std=0.02)
        with torch.no_grad():
            self.embed.weight[PAD].zero_()  # PAD contributes nothing to the sum
        self.shared_head = shared_head
        if shared_head:
            # one projection; a learned per-stream offset tells it which stream it predicts
            # (restricted heads use the rows of their ids)
            self.head = nn.Linear(D, vocab_size, bias=False)
            self.stream_offset = nn.Parameter(torch.zeros(n_streams, D))
        else:
            self.heads = nn.ModuleList(nn.Linear(D, n, bias=False) for n in head_sizes)
        for p in self.parameters_of_heads():
            nn.init.normal_(p, std=0.02)

    def parameters_of_heads(self):
        return [self.head.weight] if self.shared_head else [h.weight for h in self.heads]

    # ---- pieces ---------------------------------------------------------------------
    def embed_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """rows [B, T, nq] -> [B, T, D] (sum over streams)."""
        return self.embed(rows).sum(dim=2)

    def head_ids(self, k: int) -> Optional[torch.Tensor]:
        """Global id of each column of head k [V_k], or None when the head scores all V ids."""
        return getattr(self, f"head_ids_{k}") if self.restricted_heads else None

    def to_head_index(self, k: int, tokens: torch.Tensor) -> torch.Tensor:
        """Global ids -> columns of head k (-1 where head k cannot emit the id)."""
        return getattr(self, f"head_index_{k}")[tokens] if self.restricted_heads else tokens

    def head_logits(self, h: torch.Tensor, k: int) -> torch.Tensor:
        """h [..., D] -> logits of stream k [..., V_k] over the columns of head k."""
        if self.shared_head:
            w = self.head.weight if not self.restricted_heads else self.head.weight[self.head_ids(k)]
            return F.linear(h + self.stream_offset[k], w)
        return self.heads[k](h)

    #: optional fused per-token loss `(model, h [n, D], k, target [n]) -> (ce [n], hit [n])`
    #: (e.g. Liger's fused linear cross-entropy, set by the trainer); None = head_logits + CE
    token_ce = None

    def weighted_loss(self, h: torch.Tensor | Sequence[torch.Tensor], target: torch.Tensor,
                      weight: torch.Tensor) -> Tuple[torch.Tensor, Dict[str, torch.Tensor], torch.Tensor]:
        """h [B, T, D] (or [B, T, nq, D], or a list of nq [B, T, D]: one state per stream),
        target / weight [B, T, nq] -> (loss, stats, weight_sum).

        Logits are computed only where w > 0 (conditions and padding are skipped), which
        keeps the [*, V] tensors small for long prompts and big vocabularies. Besides the
        batch totals, stats hold sums per row R of the leading dimension (an example for
        delay / parallel / valle, a frame for multiscale): `rows_logp` [R] = sum w * log p
        (differentiable: DPO's sequence log-probs), `rows_hit` [R], `rows_weight` [R]; they
        give per-task training curves without a second forward.
        """
        R = weight.shape[0]
        loss_sum = weight.new_zeros((), dtype=torch.float32)
        hit_sum = weight.new_zeros((), dtype=torch.float32)
        n_tok = weight.new_zeros((), dtype=torch.float32)
        rows_logp = weight.new_zeros(R, dtype=torch.float32)
        rows_hit = weight.new_zeros(R, dtype=torch.float32)
        for k in range(self.n_streams):
            sel = weight[..., k] > 0  # [B, T]
            w, tgt = weight[..., k][sel].float(), target[..., k][sel]  # [n_k]
            if self.restricted_heads:
                tgt = self._head_targets(k, tgt)
            hk = h[k] if isinstance(h, (list, tuple)) else h[..., k, :] if h.dim() == 4 else h  # [B, T, D]
            ce, hit = (self.token_ce or AbsMultiStreamLM.plain_token_ce)(self, hk[sel], k, tgt)  # [n_k] each
            loss_sum = loss_sum + (w * ce).sum()
            hit_sum = hit_sum + (w * hit).sum().detach()
            n_tok = n_tok + sel.sum()
            row = sel.nonzero(as_tuple=True)[0]  # [n_k] leading index of each selected token
            rows_logp = rows_logp.index_add(0, row, -(w * ce))
            rows_hit = rows_hit.index_add(0, row, (w * hit).detach())
        weight_sum = weight.float().sum()
        denom = weight_sum.clamp(min=1e-8)
        loss = loss_sum / denom
        stats = {"loss": loss.detach(), "acc": hit_sum / denom, "n_tokens": n_tok, "rows_logp": rows_logp,
                 "rows_hit": rows_hit, "rows_weight": weight.float().reshape(R, -1).sum(1)}
        return loss, stats, weight_sum.detach()

    @staticmethod
    def plain_token_ce(model: "AbsMultiStreamLM", h: torch.Tensor, k: int, target: torch.Tensor
                       ) -> Tuple[torch.Tensor, torch.Tensor]:
        """h [n, D], head-local targets [n] -> (cross-entropy [n], hit [n]), both float32."""
        logits = model.head_logits(h, k).float()  # [n, V_k]
        ce = F.cross_entropy(logits, target, reduction="none")
        return ce, (logits.argmax(-1) == target).float()

    def _head_targets(self, k: int, tgt: torch.Tensor) -> torch.Tensor:
        local = self.to_head_index(k, tgt)
        bad = local < 0
        if bool(bad.any()):
            raise ValueError(f"stream {k}: target id(s) {tgt[bad].unique()[:8].tolist()} are not among the ids "
                             f"head {k} can emit (head_ranges); the data does not match the model's vocabulary")
        return local

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
