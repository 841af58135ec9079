#!/usr/bin/env python3
"""Every benchmark of the project in one command; writes docs/benchmarks.md.

    tools/venv/bin/python bench/suite/run.py                    # everything, full sizes
    tools/venv/bin/python bench/suite/run.py --quick            # tiny sizes, 2 repetitions: a check
    tools/venv/bin/python bench/suite/run.py --areas reference  # only the side-by-side comparison

Areas:
  prepare, tokenizers, training, inference
        bench/bench_<...>.py run as subprocesses (`--json`, `--quick`, `--threads` when the
        script has them; without --json its printed markdown tables are copied). A missing
        or failing script is recorded in the report, never fatal.
  reference
        Side by side with the reference ESPnet-SpeechLM (PyPI espnet==202506) in its own venv
        (bench/suite/setup_reference.sh, made on demand): the same training step (forward +
        backward + AdamW, plain torch) and generation (each side's own KV-cached generator,
        top-k sampling) at equal model size, batch, length, thread count and fp32. One
        long-lived worker per side (ours with a full head, ours with per-stream heads, the
        reference) runs repetition by repetition in turn (A B C A B C ...), so load drifts on
        a shared machine hit every side alike; the table reports medians and ours/reference.
        About 3 minutes on a quiet 2-core CPU, 5-10 on a loaded one.
"""

from __future__ import annotations

import argparse
import ast
import datetime as dt
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))

import report as R  # noqa: E402

REF_VENV = HERE / ".ref-venv"
OUT_DIR = HERE / ".out"  # gitignored: quick reports, raw results, worker logs

# Model and workload sizes. Both sides get exactly these numbers (see the runners).
SIZES: Dict[str, Dict[str, Any]] = {
    "full": dict(d_model=256, n_layer=4, n_head=4, local_layers=2, n_streams=4, n_text=500, codebook=1024,
                 batch=4, seq_len=128, steps=2, warmup=1, prompt=32, new=64, gen_batches=[1, 8], top_k=20,
                 reps=5, archs=["multiscale", "valle"], long_prompt=256, long_new=192),
    "quick": dict(d_model=64, n_layer=2, n_head=2, local_layers=1, n_streams=2, n_text=32, codebook=64,
                  batch=2, seq_len=32, steps=2, warmup=1, prompt=8, new=8, gen_batches=[1, 4], top_k=20,
                  reps=2, archs=["multiscale", "valle"], long_prompt=24, long_new=16),
}
# Generation is measured at two context lengths: the short one above, and a speech-sized one
# (`long_prompt` + `long_new`: a few seconds of codec frames as prompt, then a few more
# generated), since the cost per step of a KV cache grows with the context differently in
# each implementation. The long cell runs at the largest generation batch only.

AREAS = {  # name -> (title, script)
    "prepare": ("Preparation", "bench/bench_prepare.py"),
    "tokenizers": ("Tokenizers", "bench/bench_tokenizers.py"),
    "training": ("Training", "bench/bench_training.py"),
    "inference": ("Inference", "bench/bench_generation.py"),
}
ALL_AREAS = ["reference", *AREAS]


# ---- workers ---------------------------------------------------------------------------
class WorkerClient:
    """One long-lived worker process speaking workload.py's line protocol.

    A worker that dies or times out is killed, its failure returned as an error reply,
    and a fresh one started on the next request.
    """

    def __init__(self, name: str, argv: List[str], env: Dict[str, str], cwd: Path, log: Path):
        self.name, self.argv, self.env, self.cwd, self.log = name, argv, env, cwd, log
        self.proc: Optional[subprocess.Popen] = None
        self.lines: "queue.Queue[Optional[str]]" = queue.Queue()

    def _start(self) -> None:
        self.lines = queue.Queue()
        self.log.parent.mkdir(parents=True, exist_ok=True)
        err = open(self.log, "a")
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                                     text=True, cwd=self.cwd, env=self.env)
        err.close()
        lines, out = self.lines, self.proc.stdout

        def pump():
            for line in out:
                lines.put(line)
            lines.put(None)  # EOF: the worker is gone

        threading.Thread(target=pump, daemon=True).start()

    def request(self, req: dict, timeout: float) -> dict:
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        try:
            self.proc.stdin.write(json.dumps(req) + "\n")
            self.proc.stdin.flush()
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            self.close(kill=True)
            return {"ok": False, "error": f"no answer within {timeout:.0f} s (worker killed)"}
        except (BrokenPipeError, OSError):
            line = None
        if line is None:
            self.close(kill=True)
            return {"ok": False, "error": f"worker exited: {self.log_tail()}"}
        return json.loads(line)

    def log_tail(self, n: int = 3) -> str:
        try:
            lines = [l for l in self.log.read_text().splitlines() if l.strip()]
        except OSError:
            return "(no log)"
        return " / ".join(lines[-n:]) or "(empty log)"

    def close(self, kill: bool = False) -> None:
        if self.proc is None:
            return
        if not kill and self.proc.poll() is None:
            try:
                self.proc.stdin.write('{"op": "quit"}\n')
                self.proc.stdin.flush()
                self.proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                pass
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


