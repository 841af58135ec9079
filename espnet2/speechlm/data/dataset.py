"""Lazy dataset over several data.json manifests, token-count batching, collation.

Only small per-example metadata (ids, item lengths) is held in memory; tokens are
read from memory-mapped shards when an example is asked for.

Continuous items (`tokenizers.continuous`) add side features to an example and a batch:
`feats[name]` [M, embed_dim] float32 (every placeholder frame, example by example, frame by
frame) and `feat_pos[name]` [M, 2] (example, frame in the assembled sequence). Examples and
batches without continuous items have neither key.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence

import numpy as np
import torch

from espnet2.speechlm.data.assemble import LossWeights, Segment, assemble, assembled_length, side_features
from espnet2.speechlm.data.prepare import DATA_FORMAT
from espnet2.speechlm.tasks.template import TaskTemplate
from espnet2.speechlm.vocab import PAD, JointVocabulary

log = logging.getLogger(__name__)


class Shard:
    """One shard dir: ids, per-item lengths in memory, tokens memory-mapped on first use."""

    def __init__(self, path: Path, n_items: int, feat_items: Sequence[int] = ()):
        self.path = Path(path)
        self.ids = self.path.joinpath("ids.txt").read_text().split()
        self.lengths = [np.load(self.path / f"item{j}.len.npy") for j in range(n_items)]
        self.offsets = [np.concatenate([[0], np.cumsum(l)]) for l in self.lengths]
        self._tokens: Optional[List[np.ndarray]] = None
        self.feat_items = set(feat_items)  # continuous items: item<j>.feat.npy beside the tokens
        for j in self.feat_items:
            if not (self.path / f"item{j}.feat.npy").is_file():
                raise FileNotFoundError(f"{self.path}/item{j}.feat.npy missing: the manifest says item {j} is "
                                        "continuous; re-run preparation")
        self._feats: Dict[int, np.ndarray] = {}

    def item_tokens(self, j: int, k: int) -> np.ndarray:
        if self._tokens is None:
            self._tokens = [np.load(self.path / f"item{i}.npy", mmap_mode="r") for i in range(len(self.lengths))]
        return np.asarray(self._tokens[j][self.offsets[j][k] : self.offsets[j][k + 1]], dtype=np.int64)

    def item_feats(self, j: int, k: int) -> Optional[np.ndarray]:
        """float32 [T, embed_dim] features of continuous item j of example k (None: a discrete item)."""
        if j not in self.feat_items:
            return None
        if j not in self._feats:
            self._feats[j] = np.load(self.path / f"item{j}.feat.npy", mmap_mode="r")
        return np.asarray(self._feats[j][self.offsets[j][k] : self.offsets[j][k + 1]], dtype=np.float32)


class Manifest:
    """A data.json and its shards."""

    def __init__(self, path: Path):
        self.path = Path(path)
        meta = json.loads(self.path.read_text())
        if meta.get("format") != DATA_FORMAT:
            raise ValueError(f"{path}: not a {DATA_FORMAT} manifest (format={meta.get('format')!r})")
        self.meta = meta
        self.task: str = meta["task"]
        self.template = TaskTemplate.from_dict(meta["template"], source=str(path))
        # continuous items: tokenizer name -> embed_dim (absent from older manifests)
        self.embed_dims: Dict[str, int] = {name: int(info["embed_dim"]) for name, info in meta["tokenizers"].items()
                                           if info.get("embed_dim") is not None}
        self.template.check_conditions_only(self.embed_dims, str(path))
        n_items = len(self.template.items)
        feat_items = [j for j, it in enumerate(self.template.items) if it.tokenizer in self.embed_dims]
        self.shards = [Shard(self.path.parent / s["path"], n_items, feat_items) for s in meta["shards"]]

    def examples(self) -> Iterator[tuple[int, int, str, int]]:
        """(shard index, index in shard, id, assembled length) of every example."""
        for s, shard in enumerate(self.shards):
            for k, example_id in enumerate(shard.ids):
                yield s, k, example_id, assembled_length([l[k] for l in shard.lengths])

    def segments(self, s: int, k: int, with_targets: bool = True) -> List[Segment]:
        shard = self.shards[s]
        n_cond = len(self.template.conditions)
        segs = []
        for j, it in enumerate(self.template.items):
            is_target = j >= n_cond
            if is_target and not with_targets:
                break
            segs.append(Segment(it.tokenizer, shard.item_tokens(j, k), is_target, shard.item_feats(j, k)))
        return segs


def parse_data_arg(arg: str) -> tuple[str, Optional[float]]:
    """`path/data.json[:ratio]` -> (path, ratio); ratio None when the argument names none."""
    path, sep, ratio = arg.rpartition(":")
    try:
        return (path, float(ratio)) if sep else (arg, None)
    except ValueError:
        return arg, None


def sampling_ratios(tasks: Sequence[str], explicit: Sequence[Optional[float]],
                    task_ratios: Dict[str, float]) -> list[float]:
    """One ratio per data.json: its own `:ratio`, else its task's entry in `task_ratios`, else 1.

    Why per task: a recipe lists its data.json files by stage script, so the training config
    is where it can say "textlm at 0.25" without knowing paths."""
    unknown = sorted(set(task_ratios) - set(tasks))
    if unknown:
        raise ValueError(f"data.task_ratios names tasks {unknown} that no training data.json holds "
                         f"(tasks: {sorted(set(tasks))})")
    ratios = [r if r is not None else float(task_ratios.get(t, 1.0)) for t, r in zip(tasks, explicit)]
    bad = [(t, r) for t, r in zip(tasks, ratios) if not r > 0]
    if bad:
        raise ValueError(f"sampling ratios must be > 0, got {bad}")
    return ratios


class SpeechLMDataset(torch.utils.data.Dataset):
    """Examples of several manifests, assembled with the joint vocabulary on access."""

    def __init__(self, data_jsons: Sequence, vocab: JointVocabulary, loss_weights: Optional[LossWeights] = None,
                 max_len: Optional[int] = None):
        self.vocab = vocab
        self.loss_weights = loss_weights
        self.manifests = [self._open(p) for p in data_jsons]
        self.tasks = [m.task for m in self.manifests]
        rows, dropped = [], []
        for src, m in enumerate(self.manifests):
            for s, k, example_id, length in self._examples(m):
                if max_len is not None and length > max_len:
                    dropped.append(example_id)
                    continue
                rows.append((src, s, k, length))
        if dropped:
            log.warning("%d examples longer than max_len=%s are not used (e.g. %s)", len(dropped), max_len, dropped[:3])
        self.dropped = dropped
        table = np.array(rows, dtype=np.int64).reshape(-1, 4)
        self.sources, self._shard, self._index, self.lengths = (table[:, c].copy() for c in range(4))

    def _open(self, data_json) -> Manifest:
        return Manifest(data_json)

    def _examples(self, m: Manifest) -> Iterator[tuple[int, int, str, int]]:
        """(shard, index in shard, id, length the token sampler counts) of every example."""
        return m.examples()

    def __len__(self) -> int:
        return len(self.lengths)

    def example_id(self, i: int) -> str:
        return self.manifests[self.sources[i]].shards[self._shard[i]].ids[self._index[i]]

    def __getitem__(self, i: int) -> dict:
        m = self.manifests[self.sources[i]]
        segs = m.segments(self._shard[i], self._index[i])
        seq, weight = assemble(self.vocab, m.task, segs, self.vocab.max_streams, self.loss_weights)
        return {"id": self.example_id(i), "task": m.task, "seq": seq, "weight": weight, **example_side(segs)}

    def prefix(self, i: int) -> dict:
        """Inference input: task + conditions + the first target's indicator, and the target tokens."""
        m = self.manifests[self.sources[i]]
        segs = m.segments(self._shard[i], self._index[i])
        n_cond = len(m.template.conditions)
        seq, _ = assemble(self.vocab, m.task, segs[:n_cond], self.vocab.max_streams, with_eos=False)
        first_target = m.template.targets[0].tokenizer
        ind = np.full((1, seq.shape[1]), PAD, dtype=np.int64)
        ind[0, 0] = self.vocab.indicator(first_target)
        return {
            "id": self.example_id(i),
            "task": m.task,
            "prefix": np.concatenate([seq, ind]),
            "condition_length": sum(s.tokens.shape[0] for s in segs[:n_cond]),
            "target_tokenizer": first_target,
            "target": segs[n_cond].tokens,
            **example_side(segs[:n_cond]),
        }


