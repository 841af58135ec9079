"""Preference pairs for DPO: a chosen and a rejected target for the same condition.

A preference data.json is an ordinary manifest, prepared by ``speechlm_prepare tokenize``
from a Kaldi-style data dir like any other, with a template that lists the task's targets
twice: first the chosen items, then the rejected ones, read from index files whose names
contain ``rejected`` (same tokenizers, same order)::

    task: tts                     # the task token the model already knows
    conditions:
      - {name: text, tokenizer: g2p, reader: text}
      - {name: utt2spk, tokenizer: codec, reader: spk_prompt}
    targets:
      - {name: wav.scp, tokenizer: codec, reader: audio}            # chosen
      - {name: rejected_wav.scp, tokenizer: codec, reader: audio}   # rejected

Each example assembles into two sequences with identical conditions, exactly as LM training
assembles the task (same task token, indicators, loss weights). ``collate_pairs`` stacks a
batch of P pairs as 2P rows: chosen rows first, then the rejected rows in the same order.
For token batching a pair counts as 2 x its longer sequence, so ``data.batch_tokens`` still
bounds the padded size of what the model sees.
"""

from __future__ import annotations

from typing import Iterator, List

from espnet2.speechlm.data.assemble import assemble, assembled_length
from espnet2.speechlm.data.dataset import Manifest, SpeechLMDataset, collate, example_side, select_examples
from espnet2.speechlm.tasks.template import TaskTemplate

REJECTED_MARK = "rejected"


def split_pair_template(template: TaskTemplate, source: str = "") -> TaskTemplate:
    """Check a preference template; return the task's own template (conditions + chosen targets)."""
    targets = list(template.targets)
    n = len(targets) // 2
    chosen, rejected = targets[:n], targets[n:]
    problem = None
    if len(targets) % 2 or not n:
        problem = f"needs an even number of targets (chosen items, then rejected items), has {len(targets)}"
    elif any(REJECTED_MARK not in it.name for it in rejected) or any(REJECTED_MARK in it.name for it in chosen):
        problem = (f"the second half of the targets must be the rejected items, read from index files whose "
                   f"names contain {REJECTED_MARK!r}; targets are {[it.name for it in targets]}")
    elif [it.tokenizer for it in chosen] != [it.tokenizer for it in rejected]:
        problem = (f"chosen and rejected items must use the same tokenizers in the same order: "
                   f"{[it.tokenizer for it in chosen]} vs {[it.tokenizer for it in rejected]}")
    if problem:
        raise ValueError(f"{source or template.task}: not a preference manifest: {problem}")
    return TaskTemplate(template.task, list(template.conditions), chosen, template.description)


class PreferenceDataset(SpeechLMDataset):
    """Pairs of several preference manifests, assembled with the joint vocabulary on access.

    ``lengths`` (for the token sampler) are 2 x the longer sequence of each pair.
    """

    def _open(self, data_json) -> Manifest:
        m = Manifest(data_json)
        m.lm_template = split_pair_template(m.template, str(m.path))  # what the exported model is for
        return m

    def _examples(self, m: Manifest) -> Iterator[tuple[int, int, str, int]]:
        n_cond, n_tgt = len(m.template.conditions), len(m.lm_template.targets)
        for s, shard in enumerate(m.shards):
            for k, example_id in enumerate(shard.ids):
                lens = [int(l[k]) for l in shard.lengths]
                cond, chosen, rejected = lens[:n_cond], lens[n_cond:n_cond + n_tgt], lens[n_cond + n_tgt:]
                yield s, k, example_id, 2 * max(assembled_length(cond + chosen), assembled_length(cond + rejected))

    def __getitem__(self, i: int) -> dict:
        m = self.manifests[self.sources[i]]
        segs = m.segments(self._shard[i], self._index[i])
        n_cond, n_tgt = len(m.template.conditions), len(m.lm_template.targets)
        cond = segs[:n_cond]
        out = {"id": self.example_id(i), "task": m.task, **example_side(cond)}  # continuous items are conditions only
        for name, targets in (("chosen", segs[n_cond:n_cond + n_tgt]), ("rejected", segs[n_cond + n_tgt:])):
            out[name] = assemble(self.vocab, m.task, cond + targets, self.vocab.max_streams, self.loss_weights)
        return out


def collate_pairs(pairs: List[dict]) -> dict:
    """P pairs -> seqs / weights [2P, T, nq], lengths [2P] (chosen rows, then rejected rows),
    plus ids / tasks [P], ``n_pairs`` P, and the side features of continuous items (each
    pair's features twice, for its chosen and its rejected row)."""
    rows = [{"id": p["id"], "task": p["task"], "seq": p[side][0], "weight": p[side][1],
             **{k: p[k] for k in ("feats", "feat_pos") if k in p}}
            for side in ("chosen", "rejected") for p in pairs]
    batch = collate(rows)
    batch["ids"], batch["tasks"] = [p["id"] for p in pairs], [p["task"] for p in pairs]
    batch["n_pairs"] = len(pairs)
    return batch


def pair_rows(batch: dict, idx: List[int]) -> dict:
    """The sub-batch of pairs ``idx`` (keeps the chosen-then-rejected layout)."""
    P = batch["n_pairs"]
    bad = [i for i in idx if not 0 <= i < P]
    if bad:
        raise IndexError(f"pair_rows: pairs {bad} out of range for a batch of {P} pairs")
    sub = select_examples(batch, list(idx) + [i + P for i in idx])
    sub["n_pairs"] = len(idx)
    return sub