def thread_env(threads: int, omp_passive: bool = False) -> Dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    if omp_passive:
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    env.setdefault("TORCH_EXTENSIONS_DIR", str(ROOT / "tools" / ".cache" / "torch_extensions"))
    env.setdefault("DS_ACCELERATOR", "cuda" if shutil.which("nvidia-smi") else "cpu")
    return env


def ensure_reference_venv(python: Path, setup: bool, log: Path) -> Optional[str]:
    """None when the reference python is usable, else why not."""
    if setup:
        print("[suite] reference venv: bash bench/suite/setup_reference.sh", flush=True)
        with open(log, "a") as f:
            rc = subprocess.call(["bash", str(HERE / "setup_reference.sh")], stdout=f, stderr=subprocess.STDOUT,
                                 cwd=ROOT)
        if rc != 0:
            return f"setup_reference.sh failed (rc={rc}); see {log.relative_to(ROOT)}"
    if not python.exists():
        return f"no reference python at {python} (run bash bench/suite/setup_reference.sh)"
    return None


def comparison_cells(size: Dict[str, Any], threads: int) -> List[Dict[str, Any]]:
    from ours_runner import vocab_cell_ids

    base = {k: size[k] for k in ("d_model", "n_layer", "n_head", "local_layers", "n_streams", "batch", "seq_len",
                                 "steps", "warmup", "prompt", "new", "top_k")}
    longest = max(size["prompt"] + size["new"], size["long_prompt"] + size["long_new"])
    base.update(threads=threads, seed=0, n_ctx=max(size["seq_len"], longest + 2),
                **vocab_cell_ids(size["n_text"], size["codebook"], size["n_streams"]))
    cells = []
    for arch in size["archs"]:
        cells.append(dict(base, op="train", arch=arch))
        for b in size["gen_batches"]:
            cells.append(dict(base, op="generate", arch=arch, batch=b))
        cells.append(dict(base, op="generate", arch=arch, batch=max(size["gen_batches"]), prompt=size["long_prompt"],
                          new=size["long_new"]))
    return cells


# Interleaving order within a repetition; the first two are ours with two head layouts.
SIDES = [  # name, label, cell overrides
    ("ours", "ours, full head", {"heads": "full"}),
    ("ours_restricted", "ours, per-stream heads", {"heads": "restricted"}),
    ("reference", "reference", {}),
]


