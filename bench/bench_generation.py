"""Generation throughput on CPU: tokens/s per architecture, batch size and KV cache on/off.

Every cell generates exactly `--new` frames per example (eos is masked, then forced at
the cap), so cells are comparable; tokens = frames * n_streams * batch.

    tools/venv/bin/python bench/bench_generation.py [--new 64 --prompt 32 --threads 2]
"""

from __future__ import annotations

import argparse
import time

import torch

from espnet2.speechlm.inference import ModalityTable, SearchConfig
from espnet2.speechlm.models import build_speechlm
from espnet2.speechlm.vocab import PAD, JointVocabulary

BODY = dict(d_model=256, n_layer=4, n_head=8, n_kv_head=4, d_ff=688, max_len=1024)


def make_vocab(n_streams: int) -> JointVocabulary:
    v = JointVocabulary()
    v.add_task("tts")
    v.add_tokenizer("text", "x", 500, 1)
    v.add_tokenizer("codec", "y", 256, n_streams)
    return v


def make_prompts(v: JointVocabulary, batch: int, prompt: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`<task> <text_start> x * (prompt-3) <codec_start>`, all of length `prompt`."""
    lo, hi = v.range("text").stream_range(0)
    prefix = torch.full((batch, prompt, v.max_streams), PAD)
    prefix[:, 0, 0] = v.task("tts")
    prefix[:, 1, 0] = v.indicator("text")
    prefix[:, 2:-1, 0] = torch.randint(lo, hi, (batch, prompt - 3))
    prefix[:, -1, 0] = v.indicator("codec")
    return prefix, torch.full((batch,), prompt)


def time_cell(model, v, batch: int, use_cache: bool, args) -> float:
    prefix, lengths = make_prompts(v, batch, args.prompt)
    cfg = SearchConfig(method="top_k", top_k=50, min_len_ratio=1e6, max_len_ratio=1e6, max_new_tokens=args.new)
    table = ModalityTable.from_vocab(v)
    model.generate(prefix[:, :], lengths, SearchConfig(method="greedy", max_new_tokens=2), table)  # warm-up
    t0 = time.perf_counter()
    out = model.generate(prefix, lengths, cfg, table, use_cache=use_cache)
    dt = time.perf_counter() - t0
    assert all(h[0].shape[0] == args.new for h in out)
    return batch * args.new * v.max_streams / dt


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--archs", nargs="+", default=["delay", "parallel", "multiscale", "valle"])
    p.add_argument("--batches", nargs="+", type=int, default=[1, 16])
    p.add_argument("--n-streams", type=int, default=4)
    p.add_argument("--prompt", type=int, default=32, help="prompt frames")
    p.add_argument("--new", type=int, default=48, help="generated frames per example")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    v = make_vocab(args.n_streams)
    print(f"body {BODY}, vocab {v.size}, nq {args.n_streams}, prompt {args.prompt}, new {args.new} frames, "
          f"{args.threads} threads, torch {torch.__version__}")
    print(f"| arch | batch | uncached tok/s | cached tok/s | speed-up |")
    print(f"|---|---|---|---|---|")
    for arch in args.archs:
        model = build_speechlm(arch, "builtin", BODY, v.size, v.max_streams).eval()
        for b in args.batches:
            slow = time_cell(model, v, b, False, args)
            fast = time_cell(model, v, b, True, args)
            print(f"| {arch} | {b} | {slow:,.0f} | {fast:,.0f} | {fast / slow:.1f}x |", flush=True)


if __name__ == "__main__":
    main()