def example_side(segs: List[Segment]) -> dict:
    """{"feats": {name: [M, D]}, "feat_pos": {name: [M] frames}} of the continuous segments, or {}."""
    side = side_features(segs)
    if not side:
        return {}
    return {"feats": {n: x for n, (_, x) in side.items()}, "feat_pos": {n: t for n, (t, _) in side.items()}}


class TokenBatchSampler(torch.utils.data.Sampler):
    """Batches whose padded size (B x max length) stays under `batch_tokens`.

    Epoch order is a pure function of (seed, epoch): source i is repeated ratio_i
    times (the fractional part drawn at random), shuffled, bucketed by length, and
    the batch order shuffled again. `consumed` batches are skipped on resume; the
    trainer sets it from its own step count (DataLoader workers prefetch ahead).

    With several ranks, training (`every_batch=False`) gives each rank the same number
    of batches (ranks step in lock-step) and drops the few left over; validation
    (`every_batch=True`) deals those out round-robin, so every example is scored exactly
    once (ranks then differ by at most one batch; the trainer pads with zero-weight forwards).

    Task warm-up (a curriculum): epoch 0 starts with `warmup_batches` batches per rank made
    only of the `warmup_sources` (drawn, bucketed and shuffled the same way, from as many
    passes over them as it takes), then goes on with the full mix. Being part of the epoch's
    batch list, it resumes like any other batch.
    """

    def __init__(self, lengths: np.ndarray, sources: np.ndarray, ratios: Sequence[float], batch_tokens: int,
                 seed: int = 0, shuffle: bool = True, num_replicas: int = 1, rank: int = 0,
                 bucket_batches: int = 64, every_batch: bool = False,
                 warmup_sources: Sequence[int] = (), warmup_batches: int = 0):
        self.lengths = np.asarray(lengths)
        self.sources = np.asarray(sources)
        self.ratios = list(ratios)
        if len(self.ratios) <= int(self.sources.max(initial=0)):
            raise ValueError(f"{len(self.ratios)} ratios for {int(self.sources.max()) + 1} sources")
        if self.lengths.size and self.lengths.max() > batch_tokens:
            raise ValueError(f"batch_tokens={batch_tokens} is smaller than the longest example "
                             f"({int(self.lengths.max())}); raise it or set max_len")
        self.batch_tokens = batch_tokens
        self.seed, self.shuffle = seed, shuffle
        self.num_replicas, self.rank = num_replicas, rank
        self.bucket_batches = bucket_batches
        self.every_batch = every_batch
        self.warmup_sources = sorted(set(int(i) for i in warmup_sources))
        self.warmup_batches = int(warmup_batches)
        if self.warmup_batches < 0:
            raise ValueError(f"warmup_batches must be >= 0, got {warmup_batches}")
        if self.warmup_batches and not np.isin(self.sources, self.warmup_sources).any():
            raise ValueError(f"task warm-up: no example comes from the warm-up sources {self.warmup_sources}")
        self.epoch, self.consumed = 0, 0

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch, self.consumed = epoch, 0

    def _epoch_indices(self, rng: np.random.Generator) -> np.ndarray:
        chosen = []
        for src, ratio in enumerate(self.ratios):
            idx = np.flatnonzero(self.sources == src)
            whole, frac = int(ratio), ratio - int(ratio)
            chosen.extend([idx] * whole)
            if frac > 0 and idx.size:
                chosen.append(rng.choice(idx, size=int(round(frac * idx.size)), replace=False))
        order = np.concatenate(chosen) if chosen else np.zeros(0, dtype=np.int64)
        return rng.permutation(order) if self.shuffle else order

    def _bucketed(self, order: np.ndarray, rng: np.random.Generator) -> List[List[int]]:
        """Examples in `order` -> batches under batch_tokens, by length within buckets, shuffled."""
        mean_len = max(1, int(self.lengths.mean())) if self.lengths.size else 1
        bucket = max(1, self.bucket_batches * self.batch_tokens // mean_len)
        batches: List[List[int]] = []
        for start in range(0, len(order), bucket):
            chunk = order[start : start + bucket]
            chunk = chunk[np.argsort(self.lengths[chunk], kind="stable")]
            current, longest = [], 0
            for i in chunk.tolist():
                length = int(self.lengths[i])
                if current and max(longest, length) * (len(current) + 1) > self.batch_tokens:
                    batches.append(current)
                    current, longest = [], 0
                current.append(i)
                longest = max(longest, length)
            if current:
                batches.append(current)
        if self.shuffle:
            batches = [batches[j] for j in rng.permutation(len(batches))]
        return batches

    def _warmup(self) -> List[List[int]]:
        """The first batches of epoch 0: warm-up sources only, `warmup_batches` per rank."""
        need = self.warmup_batches * self.num_replicas
        rng = np.random.default_rng([self.seed, 1 << 20])  # its own stream: epoch orders stay as without it
        batches: List[List[int]] = []
        while len(batches) < need:
            order = self._epoch_indices(rng)
            more = self._bucketed(order[np.isin(self.sources[order], self.warmup_sources)], rng)
            if not more:
                raise ValueError(f"task warm-up: the sampling ratios draw no example of sources {self.warmup_sources}")
            batches += more
        return batches[:need]

    def _batches(self) -> List[List[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        batches = self._bucketed(self._epoch_indices(rng), rng)
        if self.epoch == 0 and self.warmup_batches and not self.every_batch:
            batches = self._warmup() + batches
        if self.every_batch:
            return batches[self.rank :: self.num_replicas]
        per_rank = len(batches) // self.num_replicas
        return batches[self.rank : per_rank * self.num_replicas : self.num_replicas]

    def __iter__(self) -> Iterator[List[int]]:
        for batch in self._batches()[self.consumed :]:
            self.consumed += 1
            yield batch

    def __len__(self) -> int:
        return len(self._batches())

    def state_dict(self) -> Dict[str, int]:
        return {"epoch": self.epoch, "consumed": self.consumed}

    def load_state_dict(self, state: Dict[str, int]) -> None:
        self.epoch, self.consumed = int(state["epoch"]), int(state["consumed"])


def collate(examples: List[dict]) -> dict:
    """Right-pad to the longest example: seqs [B, T, nq] (PAD), weights [B, T, nq] (0)."""
    longest = max(e["seq"].shape[0] for e in examples)
    nq = examples[0]["seq"].shape[1]
    seqs = torch.full((len(examples), longest, nq), PAD, dtype=torch.long)
    weights = torch.zeros((len(examples), longest, nq), dtype=torch.float32)
    for b, e in enumerate(examples):
        n = e["seq"].shape[0]
        seqs[b, :n] = torch.from_numpy(e["seq"])
        weights[b, :n] = torch.from_numpy(e["weight"])
    batch = {
        "seqs": seqs,
        "weights": weights,
        "lengths": torch.tensor([e["seq"].shape[0] for e in examples], dtype=torch.long),
        "ids": [e["id"] for e in examples],
        "tasks": [e["task"] for e in examples],
    }
    if any("feats" in e for e in examples):
        batch["feats"], batch["feat_pos"] = collate_feats(examples)
    return batch


def collate_feats(examples: List[dict]) -> tuple[Dict[str, torch.Tensor], Dict[str, torch.Tensor]]:
    """Side features of continuous items -> feats {name: [M, D] float32} and feat_pos
    {name: [M, 2] long (example, frame)}, ordered by example then frame: the order in which
    the model meets the placeholders of the batch."""
    names = sorted({n for e in examples for n in e.get("feats", {})})
    feats, pos = {}, {}
    for name in names:
        xs, ps = [], []
        for b, e in enumerate(examples):
            if name in e.get("feats", {}):
                t = torch.from_numpy(np.asarray(e["feat_pos"][name], dtype=np.int64))
                xs.append(torch.from_numpy(np.asarray(e["feats"][name], dtype=np.float32)))
                ps.append(torch.stack([torch.full_like(t, b), t], dim=1))
        feats[name], pos[name] = torch.cat(xs), torch.cat(ps)
    return feats, pos


def side_inputs(batch: dict, rows: Optional[Sequence[int]] = None) -> dict:
    """The model's side keyword arguments of a batch ({} without continuous items), for
    `model(seqs, weights, lengths, **side_inputs(batch))`. rows: keep only these examples
    (in this order), like `batch["seqs"][rows]`."""
    if "feats" not in batch:
        return {}
    return {"feats": (batch if rows is None else select_examples(batch, rows))["feats"]}


def select_examples(batch: dict, rows: Sequence[int]) -> dict:
    """The sub-batch of examples `rows` (in this order), as `collate` would pad it: seqs /
    weights [R, T', nq] cut to their longest, lengths [R], and with continuous items their
    feats / feat_pos (example column renumbered 0..R-1). ids / tasks are not copied: they
    need not be per row (a pair batch lists them per pair)."""
    rows = [int(r) for r in rows]
    B = batch["lengths"].shape[0]
    if not rows:
        raise ValueError("select_examples: no example rows given")
    bad = [r for r in rows if not 0 <= r < B]
    if bad:
        raise IndexError(f"select_examples: example rows {bad} out of range for a batch of {B}")
    ix = torch.tensor(rows)
    T = int(batch["lengths"][ix].max())
    sub = {"seqs": batch["seqs"][ix, :T], "weights": batch["weights"][ix, :T], "lengths": batch["lengths"][ix]}
    if "feats" in batch:
        sub["feats"], sub["feat_pos"] = {}, {}
        for name, x in batch["feats"].items():
            pos = batch["feat_pos"][name]  # [M, 2] (example, frame)
            at = [(pos[:, 0] == r).nonzero(as_tuple=True)[0] for r in rows]  # keep example-then-frame order
            i = torch.cat(at)
            new = torch.cat([torch.full_like(a, j) for j, a in enumerate(at)])  # the new example rows
            sub["feats"][name], sub["feat_pos"][name] = x[i], torch.stack([new, pos[i, 1]], dim=1)
    return sub