def run_reference(args, size: Dict[str, Any], logs: Path) -> Dict[str, Any]:
    ref_python = Path(args.ref_python)
    env = thread_env(args.threads, args.omp_passive)
    ref_env = {k: v for k, v in env.items() if k != "PYTHONPATH"}
    section: Dict[str, Any] = {"cells": [], "reps": size["reps"], "size": size}
    why = ensure_reference_venv(ref_python, not args.no_setup, logs / "setup_reference.log")
    section["setup_error"] = why
    clients: Dict[str, Optional[WorkerClient]] = {
        name: WorkerClient(name, [sys.executable, str(HERE / "ours_runner.py")], env, ROOT, logs / f"{name}_worker.log")
        for name, _, _ in SIDES if name != "reference"}
    clients["reference"] = None if why else WorkerClient(
        "reference", [str(ref_python), str(HERE / "reference_runner.py")], ref_env, HERE, logs / "reference_worker.log")
    try:
        section["ours_info"] = clients["ours"].request({"op": "info"}, 120)
        section["ref_info"] = clients["reference"].request({"op": "info"}, 120) if not why else {"ok": False, "error": why}
        for cell in comparison_cells(size, args.threads):
            op = cell.pop("op")
            res = {"op": op, "cell": cell, "sides": {name: {"tok_s": [], "error": None} for name, _, _ in SIDES}}
            res["sides"]["reference"]["error"] = why
            t0 = time.perf_counter()
            for _ in range(size["reps"]):  # interleaved: each side once per repetition, in turn
                for name, _, overrides in SIDES:
                    side, client = res["sides"][name], clients[name]
                    if client is None or side["error"] is not None:
                        continue  # a side that failed once (e.g. cannot build) is not retried
                    r = client.request({"op": op, "cell": {**cell, **overrides}}, args.worker_timeout)
                    if r.get("ok"):
                        side["tok_s"].append(r["tokens_per_s"])
                        side["params"] = [r["params"], r["params_non_vocab"]]
                    else:
                        side["error"] = r["error"]
            res["seconds"] = time.perf_counter() - t0
            section["cells"].append(res)
            line = ", ".join(f"{name} {R.fmt(R.median(v['tok_s']))}" if v["error"] is None else f"{name} fails"
                             for name, v in res["sides"].items())
            shape = f"b={cell['batch']}" + (f" ({cell['prompt']} + {cell['new']})" if op == "generate" else "")
            print(f"[suite] {op} {cell['arch']} {shape}: {line} tok/s ({res['seconds']:.0f} s)", flush=True)
    finally:
        for c in clients.values():
            if c is not None:
                c.close()
    return section


# ---- the other benchmarks ----------------------------------------------------------------
def script_options(script: Path, env: Dict[str, str]) -> str:
    try:
        p = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120,
                           cwd=ROOT, env=env)
        return p.stdout + p.stderr
    except subprocess.TimeoutExpired:
        return ""


def script_summary(script: Path) -> Optional[str]:
    """First line of the script's docstring: what it measures."""
    try:
        doc = ast.get_docstring(ast.parse(script.read_text()))
    except (OSError, SyntaxError, ValueError):
        return None
    return doc.strip().splitlines()[0] if doc and doc.strip() else None


def run_area(name: str, args, logs: Path) -> Dict[str, Any]:
    title, rel = AREAS[name]
    script = ROOT / rel
    res: Dict[str, Any] = {"name": name, "title": title, "script": rel}
    if not script.exists():
        res["status"] = f"pending: {rel} does not exist yet"
        return res
    res["about"] = script_summary(script)
    env = thread_env(args.threads, args.omp_passive)
    help_text = script_options(script, env)
    has = {opt: re.search(rf"^\s+{opt}\b", help_text, re.M) is not None for opt in ("--json", "--quick", "--threads")}
    if args.quick and not has["--quick"]:
        res["status"] = f"pending: {rel} has no --quick option yet (not run in quick mode)"
        return res
    out_json = logs / f"{name}.json"
    out_json.unlink(missing_ok=True)
    cmd = [sys.executable, rel] + (["--quick"] if args.quick else [])
    cmd += ["--threads", str(args.threads)] if has["--threads"] else []
    shown = " ".join(["tools/venv/bin/python" if c == sys.executable else c for c in cmd])
    if has["--json"]:
        cmd += ["--json", str(out_json)]
        shown += " --json out.json"
    res["command"] = shown
    print(f"[suite] {name}: {shown}", flush=True)
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=args.area_timeout, cwd=ROOT, env=env)
        rc, stdout, stderr = p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired as e:
        rc, stdout, stderr = "timeout", _text(e.stdout), _text(e.stderr) + f"\n(killed after {args.area_timeout} s)"
    res["seconds"] = time.perf_counter() - t0
    (logs / f"{name}.log").write_text(f"$ {shown}\n--- stdout\n{stdout}\n--- stderr\n{stderr}")
    if rc != 0:
        tail = [l for l in (stderr or stdout).splitlines() if l.strip()][-6:]
        res["status"] = f"failed (exit {rc})"
        res["error"] = "\n".join(tail)
        return res
    if has["--json"] and out_json.exists():
        try:
            data = json.loads(out_json.read_text())
            res["rows"], res["settings"] = R.json_rows(data), R.json_settings(data)
            res["status"] = "ok"
            return res
        except ValueError as e:
            res["note"] = f"its --json output was not usable ({e}); tables copied from its printout"
    res["tables"] = R.markdown_tables(stdout)
    res["status"] = "ok (printed tables)" if res["tables"] else "ok, but it printed no table"
    return res


