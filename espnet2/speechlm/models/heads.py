"""Which joint-vocabulary ids each stream's output head scores ("head ranges").

A full head projects every stream onto the whole joint vocabulary, but stream k >= 1
only ever holds PAD and stream k of the multi-stream tokenizers, so with 8 codec
streams most of those logits are impossible tokens. A restricted head has one row per
id its stream can hold:

    stream 0:      every special slot (<sos/eos>, indicators, ...) + stream 0 of every tokenizer
    stream k >= 1: PAD + stream k of every tokenizer with more than k streams

Ranges are stored as `[[lo, hi], ...]` per stream (half-open, sorted, merged) in the
model's build config, so a checkpoint rebuilds the same heads. Head-local column j of
stream k is global id `ids[k][j]`; ids are sorted, so the mapping keeps id order.
"""

from __future__ import annotations

from typing import List, Optional, Sequence

import torch

from espnet2.speechlm.vocab import N_SPECIAL, PAD, JointVocabulary

HeadRanges = List[List[List[int]]]  # per stream: [[lo, hi], ...]


def merge_ranges(ranges: Sequence[Sequence[int]]) -> List[List[int]]:
    """Sort and merge overlapping / touching half-open [lo, hi) ranges; drop empty ones."""
    out: List[List[int]] = []
    for lo, hi in sorted((int(lo), int(hi)) for lo, hi in ranges if hi > lo):
        if out and lo <= out[-1][1]:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return out


def vocab_head_ranges(vocab: JointVocabulary, n_streams: Optional[int] = None) -> HeadRanges:
    """The ids each stream can hold under `vocab` (see the module docstring)."""
    nq = n_streams or vocab.max_streams
    heads = [[[0, N_SPECIAL]] + [list(r.used_range(0)) for r in vocab.ranges]]
    for k in range(1, nq):
        heads.append([[PAD, PAD + 1]] + [list(r.used_range(k)) for r in vocab.ranges if r.n_streams > k])
    return [merge_ranges(h) for h in heads]


def ranges_to_ids(ranges: Sequence[Sequence[int]], vocab_size: int, stream: int = 0) -> torch.Tensor:
    """[[lo, hi], ...] -> sorted LongTensor of the global ids they cover (checked against V)."""
    merged = merge_ranges(ranges)
    if not merged:
        raise ValueError(f"head_ranges: stream {stream} has no ids")
    if merged[0][0] < 0 or merged[-1][1] > vocab_size:
        raise ValueError(f"head_ranges: stream {stream} has ids outside [0, {vocab_size}): {merged}")
    return torch.cat([torch.arange(lo, hi) for lo, hi in merged])


def head_index(ids: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Global -> head-local column: [V] long, -1 for ids the head does not score."""
    index = torch.full((vocab_size,), -1, dtype=torch.long, device=ids.device)
    index[ids] = torch.arange(ids.numel(), device=ids.device)
    return index
