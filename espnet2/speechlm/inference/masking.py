"""Which token ids may be emitted where: keeps each stream inside its modality's range.

Rules (joint vocabulary layout, see `espnet2.speechlm.vocab`):
  * stream 0: the latest tokenizer indicator seen in stream 0 opens that tokenizer;
    allowed = its stream-0 range + <sos/eos> + every indicator (to switch modality or stop).
  * stream k >= 1 of a frame: if the frame's stream-0 token belongs to a tokenizer with
    more than k streams, allowed = that tokenizer's stream-k range; otherwise PAD only
    (text frames, indicators, eos and post-eos frames carry PAD in streams >= 1).
Task tokens, <unk> and foreign ranges are never allowed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

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
            lo, hi = rng.stream_range(0)
            stream0[r, lo:hi] = True
            for k in range(1, min(rng.n_streams, nq)):
                lo, hi = rng.stream_range(k)
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