def _text(x) -> str:
    return x.decode(errors="replace") if isinstance(x, bytes) else (x or "")


# ---- the document ------------------------------------------------------------------------
def suite_command(args, with_areas: bool = False) -> str:
    parts = ["tools/venv/bin/python bench/suite/run.py"] + (["--quick"] if args.quick else [])
    if args.threads != 2:
        parts.append(f"--threads {args.threads}")
    if args.reps is not None:
        parts.append(f"--reps {args.reps}")
    if args.omp_passive:
        parts.append("--omp-passive")
    if with_areas and set(args.areas) != set(ALL_AREAS):
        parts.append("--areas " + " ".join(args.areas))
    return " ".join(parts)


def render(args, machine: Dict[str, Any], ref: Optional[Dict[str, Any]], areas: Dict[str, Dict[str, Any]]) -> str:
    mode = "quick (tiny sizes, a check only: not for quoting)" if args.quick else "full"
    md = ["# Benchmarks", "",
          f"Written by `{suite_command(args, with_areas=True)}` on {machine['date']} ({mode}; {machine['wall_s']:.0f} s). "
          "The whole file is regenerated by that command; do not edit it by hand.", "",
          "How it runs: `bench/suite/run.py` calls every `bench/bench_*.py` of the project as a subprocess "
          "(with `--json`, `--threads` and, in quick mode, `--quick`) and renders the JSON rows it writes "
          "(a list of objects, or `{\"rows\": [...], ...}`: every key becomes a column, the other keys the "
          "settings line); a missing or failing script is reported in its section, never fatal. The side-by-side "
          "section runs the reference implementation in its own venv (made on first use by "
          "`bash bench/suite/setup_reference.sh`). Raw results and logs: `bench/suite/.out/`.", "",
          "## Machine", ""]
    rows = [["CPU", machine["cpu"]], ["logical CPUs (usable)", f"{machine['logical_cpus']} ({machine.get('usable_cpus')})"],
            ["threads per benchmark", args.threads], ["GPU", machine.get("gpu") or "none"],
            ["OMP_WAIT_POLICY", "PASSIVE (--omp-passive)" if args.omp_passive else os.environ.get("OMP_WAIT_POLICY", "unset")],
            ["OS", machine["os"]], ["Python", machine["python"]], ["torch (ours)", machine.get("torch")],
            ["load average (1 min) at start / end",
             f"{machine.get('load_avg_1m_at_start')} / {machine.get('load_avg_1m_at_end')}"]]
    if ref is not None:
        ri = ref.get("ref_info") or {}
        rows.append(["reference", f"{ri.get('package')}, torch {ri.get('torch')}, numpy {ri.get('numpy')}"
                     if ri.get("ok") else f"unavailable: {ri.get('error')}"])
    md += [R.table(["", ""], rows), ""]
    busiest = max(machine.get("load_avg_1m_at_start") or 0, machine.get("load_avg_1m_at_end") or 0)
    if busiest > 1.0:
        md += [f"Note: the load average reached {busiest:g} on {machine['logical_cpus']} CPUs, so other processes "
               "competed for the cores during this run. Interleaving spreads that noise over both sides of a "
               "comparison, but absolute figures are low and noisy; rerun on a quiet machine before quoting them.", ""]
    if ref is not None:
        md += render_reference(args, ref)
    if ref is None:
        md += ["## Side by side with the reference implementation", "",
               f"Not run in this pass (`--areas {' '.join(args.areas)}`).", ""]
    for name, (title, rel) in AREAS.items():
        if name in areas:
            md += render_area(areas[name])
        else:
            md += [f"## {title}", "", f"Not run in this pass (`--areas {' '.join(args.areas)}`); "
                   f"`{suite_command(args)} --areas {name}` runs `{rel}`.", ""]
    return "\n".join(md).rstrip() + "\n"


