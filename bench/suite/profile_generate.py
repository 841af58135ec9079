#!/usr/bin/env python3
"""Where generation time goes, ours against the reference: per frame, total and in matmuls.

    tools/venv/bin/python bench/suite/profile_generate.py            # batches 1 and 8
    tools/venv/bin/python bench/suite/profile_generate.py --batches 8 --threads 2

Same model and workload as the suite's side-by-side generation cell (multiscale, per-stream
heads on our side, `run.py` sizes "full"), each side in its own process and venv (the
reference venv is made by `bench/suite/setup_reference.sh`). One generate call per side
runs under `torch.profiler`; matmul = self time of aten::mm / addmm / bmm and of oneDNN's
linear. The profiler adds overhead to both sides, so read the shares, not the absolute
times. Why it matters:
if our matmul time alone exceeds 1/3 of the reference's step, a 3x speed-up cannot come
from removing overhead.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))

MATMULS = ("aten::mm", "aten::addmm", "aten::bmm", "mkldnn::_linear_pointwise")  # the last: our oneDNN decode path


def profile_side(side: str, cell: dict) -> dict:
    """Runs inside the side's own venv (see main)."""
    import torch
    from torch.profiler import profile

    from workload import prompt_frames

    if side == "ours":
        sys.path.insert(1, str(ROOT))
        from ours_runner import Ours as Side
    else:
        from reference_runner import Reference as Side
    torch.set_num_threads(cell["threads"])
    torch.manual_seed(0)
    runner = Side()
    model = runner.build(cell).eval()
    prompt = prompt_frames(cell)
    with torch.no_grad():
        runner.generate(model, prompt, {**cell, "new": 4})  # warm-up
        with profile() as prof:
            runner.generate(model, prompt, cell)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events) / 1e3  # ms
    mm = sum(e.self_cpu_time_total for e in events if e.key in MATMULS) / 1e3
    frames = cell["new"]
    return {"side": side, "batch": cell["batch"], "ms_per_frame": total / frames,
            "matmul_ms_per_frame": mm / frames, "ops_per_frame": sum(e.count for e in events) / frames}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--ref-python", default=str(HERE / ".ref-venv/bin/python"))
    p.add_argument("--side", help=argparse.SUPPRESS)  # internal: run one side
    p.add_argument("--cell", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.side:
        print(json.dumps(profile_side(args.side, json.loads(args.cell))))
        return

    from ours_runner import vocab_cell_ids
    from run import SIZES

    size = SIZES["full"]
    rows = []
    for b in args.batches:
        cell = {k: size[k] for k in ("d_model", "n_layer", "n_head", "local_layers", "n_streams", "prompt", "new",
                                     "top_k")}
        cell.update(arch="multiscale", heads="restricted", batch=b, threads=args.threads, seed=0,
                    n_ctx=size["prompt"] + size["new"] + 2, **vocab_cell_ids(size["n_text"], size["codebook"],
                                                                              size["n_streams"]))
        for side, python, cwd in (("ours", sys.executable, ROOT), ("reference", args.ref_python, HERE)):
            env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
            env.update(OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
            out = subprocess.run([python, str(Path(__file__).resolve()), "--side", side, "--cell", json.dumps(cell)],
                                 capture_output=True, text=True, cwd=cwd, env=env)
            if out.returncode != 0:
                raise SystemExit(f"{side} failed:\n{out.stderr[-3000:]}")
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print("| side | batch | ms / frame | matmul ms / frame | matmul share | ops / frame |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['side']} | {r['batch']} | {r['ms_per_frame']:.2f} | {r['matmul_ms_per_frame']:.2f} "
              f"| {r['matmul_ms_per_frame'] / r['ms_per_frame']:.0%} | {r['ops_per_frame']:,.0f} |")
    for b in args.batches:
        ours = next(r for r in rows if r["side"] == "ours" and r["batch"] == b)
        ref = next(r for r in rows if r["side"] == "reference" and r["batch"] == b)
        bound = ref["ms_per_frame"] / ours["matmul_ms_per_frame"]
        print(f"batch {b}: speed-up bound if all our non-matmul time vanished: {bound:.1f}x")


if __name__ == "__main__":
    main()
