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

Continuous items (`tokenizers.continuous`: a speaker embedding, LLM hidden states). Each
has one placeholder id in the joint vocabulary and, once `add_continuous` is called (by
`build_speechlm` from the `continuous` model option), a projection Linear(embed_dim, D).
`embed_rows(rows, feats)` finds the placeholders in stream 0 of the rows (stream 0 is
never shifted by a codebook pattern) and replaces their embedding row by the projection
of their features; `feats[name]` [M, embed_dim] lists the features in the order the
placeholders appear (example by example, frame by frame). Finding them by id, not by
position, keeps this right under any pattern, truncation or left padding. Architectures
take `feats` in `forward`; `side_features(feats)` provides it to `embed_rows` calls that
do not pass it (decoding's `next_frame`). `generate(..., feats=)` hands the prompt's
features to the calls that embed the prompt, and never lets a placeholder be generated.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import contextmanager
from dataclasses import replace
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from espnet2.speechlm.models.decode_weights import DecodeWeight, cpu_decoding, frozen_weights
from espnet2.speechlm.models.heads import HeadRanges, head_index, ranges_to_ids
from espnet2.speechlm.vocab import N_SPECIAL, PAD

Feats = Dict[str, torch.Tensor]  # continuous item name -> [M, embed_dim] features of its placeholder frames


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
        self.continuous_ids: Dict[str, int] = {}  # continuous item -> its placeholder (global id)
        self._side_feats: Optional[Feats] = None  # set by `side_features`

    def parameters_of_heads(self):
        return [self.head.weight] if self.shared_head else [h.weight for h in self.heads]

    # ---- pieces ---------------------------------------------------------------------
    def embed_rows(self, rows: torch.Tensor, feats: Optional[Feats] = None,
                   visible: Optional[torch.Tensor] = None) -> torch.Tensor:
        """rows [B, T, nq] -> [B, T, D] (sum over streams); placeholder frames of continuous
        items take the projection of their features instead of their embedding row.

        visible [B, T, nq] bool: sum only these tokens (a NAR stage hides what it predicts);
        a placeholder's features are always added (continuous items are conditions).
        """
        rows, add = self.continuous_inputs(rows, feats)
        e = self.embed(rows)  # [B, T, nq, D]
        x = (e if visible is None else e * visible[..., None]).sum(dim=2)  # [B, T, D]
        return x if add is None else x.index_put(add[0], add[1], accumulate=True)

    # ---- continuous items -----------------------------------------------------------------
    def add_continuous(self, dims: Dict[str, int], ids: Dict[str, int]) -> None:
        """A projection Linear(dims[name], D) per continuous item; ids[name]: its placeholder id."""
        if set(dims) != set(ids):
            raise ValueError(f"continuous items: feature sizes given for {sorted(dims)}, placeholder ids "
                             f"for {sorted(ids)}; both need the same items")
        for name, i in ids.items():
            if not N_SPECIAL <= int(i) < self.vocab_size:
                raise ValueError(f"continuous item {name!r}: placeholder id {i} is not a tokenizer id "
                                 f"in [{N_SPECIAL}, {self.vocab_size})")
        self.continuous_ids = {name: int(ids[name]) for name in sorted(ids)}
        self.continuous_proj = nn.ModuleDict(
            {name: nn.Linear(int(dims[name]), self.body.d_model) for name in self.continuous_ids})
        for lin in self.continuous_proj.values():  # the scale of the embedding rows it stands in for
            nn.init.normal_(lin.weight, std=0.02)
            nn.init.zeros_(lin.bias)

    @contextmanager
    def side_features(self, feats: Optional[Feats]):
        """`feats` for every `embed_rows` call in the block that passes none (e.g. `next_frame`)."""
        old, self._side_feats = self._side_feats, feats
        try:
            yield
        finally:
            self._side_feats = old

    def continuous_inputs(self, rows: torch.Tensor, feats: Optional[Feats] = None):
        """rows [B, T, nq] -> (rows with placeholders set to PAD, (index, values) or None).

        `x.index_put(index, values, accumulate=True)` on the rows' embeddings [B, T, D] adds
        the projected features at the placeholder frames. The number of placeholders of an
        item must equal its feature rows: a mismatch (features lost on the way, or given to
        the wrong call) is an error, never a silent misalignment.
        """
        feats = feats if feats is not None else self._side_feats
        self._check_names(feats)
        if not self.continuous_ids:
            return rows, None
        feats = feats or {}
        tok0 = rows[..., 0]  # [B, T]
        where, values, hit = [], [], None
        for name, pid in self.continuous_ids.items():
            at = tok0 == pid  # [B, T]
            f = feats.get(name)
            n, m = int(at.sum()), 0 if f is None else f.shape[0]
            if n != m:
                raise ValueError(f"continuous item {name!r}: {n} placeholder frame(s) in the input but {m} "
                                 "feature row(s); pass the batch's side features (feats) with its sequences")
            if n == 0:
                continue
            lin = self.continuous_proj[name]
            if f.dim() != 2 or f.shape[1] != lin.in_features:
                raise ValueError(f"continuous item {name!r}: features {tuple(f.shape)}, the model expects "
                                 f"[M, {lin.in_features}]")
            where.append(at.nonzero(as_tuple=True))  # row-major: the order of the feature rows
            values.append(lin(f.to(device=lin.weight.device, dtype=lin.weight.dtype)))
            hit = at if hit is None else hit | at
        if hit is None:
            return rows, None
        rows = rows.clone()
        rows[..., 0] = tok0.masked_fill(hit, PAD)  # PAD's row is zero: the projection replaces the embedding
        index = tuple(torch.cat([w[d] for w in where]) for d in range(2))
        return rows, (index, torch.cat(values))

    def _check_names(self, feats: Optional[Feats]) -> None:
        unknown = sorted(set(feats or {}) - set(self.continuous_ids))
        if unknown and not self.continuous_ids:
            raise ValueError(f"side features for {unknown} but the model has no continuous items; "
                             "build it with continuous: {name: embed_dim}")
        if unknown:
            raise ValueError(f"side features for {unknown}: not continuous items of this model "
                             f"(has {sorted(self.continuous_ids)})")

    def split_features(self, prefix: torch.Tensor, lengths: torch.Tensor, feats: Feats) -> List[Feats]:
        """Batch features -> one dict per example (every item, [m_b, embed_dim] each)."""
        valid = torch.arange(prefix.shape[1], device=prefix.device)[None] < lengths[:, None]  # [B, T]
        out: List[Feats] = [{} for _ in range(prefix.shape[0])]
        for name, pid in self.continuous_ids.items():
            counts = ((prefix[..., 0] == pid) & valid).sum(dim=1).tolist()  # [B]
            f = feats.get(name)
            if f is None:
                f = prefix.new_zeros((0, self.continuous_proj[name].in_features), dtype=torch.float32)
            if sum(counts) != f.shape[0]:
                raise ValueError(f"continuous item {name!r}: {sum(counts)} placeholder frame(s) in the prompts "
                                 f"but {f.shape[0]} feature row(s)")
            for b, part in enumerate(torch.split(f, counts)):
                out[b][name] = part
        return out

    def forbid_continuous(self, table):
        """A modality table (`inference.masking`) that never allows a continuous item's
        placeholder, nor its indicator (that would open an item nothing can generate)."""
        if not self.continuous_ids:
            return table
        ids = torch.tensor(list(self.continuous_ids.values()), device=table.stream0.device)
        indicators = torch.isin(table.indicator_range, table.token_range[ids])  # [V]
        stream0 = table.stream0.clone()
        stream0[:, ids] = False
        stream0[:, indicators] = False
        return replace(table, stream0=stream0)

    def decode_prompts(self, decode, prefix: torch.Tensor, prefix_lengths: torch.Tensor, search, modality,
                       use_cache: bool = True, feats: Optional[Feats] = None) -> List[List[torch.Tensor]]:
        """`decode(model, prefix, prefix_lengths, search, modality, use_cache=)` with the prompts'
        side features given to the calls that embed the prompt.

        Cached decoding embeds all prompts once, in order, in its first `next_frame` call.
        Uncached decoding re-embeds every hypothesis' whole history at each step, with rows
        reordered by the search; it runs one example at a time, each call getting that
        example's features once per row.
        """
        if not feats:
            return decode(self, prefix, prefix_lengths, search, modality, use_cache=use_cache)
        self._check_names(feats)
        if use_cache:
            return decode(_PromptFeatures(self, feats, every_call=False), prefix, prefix_lengths, search, modality,
                          use_cache=True)
        out: List[List[torch.Tensor]] = []
        for b, f in enumerate(self.split_features(prefix, prefix_lengths, feats)):
            L = prefix_lengths[b: b + 1]
            out += decode(_PromptFeatures(self, f, every_call=True), prefix[b: b + 1, : int(L)], L, search,
                          modality, use_cache=False)
        return out

    def head_ids(self, k: int) -> Optional[torch.Tensor]:
        """Global id of each column of head k [V_k], or None when the head scores all V ids."""
        return getattr(self, f"head_ids_{k}") if self.restricted_heads else None

    def to_head_index(self, k: int, tokens: torch.Tensor) -> torch.Tensor:
        """Global ids -> columns of head k (-1 where head k cannot emit the id)."""
        return getattr(self, f"head_index_{k}")[tokens] if self.restricted_heads else tokens

    def head_logits(self, h: torch.Tensor, k: int) -> torch.Tensor:
        """h [..., D] -> logits of stream k [..., V_k] over the columns of head k."""
        if cpu_decoding(h):  # an [in, out] copy per head (see models.decode_weights)
            if self.shared_head:
                h = h + self.stream_offset[k]
            return self._decode_head(k).matmul(h)
        if self.shared_head:
            w = self.head.weight if not self.restricted_heads else self.head.weight[self.head_ids(k)]
            return F.linear(h + self.stream_offset[k], w)
        return self.heads[k](h)

    def _decode_head(self, k: int) -> DecodeWeight:
        cache = self.__dict__.setdefault("_decode_heads", {})  # plain attribute: never saved
        if k not in cache:
            if not self.shared_head:
                cache[k] = DecodeWeight.of(self.heads[k])
            elif self.restricted_heads:
                cache[k] = DecodeWeight([self.head], rows=(self, f"head_ids_{k}"))
            else:  # one copy for every stream
                cache[k] = cache.setdefault("shared", DecodeWeight.of(self.head))
        return cache[k]

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
    def forward(self, seq: torch.Tensor, weight: torch.Tensor, lengths: torch.Tensor, feats: Optional[Feats] = None
                ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor], torch.Tensor]:
        """seq [B, T, nq] long, weight [B, T, nq] float, lengths [B], feats (continuous items'
        side features, see the module docstring) -> (loss, stats, weight_sum)."""

    def generate(self, prefix: torch.Tensor, prefix_lengths: torch.Tensor, search, modality,
                 use_cache: bool = True, feats: Optional[Feats] = None) -> List[List[torch.Tensor]]:
        """prefix [B, T0, nq] right-padded -> per example, nbest continuations [T_i, nq] (no eos).

        feats: side features of the prompts' continuous items (example by example).
        The shared decoding loop drives the architecture through its `new_cache` /
        `next_frame` hooks; an architecture with another scheme (Vall-E) overrides this.
        """
        from espnet2.speechlm.inference.decoding import decode

        was_training = self.training
        self.eval()
        try:
            with frozen_weights():
                return self.decode_prompts(decode, prefix, prefix_lengths, search, self.forbid_continuous(modality),
                                           use_cache, feats)
        finally:
            self.train(was_training)


class _PromptFeatures:
    """The model as `decode` sees it, with side features for the `next_frame` calls that embed
    prompts: the first call only (cached decoding), or every call, repeated once per row
    (uncached decoding of a single example, whose rows all hold its prompt)."""

    def __init__(self, model: AbsMultiStreamLM, feats: Feats, every_call: bool):
        self.model, self.feats, self.every_call = model, feats, every_call

    def __getattr__(self, name):  # pattern, new_cache, head_ids, ...: the model's own
        return getattr(self.model, name)

    def next_frame(self, rows, pos, valid, cache):
        feats = self.feats
        if feats is None:
            return self.model.next_frame(rows, pos, valid, cache)
        if self.every_call:
            feats = {name: f.repeat(rows.shape[0], 1) for name, f in feats.items()}
        else:
            self.feats = None
        with self.model.side_features(feats):
            return self.model.next_frame(rows, pos, valid, cache)