def render_reference(args, ref: Dict[str, Any]) -> List[str]:
    s = ref["size"]
    V = ref["cells"][0]["cell"]["vocab_size"] if ref["cells"] else "?"
    md = ["## Side by side with the reference implementation", "",
          "Reference: ESPnet-SpeechLM as shipped in PyPI `espnet==202506` (`espnet2/speechlm/core_lm/"
          "ar_multiscale.py`, `valle.py`), in its own venv (`bash bench/suite/setup_reference.sh`), driven by "
          "`bench/suite/reference_runner.py`. Ours: `build_speechlm(arch, \"builtin\", ...)`, driven by "
          "`bench/suite/ours_runner.py`.", "",
          f"- Model: d_model {s['d_model']}, {s['n_layer']} layers, {s['n_head']} heads, {s['n_streams']} streams, "
          f"multiscale local Transformer {s['local_layers']} layers, Vall-E NAR {s['n_layer']} layers; vocabulary {V} "
          f"(256 special + text {s['n_text']} + {s['n_streams']} x {s['codebook']} codec); fp32, {args.threads} threads. "
          "Ours: Llama-style blocks (RMSNorm, SwiGLU of width 8/3 d, RoPE, no biases); reference: GPT-2 style "
          "blocks (LayerNorm, 4 d GELU MLP, biases, learned positions), `share_emb=False` (its own output head). "
          "Ours is measured twice: *full head* (`shared_head=True`: one head over the whole vocabulary, the "
          "reference's layout) and *per-stream heads* (the recipe's layout: `vocab_build_args`, each stream's "
          "head scores only the ids that stream can hold); both have about the same parameter count as the reference.",
          f"- Training step: forward + backward + `torch.optim.AdamW` step, the same plain torch loop for every side "
          f"(`bench/suite/workload.py`) on the same random codec frames; batch {s['batch']} x {s['seq_len']} frames; "
          f"tokens/s counts the batch x (length - 1) x streams target tokens. {s['steps']} steps per repetition, "
          f"after {s['warmup']} warm-up step.",
          f"- Generation: ours `model.generate` (top-k {s['top_k']}, KV cache), reference `inference` "
          f"(search_algo sampling, top-k {s['top_k']}, its KV-cache hooks); prompt {s['prompt']} frames and exactly "
          f"{s['new']} new frames per example (eos masked until then on every side), and a speech-sized context "
          f"(prompt {s['long_prompt']}, {s['long_new']} new) at the largest batch; the reference samples stream k "
          "from codebook k only (its `masks`), ours through its modality masks; tokens/s = batch x frames x streams.",
          f"- {s['reps']} repetitions per cell, interleaved (full head, per-stream heads, reference, full head, ...) "
          "in three long-lived worker processes; each worker builds and warms up a cell's model once. Figures are "
          "medians; `ours/ref` is the ratio of the medians, `paired ratios` the range of the per-repetition ratios.", ""]
    errors: List[str] = []

    def failed(err: str) -> str:
        if err not in errors:
            errors.append(err)
        return f"fails [{errors.index(err) + 1}]"

    rows, params = [], []
    for c in ref["cells"]:
        cell, sides = c["cell"], c["sides"]
        theirs = sides["reference"]
        shape = (f"{cell['batch']} x {cell['seq_len']}" if c["op"] == "train"
                 else f"{cell['batch']} x ({cell['prompt']} + {cell['new']})")
        for name, label, _ in SIDES[:-1]:
            ours = sides[name]
            row = R.comparison_row(c["op"], cell["arch"], shape, label, ours["tok_s"] or [None], theirs["tok_s"])
            if ours["error"]:
                row[4] = failed(ours["error"])
            if theirs["error"]:
                row[5] = failed(theirs["error"])
            rows.append(row)
        if c["op"] == "train":
            for name, label, _ in SIDES:
                po, err = sides[name].get("params"), sides[name]["error"]
                params.append([cell["arch"], label, po[0] if po else failed(err) if err else None,
                               po[1] if po else None])
    md += [R.table(R.COMPARISON_HEADERS, rows), ""]
    md += [f"[{i + 1}] `{e}`" + ("  " if i + 1 < len(errors) else "") for i, e in enumerate(errors)]
    md += [""] if errors else []
    if params:
        md += ["Parameter counts (equal size check; \"body\" leaves out the token embedding and output heads):", "",
               R.table(["arch", "model", "parameters", "body parameters"], params), ""]
    md += ["Goals on the 2-core CPU: training >= 1.5x, generation >= 3x the reference tokens/s.", "",
           f"Reproduce: `{suite_command(args)} --areas reference`", ""]
    return md


