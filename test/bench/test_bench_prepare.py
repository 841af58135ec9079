"""bench/bench_prepare.py's parts: the offline corpus and the process-tree memory probe (the full run is minutes)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("bench_prepare", ROOT / "bench" / "bench_prepare.py")
bp = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bp)


def tone_bases(n: int) -> list:
    t = np.arange(8000) / bp.SR
    return [((0.2 * np.sin(2 * np.pi * (200 + 100 * k) * t)).astype(np.float32), f"sentence {k}", f"spk{k}")
            for k in range(n)]


def test_corpus_is_perturbed_copies_and_the_small_one_a_prefix(tmp_path):
    seconds = bp.write_corpus(tmp_path / "big", 12, tone_bases(3), seed=0)
    bp.subset(tmp_path / "big", tmp_path / "small", 4)
    scp = (tmp_path / "big" / "wav.scp").read_text().splitlines()
    assert len(scp) == 12 and scp == sorted(scp)
    assert 12 * 0.3 < seconds <= 12 * 0.5
    for name in ("wav.scp", "text", "utt2spk"):
        big = (tmp_path / "big" / name).read_text().splitlines()
        assert (tmp_path / "small" / name).read_text().splitlines() == big[:4]
    a, sr = sf.read(scp[0].split()[1])
    b, _ = sf.read(scp[3].split()[1])  # same base utterance, different gain / noise / trim
    assert sr == bp.SR and a.ndim == 1 and not (len(a) == len(b) and np.allclose(a, b))


def test_memory_probe_counts_the_child_processes(tmp_path):
    # the measured command starts a child that holds ~300 MB for a while; the parent stays small
    child = "import numpy as np, time; x = np.ones(300 * 2**20 // 8); time.sleep(0.8)"
    parent = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {child!r}], check=True)"
    m = bp.run_measured([sys.executable, "-c", parent], env=None)
    assert m["one_mib"] >= 280 and m["tree_mib"] >= m["one_mib"] + 5, m
    assert m["wall"] >= 0.8


def test_memory_probe_reports_a_failing_command():
    with pytest.raises(RuntimeError, match="exit 3"):
        bp.run_measured([sys.executable, "-c", "print('boom'); raise SystemExit(3)"], env=None)


def test_sizes_must_be_small_then_large():
    with pytest.raises(SystemExit):
        bp.main(["--sizes", "100", "10"])
