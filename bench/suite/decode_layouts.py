#!/usr/bin/env python3
"""CPU decoding matmuls: MKL on [in, out] copies only, against oneDNN packed weights for
two rows or more (`espnet2.speechlm.models.decode_weights`), end to end, interleaved.

    tools/venv/bin/python bench/suite/decode_layouts.py              # batches 1 and 8, both head layouts
    tools/venv/bin/python bench/suite/decode_layouts.py --reps 3 --batches 8

Same model and generation cell as the suite's side-by-side (multiscale, `run.py` sizes
"full"). One process builds each model once and alternates the two settings repetition
by repetition (A B A B ...); figures are medians of ms per generated frame, the ratio is
MKL / oneDNN (above 1: oneDNN faster), with the range of the paired ratios.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parents[1]))

import torch  # noqa: E402

from ours_runner import Ours, vocab_cell_ids  # noqa: E402
from run import SIZES  # noqa: E402
from workload import prompt_frames  # noqa: E402

from espnet2.speechlm.models import decode_weights  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    p.add_argument("--heads", nargs="+", default=["restricted", "full"], choices=["restricted", "full"])
    p.add_argument("--reps", type=int, default=6)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    if not decode_weights.onednn_available():
        raise SystemExit("this torch build has no oneDNN: nothing to compare")
    torch.set_num_threads(args.threads)
    size = SIZES["full"]
    print(f"torch {torch.__version__}, {args.threads} threads, {args.reps} interleaved repetitions\n")
    print("| heads | batch | MKL ms/frame | oneDNN ms/frame | MKL / oneDNN | paired ratios |")
    print("|---|---|---|---|---|---|")
    for heads in args.heads:
        for b in args.batches:
            cell = {k: size[k] for k in ("d_model", "n_layer", "n_head", "local_layers", "n_streams", "prompt",
                                         "new", "top_k")}
            cell.update(arch="multiscale", heads=heads, batch=b, threads=args.threads, seed=0,
                        n_ctx=size["prompt"] + size["new"] + 2,
                        **vocab_cell_ids(size["n_text"], size["codebook"], size["n_streams"]))
            torch.manual_seed(0)
            runner = Ours()
            model = runner.build(cell).eval()
            prompt = prompt_frames(cell)
            times = {False: [], True: []}
            for _ in range(args.reps):
                for onednn in (False, True):
                    decode_weights.use_onednn = onednn
                    runner.generate(model, prompt, {**cell, "new": 2})  # builds this layout's copies
                    t = time.perf_counter()
                    runner.generate(model, prompt, cell)
                    times[onednn].append((time.perf_counter() - t) / cell["new"] * 1e3)
            mkl, dnn = statistics.median(times[False]), statistics.median(times[True])
            paired = [a / b for a, b in zip(times[False], times[True])]
            print(f"| {heads} | {b} | {mkl:.2f} | {dnn:.2f} | {mkl / dnn:.2f}x | {min(paired):.2f}-{max(paired):.2f} |")


if __name__ == "__main__":
    main()