def render_area(a: Dict[str, Any]) -> List[str]:
    md = [f"## {a['title']}", ""]
    if a.get("about"):
        md += [f"`{a['script']}`: {a['about']}", ""]
    md += [f"Status: {a['status']}" + (f" ({a['seconds']:.0f} s)" if "seconds" in a else ""), ""]
    if a.get("note"):
        md += [a["note"], ""]
    if a.get("error"):
        md += ["```", a["error"], "```", ""]
    if a.get("settings"):
        md += [f"Settings: `{a['settings']}`", ""]
    if "rows" in a:
        md += [R.rows_table(a["rows"]), ""]
    for t in a.get("tables", []):
        md += [t, ""]
    if a.get("command"):
        md += [f"Reproduce: `{a['command']}`", ""]
    return md


def torch_facts() -> Dict[str, Any]:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"torch": torch.__version__, "gpu": gpu}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny sizes, 2 repetitions (a check, not figures)")
    p.add_argument("--out", type=Path, default=None,
                   help="markdown report (default docs/benchmarks.md; with --quick bench/suite/.out/benchmarks-quick.md)")
    p.add_argument("--areas", nargs="+", default=ALL_AREAS, choices=ALL_AREAS)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reps", type=int, default=None, help="repetitions per comparison cell (default 5; quick 2)")
    p.add_argument("--omp-passive", action="store_true",
                   help="OMP_WAIT_POLICY=PASSIVE for every benchmark process: on a loaded machine, spinning "
                        "OpenMP threads make each small op wait milliseconds for a descheduled peer")
    p.add_argument("--ref-python", default=str(REF_VENV / "bin" / "python"))
    p.add_argument("--no-setup", action="store_true", help="do not run setup_reference.sh (use --ref-python as is)")
    p.add_argument("--worker-timeout", type=float, default=600.0, help="seconds per worker request")
    p.add_argument("--area-timeout", type=float, default=None, help="seconds per benchmark script (1800; quick 600)")
    args = p.parse_args()
    if args.out is None:
        args.out = OUT_DIR / "benchmarks-quick.md" if args.quick else ROOT / "docs" / "benchmarks.md"
    if args.area_timeout is None:
        args.area_timeout = 600.0 if args.quick else 1800.0
    size = dict(SIZES["quick" if args.quick else "full"])
    if args.reps is not None:
        size["reps"] = args.reps
    logs = OUT_DIR / args.out.stem  # raw results and logs of this report, next to no other run's
    logs.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    machine = {**R.machine_info(), **torch_facts(), "date": dt.datetime.now().strftime("%Y-%m-%d %H:%M")}
    ref = run_reference(args, size, logs) if "reference" in args.areas else None
    areas = {name: run_area(name, args, logs) for name in AREAS if name in args.areas}
    machine["wall_s"] = time.perf_counter() - t0
    if hasattr(os, "getloadavg"):
        machine["load_avg_1m_at_end"] = round(os.getloadavg()[0], 2)

    (logs / "results.json").write_text(json.dumps({"machine": machine, "reference": ref, "areas": areas}, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(args, machine, ref, areas))
    print(f"[suite] wrote {args.out} ({machine['wall_s']:.0f} s); raw results and logs in {logs.relative_to(ROOT)}/")


if __name__ == "__main__":
    main()
