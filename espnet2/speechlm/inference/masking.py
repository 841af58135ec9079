"""Which token ids may be emitted where: keeps each stream inside its modality's range.

Rules (joint vocabulary layout, see `espnet2.speechlm.vocab`):
  * stream 0: the latest tokenizer indicator seen in stream 0 opens that tokenizer;
    allowed = its stream-0 range + <sos/eos> + every indicator (to switch modality or stop).
  * stream k >= 1 of a frame: if the frame's stream-0 token belongs to a tokenizer with
    more than k streams, allowed = that tokenizer's stream-k range; otherwise PAD only
    (text frames, indicators, eos and post-eos frames carry PAD in streams >= 1).
Task tokens, <unk> and foreign ranges are never allowed.

`HeadMasks` views the table through a model's output heads: a restricted head
(`models.heads`) scores only some ids, so its masks are gathered to its columns and a
chosen column maps back to a global id. Decoding works on head columns throughout,
which keeps every [N, V] step tensor as narrow as the head.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence

import torch

from espnet2.speechlm.vocab import PAD, SOS_EOS, JointVocabulary


@dataclass
class ModalityTable:
    stream0: torch.Tensor  # [R + 1, V] bool; row R = no tokenizer opened yet
    streamk: torch.Tensor  # [R + 1, nq, V] bool; indexed by the tokenizer of the frame's stream-0 token
    token_range: torch.Tensor  # [V] long: tokenizer index of each id, R for specials
    indicator_range: torch.Tensor  # [V] long: tokenizer opened by an indicator id, -1 otherwise

    @classmethod
    def from_vocab(cls, vocab: JointVocabulary, vocab_size: Optional[int] = None,
                   n_streams: Optional[int] = None) -> "ModalityTable":
        V = vocab_size or vocab.size
        nq = n_streams or vocab.max_streams
        R = len(vocab.ranges)
        stream0 = torch.zeros(R + 1, V, dtype=torch.bool)
        streamk = torch.zeros(R + 1, nq, V, dtype=torch.bool)
        token_range = torch.full((V,), R, dtype=torch.long)
        indicator_range = torch.full((V,), -1, dtype=torch.long)
        for name, ind in vocab.indicators.items():
            if vocab.has_range(name):
                indicator_range[ind] = [r.name for r in vocab.ranges].index(name)
        always = torch.zeros(V, dtype=torch.bool)
        always[SOS_EOS] = True
        always[list(vocab.indicators.values())] = True
        stream0[:] = always
        streamk[:, :, PAD] = True  # default for every stream >= 1: PAD only
        for r, rng in enumerate(vocab.ranges):
            token_range[rng.offset: rng.offset + rng.size] = r
            lo, hi = rng.used_range(0)
            stream0[r, lo:hi] = True
            for k in range(1, min(rng.n_streams, nq)):
                lo, hi = rng.used_range(k)
                streamk[r, k] = False
                streamk[r, k, lo:hi] = True
        streamk[:, 0] = False  # stream 0 is governed by `stream0`, never by this table
        return cls(stream0, streamk, token_range, indicator_range)

    def to(self, device) -> "ModalityTable":
        return ModalityTable(*(t.to(device) for t in (self.stream0, self.streamk, self.token_range,
                                                       self.indicator_range)))

    def final_target(self, vocab: JointVocabulary, name: str) -> "ModalityTable":
        """A copy in which tokenizer `name`, once opened, can only continue or end (no switching).

        For the last target of a template: its continuation is that item and <sos/eos>, so
        indicators that would open another modality are masked too.
        """
        stream0 = self.stream0.clone()
        r = [rng.name for rng in vocab.ranges].index(name)
        stream0[r, list(vocab.indicators.values())] = False
        return ModalityTable(stream0, self.streamk, self.token_range, self.indicator_range)

    @property
    def none_index(self) -> int:
        return self.stream0.shape[0] - 1

    def initial_modality(self, prefix: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """prefix [B, T, nq], lengths [B] -> [B] tokenizer of the last indicator in stream 0."""
        B, T, _ = prefix.shape
        opened = self.indicator_range[prefix[:, :, 0]]  # [B, T], -1 where not an indicator
        real = torch.arange(T, device=prefix.device)[None] < lengths[:, None]
        t = torch.where((opened >= 0) & real, torch.arange(T, device=prefix.device)[None], -1)
        last = t.max(dim=1).values  # [B] position of the last indicator, -1 if none
        mod = opened.gather(1, last.clamp(min=0)[:, None]).squeeze(1)
        return torch.where(last >= 0, mod, torch.full_like(mod, self.none_index))

    def update_modality(self, modality: torch.Tensor, tok0: torch.Tensor) -> torch.Tensor:
        opened = self.indicator_range[tok0]
        return torch.where(opened >= 0, opened, modality)

    def stream0_mask(self, modality: torch.Tensor) -> torch.Tensor:
        """[N] tokenizer index -> [N, V] allowed stream-0 ids."""
        return self.stream0[modality]

    def stream_mask(self, frame_tok0: torch.Tensor, k: int) -> torch.Tensor:
        """[N] stream-0 token of the frame -> [N, V] allowed ids for stream k >= 1."""
        return self.streamk[self.token_range[frame_tok0], k]

    def continue_only(self, vocab: JointVocabulary, name: str) -> "ModalityTable":
        """A copy in which stream 0 can only continue tokenizer `name`, whatever is opened.

        For plain continuation (e.g. a text LM prompt without indicators): no indicator,
        no <sos/eos> (decoding still forces eos at the length cap).
        """
        lo, hi = vocab.range(name).stream_range(0)
        stream0 = torch.zeros_like(self.stream0)
        stream0[:, lo:hi] = True
        return ModalityTable(stream0, self.streamk, self.token_range, self.indicator_range)

    def for_heads(self, head_ids: Sequence[Optional[torch.Tensor]]) -> "HeadMasks":
        return HeadMasks(self, head_ids)


class HeadMasks:
    """The table's masks over each stream's head columns; maps columns <-> global ids.

    head_ids[k]: global id of each column of head k (sorted), or None for a head over
    all V ids (then every map is the identity and nothing is gathered).
    """

    def __init__(self, table: ModalityTable, head_ids: Sequence[Optional[torch.Tensor]]):
        self.table = table
        self.ids: List[Optional[torch.Tensor]] = [None if i is None else i.to(table.stream0.device) for i in head_ids]
        V = table.stream0.shape[1]
        allowed = [table.stream0.any(dim=0)] + [table.streamk[:, k].any(dim=0) for k in range(1, len(self.ids))]
        for k, ids in enumerate(self.ids):
            if ids is None:
                continue
            if int(ids.max()) >= V:
                raise ValueError(f"head {k} scores id {int(ids.max())}, the modality table only has {V} ids")
            in_head = torch.zeros(V, dtype=torch.bool, device=ids.device)
            in_head[ids] = True
            must = allowed[k].clone()
            if k == 0:
                must[[PAD, SOS_EOS]] = True  # forced after eos / at the length cap
            missing = (must & ~in_head).nonzero().flatten()
            if missing.numel():
                raise ValueError(f"stream {k} may emit ids {missing[:8].tolist()} (modality table) that head {k} "
                                 f"does not score; the model's head_ranges do not match this vocabulary")
        ids0 = self.ids[0]
        self.stream0 = table.stream0 if ids0 is None else table.stream0[:, ids0]  # [R + 1, V_0]
        self.streamk = [None] + [table.streamk[:, k] if ids is None else table.streamk[:, k][:, ids]
                                 for k, ids in enumerate(self.ids) if k > 0]  # [R + 1, V_k] each
        if ids0 is not None:
            from espnet2.speechlm.models.heads import head_index  # here: models import this module

            self.col0 = head_index(ids0, V)  # [V] global -> column 0

    def stream0_mask(self, modality: torch.Tensor) -> torch.Tensor:
        """[N] tokenizer index -> [N, V_0] allowed columns of head 0."""
        return self.stream0[modality]

    def stream_mask(self, frame_tok0: torch.Tensor, k: int) -> torch.Tensor:
        """[N] stream-0 (global) token of the frame -> [N, V_k] allowed columns of head k >= 1."""
        return self.streamk[k][self.table.token_range[frame_tok0]]

    def column0(self, tokens: torch.Tensor) -> torch.Tensor:
        """Global ids (of head 0) -> columns of head 0; negative entries pass through."""
        if self.ids[0] is None:
            return tokens
        return torch.where(tokens >= 0, self.col0[tokens.clamp(min=0)], tokens)

    def to_global(self, k: int, cols: torch.Tensor) -> torch.Tensor:
        return cols if self.ids[k] is None else self.ids[k][cols]
