"""A tiny stand-in model and data set that follow the model / data contracts of the trainer."""

from __future__ import annotations

from typing import Dict, List, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

VOCAB, NQ = 64, 2


class ToyLM(nn.Module):
    """forward(seq [B,T,nq], weight [B,T,nq], lengths [B]) -> (loss, stats, weight_sum)."""

    def __init__(self, vocab_size: int = VOCAB, n_streams: int = NQ, d_model: int = 32, n_layer: int = 1,
                 dropout: float = 0.1, nan_calls: Optional[List[int]] = None):
        super().__init__()
        self.config = {"num_hidden_layers": n_layer, "hidden_size": d_model}
        self.vocab_size, self.n_streams = vocab_size, n_streams
        self.emb = nn.Embedding(vocab_size, d_model)
        layer = nn.TransformerEncoderLayer(d_model, 2, 2 * d_model, dropout=dropout, batch_first=True)
        self.body = nn.TransformerEncoder(layer, n_layer, enable_nested_tensor=False)
        self.head = nn.Linear(d_model, vocab_size * n_streams)
        self.nan_calls = set(nan_calls or [])  # training forward calls (1-based) that return NaN
        self.calls = 0

    def forward(self, seq, weight, lengths):
        B, T, nq = seq.shape
        x = self.emb(seq).sum(2)  # (B, T, d)
        mask = torch.triu(torch.full((T, T), float("-inf")), diagonal=1)
        pad = torch.arange(T)[None, :] >= lengths[:, None]
        h = self.body(x, mask=mask, src_key_padding_mask=pad, is_causal=False)
        logits = self.head(h[:, :-1]).view(B, T - 1, nq, self.vocab_size).float()
        target, w = seq[:, 1:], weight[:, 1:].float()
        ce = F.cross_entropy(logits.reshape(-1, self.vocab_size), target.reshape(-1), reduction="none").view_as(w)
        wsum = w.sum()
        loss = (ce * w).sum() / wsum.clamp(min=1e-8)
        acc = ((logits.argmax(-1) == target).float() * w).sum() / wsum.clamp(min=1e-8)
        if self.training:
            self.calls += 1
            if self.calls in self.nan_calls:
                loss = loss * float("nan")
        stats = {"loss": loss.detach(), "acc": acc.detach(), "n_tokens": (w > 0).sum()}
        return loss, stats, wsum.detach()


class ToyDataset(torch.utils.data.Dataset):
    """Deterministic random examples; two sources (tasks asr, tts)."""

    def __init__(self, n: int = 64, seed: int = 0, min_len: int = 6, max_len: int = 24, nq: int = NQ):
        rng = np.random.default_rng(seed)
        self.lengths = rng.integers(min_len, max_len + 1, size=n)
        self.sources = (np.arange(n) % 2).astype(np.int64)
        self.tasks = ["asr", "tts"]
        self.seed, self.nq = seed, nq

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, i: int) -> Dict:
        rng = np.random.default_rng([self.seed, i])
        T = int(self.lengths[i])
        base = rng.integers(3, VOCAB // 2, size=(T, 1))
        seq = (np.concatenate([base, base + VOCAB // 2 - 3], axis=1) % VOCAB).astype(np.int64)[:, : self.nq]
        weight = np.zeros((T, self.nq), np.float32)
        weight[T // 2:] = 1.0
        return {"id": f"utt{i}", "task": self.tasks[self.sources[i]], "seq": seq, "weight": weight}


class ToyBatchSampler:
    """Token-budget batches, deterministic from (seed, epoch), sharded, resumable mid-epoch."""

    def __init__(self, lengths, sources=None, ratios=None, batch_tokens: int = 128, seed: int = 0,
                 shuffle: bool = True, num_replicas: int = 1, rank: int = 0):
        self.lengths, self.batch_tokens, self.seed, self.shuffle = np.asarray(lengths), batch_tokens, seed, shuffle
        self.num_replicas, self.rank = num_replicas, rank
        self.epoch, self.consumed = 0, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self.consumed = epoch, 0

    def _batches(self) -> List[List[int]]:
        order = np.arange(len(self.lengths))
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(order)
        batches, cur, longest = [], [], 0
        for i in order:
            L = max(longest, int(self.lengths[i]))
            if cur and L * (len(cur) + 1) > self.batch_tokens:
                batches.append(cur)
                cur, L = [], int(self.lengths[i])
            cur.append(int(i))
            longest = L
        if cur:
            batches.append(cur)
        n = len(batches) // self.num_replicas * self.num_replicas
        return batches[self.rank:n:self.num_replicas]

    def __iter__(self):
        for b in self._batches()[self.consumed:]:
            self.consumed += 1
            yield b

    def __len__(self) -> int:
        return len(self._batches())

    def state_dict(self) -> Dict:
        return {"epoch": self.epoch, "consumed": self.consumed}

    def load_state_dict(self, d: Dict) -> None:
        self.epoch, self.consumed = int(d["epoch"]), int(d["consumed"])


def collate(examples: List[Dict]) -> Dict:
    T = max(len(e["seq"]) for e in examples)
    nq = examples[0]["seq"].shape[1]
    seqs = torch.zeros(len(examples), T, nq, dtype=torch.long)
    weights = torch.zeros(len(examples), T, nq)
    for b, e in enumerate(examples):
        seqs[b, : len(e["seq"])] = torch.from_numpy(e["seq"])
        weights[b, : len(e["seq"])] = torch.from_numpy(e["weight"])
    return {"seqs": seqs, "weights": weights, "lengths": torch.tensor([len(e["seq"]) for e in examples]),
            "ids": [e["id"] for e in examples], "tasks": [e["task"] for e in examples]}


class ToyPairDataset(torch.utils.data.Dataset):
    """Preference pairs over ToyDataset's examples: the chosen target follows the toy pattern,
    the rejected one is random tokens; both share the condition (first half) of the example.

    Items follow ``data.pairs.PreferenceDataset``: {"id", "task", "chosen": (seq, w), "rejected": (seq, w)}.
    """

    def __init__(self, n: int = 32, seed: int = 0):
        self.base = ToyDataset(n, seed, min_len=8, max_len=20)
        self.sources, self.tasks, self.seed = self.base.sources, self.base.tasks, seed
        self.lengths = 2 * self.base.lengths  # a pair: two sequences of the same length

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> Dict:
        ex = self.base[i]
        seq, weight = ex["seq"], ex["weight"]
        rng = np.random.default_rng([self.seed, i, 7])
        bad = seq.copy()
        tgt = weight[:, 0] > 0
        bad[tgt] = rng.integers(3, VOCAB, size=(int(tgt.sum()), seq.shape[1]))
        return {"id": ex["id"], "task": ex["task"], "chosen": (seq, weight), "rejected": (bad, weight.copy())}
