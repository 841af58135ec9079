"""Architectures that read one row per step of a codebook pattern: "delay" and "parallel".

Training: rows = pattern.build(seq); the body reads rows[:-1] and every stream head
predicts rows[1:]. The weights go through the same pattern, so each target token of
each stream is predicted exactly once (the very first token, the task id, has no
context and must carry weight 0 - it is a condition anyway).

Continuous items: their placeholders sit in stream 0, which no pattern shifts, so the
placeholder of frame t is in row t and `embed_rows` puts its features there.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn

from espnet2.speechlm.inference.decoding import PrecomputedFrame
from espnet2.speechlm.models.guided_attention import GuidedAttention, GuidedAttentionConfig
from espnet2.speechlm.models.heads import HeadRanges
from espnet2.speechlm.models.multistream import MULTISTREAM_LMS
from espnet2.speechlm.models.multistream.abs_lm import AbsMultiStreamLM, Feats
from espnet2.speechlm.models.multistream.patterns import CodebookPattern, delay_pattern, parallel_pattern
from espnet2.speechlm.vocab import PAD


class PatternLM(AbsMultiStreamLM):
    def __init__(self, body: nn.Module, vocab_size: int, n_streams: int, pattern: CodebookPattern,
                 shared_head: bool = False, head_ranges: Optional[HeadRanges] = None,
                 guided_attention: Optional[dict] = None, history_dropout: Optional[dict] = None):
        super().__init__(body, vocab_size, n_streams, shared_head, head_ranges)
        assert pattern.n_streams == n_streams
        self.pattern = pattern
        # a training-only loss on some heads (models.guided_attention); no parameters of its own
        self.guide = GuidedAttention(body, GuidedAttentionConfig(**guided_attention)) if guided_attention else None
        self.history_dropout = HistoryDropout(**history_dropout) if history_dropout else None

    def forward(self, seq: torch.Tensor, weight: torch.Tensor, lengths: torch.Tensor,
                feats: Optional[Feats] = None) -> Tuple[torch.Tensor, Dict[str, torch.Tensor], torch.Tensor]:
        T = int(lengths.max()) + self.pattern.max_shift  # rows holding any real token
        rows = self.pattern.build(seq, fill=PAD)[:, :T]  # [B, T, nq]
        wrows = self.pattern.build(weight, fill=0.0)[:, :T]  # [B, T, nq]
        inputs = rows[:, :-1]
        if self.history_dropout is not None and self.training:
            inputs = self.history_dropout(inputs, wrows[:, :-1])
        if self.guide is None or not self.training:
            h = self.body(self.embed_rows(inputs, feats))  # [B, T-1, D]
            return self.weighted_loss(h, rows[:, 1:], wrows[:, 1:])
        with self.guide.capture():
            h = self.body(self.embed_rows(inputs, feats))
        loss, stats, weight_sum = self.weighted_loss(h, rows[:, 1:], wrows[:, 1:])
        guided = self.guide.loss(self.guide.spans(rows[:, :-1, 0], wrows[:, :-1, 0], wrows[:, 1:, 0]))
        if guided is not None:
            loss = loss + self.guide.cfg.weight * guided
        stats["guided_attn"] = guided.detach() if guided is not None else loss.new_zeros(())
        return loss, stats, weight_sum

    # ---- decoding hooks used by inference.decoding.decode ------------------------------
    def new_cache(self, batch: int, max_len: int):
        return self.body.new_cache(batch, max_len)

    def next_logits(self, rows: torch.Tensor, pos: Optional[torch.Tensor], valid: Optional[torch.Tensor],
                    cache) -> List[torch.Tensor]:
        """rows [N, T, nq] -> per stream k, logits [N, V_k] (head columns) for the row after the last one."""
        h = self.body(self.embed_rows(rows), pos, valid, cache)[:, -1]  # [N, D]
        return [self.head_logits(h, k).float() for k in range(self.n_streams)]

    def next_frame(self, rows, pos, valid, cache) -> PrecomputedFrame:
        return PrecomputedFrame(self.next_logits(rows, pos, valid, cache))


class HistoryDropout:
    """Teacher forcing with holes: in training, each target row whose tokens lie in `ranges`
    (e.g. codec ids) is replaced by PAD (embedding 0) with probability p.

    Why: consecutive codec frames are so alike that a TTS model lowers its loss by copying the
    previous frame and never learns to read the text; Tacotron's always-on pre-net dropout
    breaks the same shortcut. Conditions, indicators and eos are never dropped.
    """

    def __init__(self, ranges, p: float = 0.3):
        if not 0.0 <= p < 1.0:
            raise ValueError(f"history_dropout.p must be in [0, 1), got {p}")
        self.ranges = [(int(lo), int(hi)) for lo, hi in ranges]
        if not self.ranges or any(lo >= hi for lo, hi in self.ranges):
            raise ValueError(f"history_dropout.ranges must be non-empty [lo, hi) ranges, got {ranges}")
        self.p = float(p)

    def __call__(self, rows: torch.Tensor, wrows: torch.Tensor) -> torch.Tensor:
        """rows [B, T, nq] input tokens, wrows [B, T, nq] their own loss weights -> rows with holes."""
        hit = torch.zeros_like(rows, dtype=torch.bool)
        for lo, hi in self.ranges:
            hit |= (rows >= lo) & (rows < hi)
        hit &= wrows > 0  # targets only
        drop = torch.rand(rows.shape[:2], device=rows.device) < self.p  # [B, T]: whole rows
        return rows.masked_fill(hit & drop[..., None], PAD)


@MULTISTREAM_LMS.register("delay")
class DelayLM(PatternLM):
    """MusicGen delay: stream k lags k rows, so it is predicted having seen streams < k of its frame."""

    def __init__(self, body: nn.Module, vocab_size: int, n_streams: int, shared_head: bool = False,
                 head_ranges: Optional[HeadRanges] = None, guided_attention: Optional[dict] = None,
                 history_dropout: Optional[dict] = None):
        super().__init__(body, vocab_size, n_streams, delay_pattern(n_streams), shared_head, head_ranges,
                         guided_attention, history_dropout)


@MULTISTREAM_LMS.register("parallel")
class ParallelLM(PatternLM):
    """All streams of a frame predicted at once from the same hidden state."""

    def __init__(self, body: nn.Module, vocab_size: int, n_streams: int, shared_head: bool = False,
                 head_ranges: Optional[HeadRanges] = None, guided_attention: Optional[dict] = None,
                 history_dropout: Optional[dict] = None):
        super().__init__(body, vocab_size, n_streams, parallel_pattern(n_streams), shared_head, head_ranges,
                         guided_attention, history_dropout)
