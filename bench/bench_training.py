#!/usr/bin/env python3
"""Training throughput (tokens/s) and MFU of the DeepSpeed trainer step on this machine.

Runs the trainer's own micro-batch step (forward, backward, clipping, AdamW via DeepSpeed)
on synthetic batches for a few model sizes, dtypes and variants, in one process (a 1-rank
group), and prints a markdown table. MFU uses espnet2.speechlm.train.mfu (6N + 12·L·d·T FLOPs
per position; CPU peak measured by a matmul benchmark in the same dtype and thread count).
Recomputation under activation checkpointing is not counted (MFU, not hardware FLOPs).

Variants: ``plain``; ``ckpt`` (run.activation_checkpointing); ``compile`` (run.compile with
--compile_backend; the first steps compile, and their time is reported apart).

    python bench/bench_training.py                      # both sizes, fp32, every variant
    python bench/bench_training.py --quick --json out.json   # small size, short batches: a few minutes
    python bench/bench_training.py --sizes small --variants plain ckpt --steps 3
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from espnet2.speechlm.train import distributed as D  # noqa: E402

SIZES = {
    "small": dict(d_model=256, n_layer=4, n_head=4, n_kv_head=4, d_ff=688),
    "medium": dict(d_model=512, n_layer=8, n_head=8, n_kv_head=8, d_ff=1376),
}


VARIANTS = {"plain": {}, "ckpt": {"run.activation_checkpointing": True}, "compile": {"run.compile": True}}


def bench_one(size: str, dtype: str, variant: str, args, tmp: Path) -> dict:
    import torch

    from espnet2.speechlm.models import build_speechlm
    from espnet2.speechlm.train.config import load_config
    from espnet2.speechlm.train.mfu import MFUMeter, cpu_peak_flops
    from espnet2.speechlm.train.trainer import DataBundle, Trainer

    cfg = load_config(None, {"deepspeed.bf16": dtype == "bf16", "deepspeed.zero_stage": args.zero_stage,
                             "run.max_steps": 10**6, "run.plot_images": False, "run.tensorboard": False,
                             "run.peak_flops": 1.0, "run.compile_backend": args.compile_backend,
                             **VARIANTS[variant]})
    D.seed_everything(0)
    body = dict(SIZES[size], max_len=args.seq_len + 16)
    model = build_speechlm("delay", "builtin", body, args.vocab, args.nq)
    n_params = sum(p.numel() for p in model.parameters())
    trainer = Trainer(cfg, model, DataBundle(None, None, None), tmp / f"{size}_{dtype}_{variant}")
    g = torch.Generator().manual_seed(0)
    B, T = args.batch, args.seq_len
    batch = {"seqs": torch.randint(256, args.vocab, (B, T, args.nq), generator=g),
             "weights": torch.ones(B, T, args.nq), "lengths": torch.full((B,), T)}
    peak = cpu_peak_flops(torch.bfloat16 if dtype == "bf16" else torch.float32)
    meter = MFUMeter(trainer.engine.module, peak)
    window = trainer._new_window()
    t0 = time.perf_counter()
    for _ in range(args.warmup):
        trainer._train_micro_batch(batch, window)
    warmup = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(args.steps):
        trainer._train_micro_batch(batch, window)
    seconds = time.perf_counter() - t0
    tokens = B * T * args.steps
    raw = plain_step_seconds(trainer.engine.module, batch, dtype)
    report = meter.report(tokens, meter.batch_flops(B * T, T) * args.steps, seconds)
    return {"size": size, "dtype": dtype, "variant": variant, "warmup_s": warmup, "params_M": n_params / 1e6, "matmul_params_M": meter.n_params / 1e6,
            "tokens_per_step": B * T, "s_per_step": seconds / args.steps, "s_fwd_bwd_plain": raw, "tokens_per_s": report["tokens_per_s"],
            "achieved_GFLOPs": report["mfu"] * peak / 1e9, "peak_GFLOPs": peak / 1e9, "mfu": report["mfu"]}


def plain_step_seconds(model, batch, dtype: str, reps: int = 1) -> float:
    """Forward + backward of the bare module (no DeepSpeed, no optimizer): the overhead reference."""
    import torch

    t0 = time.perf_counter()
    for _ in range(reps):
        loss, _, _ = model(batch["seqs"], batch["weights"], batch["lengths"])
        loss.backward()
    model.zero_grad(set_to_none=True)
    return (time.perf_counter() - t0) / reps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    p.add_argument("--dtypes", nargs="+", default=["fp32"], choices=["fp32", "bf16"],
                   help="bf16 only where the CPU has native bf16 (AVX512-BF16/AMX); on AVX2 it is ~50x slower")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seq_len", type=int, default=256)
    p.add_argument("--nq", type=int, default=4)
    p.add_argument("--vocab", type=int, default=256 + 4 * 1024)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--zero_stage", type=int, default=1)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--compile_backend", default="inductor", help="torch.compile backend of the compile variant")
    p.add_argument("--quick", action="store_true",
                   help="small size, batch 2 x 64 positions, 1 warm-up + 2 timed steps (for checking, not numbers)")
    p.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    args = p.parse_args()
    if args.quick:
        args.sizes, args.batch, args.seq_len, args.warmup, args.steps = ["small"], 2, 64, 1, 2
    D.init_distributed(use_cuda=False)
    import tempfile

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            for dtype in args.dtypes:
                for variant in args.variants:
                    rows.append(bench_one(size, dtype, variant, args, Path(tmp)))
                    print(json.dumps(rows[-1]), flush=True)
    print(f"\nCPU, {torch.get_num_threads()} threads, batch {args.batch} x {args.seq_len} positions x {args.nq} streams, "
          f"ZeRO-{args.zero_stage}, delay/builtin\n")
    print("| size | dtype | variant | params (M) | warm-up s | s/step | plain fwd+bwd s | tokens/s | achieved GFLOP/s "
          "| peak GFLOP/s | MFU |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['size']} | {r['dtype']} | {r['variant']} | {r['params_M']:.1f} | {r['warmup_s']:.1f} "
              f"| {r['s_per_step']:.2f} | {r['s_fwd_bwd_plain']:.2f} | "
              f"{r['tokens_per_s']:.0f} "
              f"| {r['achieved_GFLOPs']:.1f} | {r['peak_GFLOPs']:.1f} | {r['mfu']:.1%} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    sys.stdout.flush()
    D.clean_exit(0)


if __name__ == "__main__":
    main()
