"""Helpers for the training tests: run the toy trainer / the CLI in subprocesses.

A uniquely named module (not conftest.py), so `import` finds it whatever other test
directories are collected in the same run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import List, Optional


HERE = Path(__file__).resolve().parent
REPO = HERE.parents[3]


def subprocess_env() -> dict:
    env = dict(os.environ)
    env.update(PYTHONPATH=f"{REPO}{os.pathsep}{REPO / 'test'}", OMP_NUM_THREADS="1", DS_ACCELERATOR="cpu",
               PYTHONWARNINGS="ignore")
    env.setdefault("TORCH_EXTENSIONS_DIR", str(REPO / "tools" / ".cache" / "torch_extensions"))
    return env


def start_toy(out: Path, overrides: Optional[dict] = None, *flags: str) -> subprocess.Popen:
    cmd = [sys.executable, str(HERE / "run_toy.py"), str(out), json.dumps(overrides or {}), *flags]
    return subprocess.Popen(cmd, cwd=REPO, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def finish(proc: subprocess.Popen, timeout: float = 400) -> dict:
    """Wait; return {"rc", "stdout", "stderr", "result"} (result parsed from the RESULT line)."""
    stdout, stderr = proc.communicate(timeout=timeout)
    result = None
    for line in stdout.splitlines():
        if line.startswith("RESULT "):
            result = json.loads(line[len("RESULT "):])
    return {"rc": proc.returncode, "stdout": stdout, "stderr": stderr, "result": result}


def train_log(out: Path, split: str = "train") -> List[dict]:
    path = out / "log" / f"{split}.jsonl"
    return [json.loads(l) for l in path.read_text().splitlines()] if path.exists() else []


def curve(out: Path, keys=("loss", "acc", "grad_norm", "lr"), split: str = "train") -> List[tuple]:
    return [(r["step"], *(r.get(k) for k in keys)) for r in train_log(out, split)]
