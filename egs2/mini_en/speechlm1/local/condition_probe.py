#!/usr/bin/env python3
"""Does a trained model read its condition? Teacher-forced loss with the condition corrupted.

For each validation example the condition tokens of one tokenizer (default `phn`, the TTS
text) are kept, shuffled within the example, or all set to one token; the model then scores
the same targets. A model that follows the text in order loses much more with shuffled
phones than with the real ones; one that only uses which sounds occur (a bag of phones)
loses with the constant condition but not with the shuffled one. With guided attention
(models/guided_attention.py) it also prints the guided loss with real and shuffled phones:
unchanged means the guided heads find their rows by position, not by content.

    python local/condition_probe.py --model_dir exp/abl/ttsG/train/model \
        --data_json dump_r3/tts_spkid/valid/data.json

Prints one table row per condition: loss and accuracy per stream (docs/mini_en_ablations.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Dict, Optional, Sequence

import torch

from espnet2.speechlm.data.dataset import SpeechLMDataset, collate, side_inputs
from espnet2.speechlm.models import load_pretrained
from espnet2.speechlm.vocab import JointVocabulary

MODES = ("real", "shuffled", "constant")


def corrupt(seq: torch.Tensor, lo: int, hi: int, mode: str, seed: int = 1) -> torch.Tensor:
    """seq [B, T, nq] -> a copy with stream-0 ids in [lo, hi) shuffled per example or all set to lo."""
    out = seq.clone()
    tok0 = seq[..., 0]
    hit = (tok0 >= lo) & (tok0 < hi)  # [B, T]
    if mode == "constant":
        out[..., 0] = tok0.masked_fill(hit, lo)
    elif mode == "shuffled":
        g = torch.Generator().manual_seed(seed)
        for b in range(seq.shape[0]):
            at = hit[b].nonzero().squeeze(1)
            out[b, at[torch.randperm(len(at), generator=g)], 0] = tok0[b, at]
    return out


def stream_scores(model, batches, lo: int, hi: int, mode: str) -> Dict[str, torch.Tensor]:
    """Mean cross-entropy and accuracy per stream [nq] over the target tokens of `batches`."""
    nq = model.n_streams
    ce, hit, n = torch.zeros(nq), torch.zeros(nq), torch.zeros(nq)
    for b in batches:
        seq = corrupt(b["seqs"], lo, hi, mode)
        T = int(b["lengths"].max()) + model.pattern.max_shift
        rows = model.pattern.build(seq, fill=0)[:, :T]
        wrows = model.pattern.build(b["weights"], fill=0.0)[:, :T]
        with torch.no_grad():
            h = model.body(model.embed_rows(rows[:, :-1], side_inputs(b).get("feats")))
            for k in range(nq):
                sel = wrows[:, 1:, k] > 0
                logits = model.head_logits(h[sel], k).float()
                target = rows[:, 1:, k][sel]
                target = model.to_head_index(k, target)
                ce[k] += torch.nn.functional.cross_entropy(logits, target, reduction="sum")
                hit[k] += (logits.argmax(-1) == target).sum()
                n[k] += sel.sum()
    return {"loss": ce / n.clamp(min=1), "acc": hit / n.clamp(min=1)}


def guided_loss(model, batches, lo: int, hi: int, mode: str) -> float:
    """The guided-attention loss (training forward without dropout) with the condition corrupted."""
    model.train()
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
        if hasattr(m, "dropout") and isinstance(m.dropout, float):
            m.dropout = 0.0
    vals = []
    with torch.no_grad():
        for b in batches:
            _, stats, _ = model(corrupt(b["seqs"], lo, hi, mode), b["weights"], b["lengths"], **side_inputs(b))
            vals.append(float(stats["guided_attn"]))
    model.eval()
    return sum(vals) / len(vals)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model_dir", type=Path, required=True, help="exported model dir (config.json, vocab.json)")
    p.add_argument("--data_json", type=Path, required=True, help="data.json of the examples to score")
    p.add_argument("--tokenizer", default="phn", help="the condition tokenizer to corrupt")
    p.add_argument("--max_examples", type=int, default=96)
    p.add_argument("--batch_size", type=int, default=16)
    return p


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = get_parser().parse_args(argv)
    torch.manual_seed(0)
    model = load_pretrained(args.model_dir).eval()
    vocab = JointVocabulary.load(args.model_dir / "vocab.json")
    r = vocab.range(args.tokenizer)
    lo, hi = r.offset, r.offset + r.size
    ds = SpeechLMDataset([args.data_json], vocab)
    n = min(len(ds), args.max_examples)
    batches = [collate([ds[i] for i in range(i0, min(i0 + args.batch_size, n))]) for i0 in range(0, n, args.batch_size)]
    print(f"{n} examples of {args.data_json}; condition `{args.tokenizer}`")
    print("| condition | loss per stream | acc per stream |")
    print("|---|---|---|")
    for mode in MODES:
        s = stream_scores(model, batches, lo, hi, mode)
        print(f"| {mode} | " + " ".join(f"{x:.3f}" for x in s["loss"]) + " | "
              + " ".join(f"{x:.2f}" for x in s["acc"]) + " |")
    if getattr(model, "guide", None) is not None:
        real, shuffled = (guided_loss(model, batches, lo, hi, m) for m in ("real", "shuffled"))
        print(f"guided-attention loss: real {real:.3f}, shuffled {shuffled:.3f}")


if __name__ == "__main__":
    main()
