"""Assemble one example's items into the multi-stream sequence the LM is trained on.

    <task> | <ind_1> x x x | <ind_2> y y y ... | <sos/eos>        seq    [T, nq]
      0        0   0 0 0       w   w w w             w             weight [T, nq]

Single-stream items fill stream 0 and put <pad> in the others; multi-stream items
fill all their streams. weight[t, k] is the loss weight of *predicting* seq[t, k]:
zero on conditions and pads, the tokenizer's weight on targets, 1 on the target
indicators and the final <sos/eos>.

A continuous item (`tokenizers.continuous`) is placeholder tokens like any other item;
its features travel beside the sequence (`side_features`), tagged with their frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Union

import numpy as np

from espnet2.speechlm.vocab import PAD, SOS_EOS, JointVocabulary

LossWeights = Dict[str, Union[float, Sequence[float]]]


@dataclass
class Segment:
    tokenizer: str
    tokens: np.ndarray  # [T, n_streams] local ids
    is_target: bool
    feats: Optional[np.ndarray] = None  # [T, embed_dim] side features of a continuous item

    def __post_init__(self):
        if self.feats is not None and self.feats.shape[0] != self.tokens.shape[0]:
            raise ValueError(f"{self.tokenizer}: {self.feats.shape[0]} feature rows for {self.tokens.shape[0]} frames")


def stream_weights(loss_weights: Optional[LossWeights], name: str, n_streams: int) -> np.ndarray:
    """Per-stream weight of a tokenizer: a scalar applies to every stream, a list gives one each."""
    w = (loss_weights or {}).get(name, 1.0)
    arr = np.asarray(w, dtype=np.float32).reshape(-1)
    if arr.size == 1:
        arr = np.repeat(arr, n_streams)
    if arr.size != n_streams:
        raise ValueError(f"loss weight of {name!r} has {arr.size} values for {n_streams} streams")
    return arr


def assemble(vocab: JointVocabulary, task: str, segments: List[Segment], nq: Optional[int] = None,
             loss_weights: Optional[LossWeights] = None, with_eos: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Return (seq int64 [T, nq], weight float32 [T, nq])."""
    nq = nq or vocab.max_streams
    total = 1 + sum(1 + s.tokens.shape[0] for s in segments) + int(with_eos)
    seq = np.full((total, nq), PAD, dtype=np.int64)
    weight = np.zeros((total, nq), dtype=np.float32)
    seq[0, 0] = vocab.task(task)
    t = 1
    for seg in segments:
        seq[t, 0] = vocab.indicator(seg.tokenizer)
        weight[t, 0] = float(seg.is_target)
        t += 1
        n_frames, n_streams = seg.tokens.shape
        seq[t : t + n_frames, :n_streams] = vocab.to_global(seg.tokenizer, seg.tokens)
        if seg.is_target:
            weight[t : t + n_frames, :n_streams] = stream_weights(loss_weights, seg.tokenizer, n_streams)
        t += n_frames
    if with_eos:
        seq[t, 0] = SOS_EOS
        weight[t, 0] = 1.0
    return seq, weight


def side_features(segments: List[Segment]) -> Dict[str, tuple[np.ndarray, np.ndarray]]:
    """Features of the continuous segments, with the frame each row sits at in `assemble`'s
    output: name -> (frames int64 [M], feats float32 [M, embed_dim]); {} if there are none."""
    out: Dict[str, tuple[list, list]] = {}
    t = 1  # after the task token
    for seg in segments:
        t += 1  # the indicator
        n = seg.tokens.shape[0]
        if seg.feats is not None:
            frames, feats = out.setdefault(seg.tokenizer, ([], []))
            frames.append(np.arange(t, t + n, dtype=np.int64))
            feats.append(np.asarray(seg.feats, dtype=np.float32))
        t += n
    return {name: (np.concatenate(f), np.concatenate(x)) for name, (f, x) in out.items()}


def assembled_length(item_lengths: Sequence[int]) -> int:
    """Length of `assemble`'s output from the items' frame counts (task + indicators + eos)."""
    return 2 + sum(1 + int(n) for n in item_lengths)
