"""speechlm.sh refuses stage ranges that select nothing, and takes --name=value (the form --help prints)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

RECIPE = Path(__file__).resolve().parents[2] / "egs2" / "mini_en" / "speechlm1"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "speechlm.sh", *args], cwd=RECIPE, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("args, message", [
    (["--stage", "99"], "--stage 99 is not a stage (1-12)"),
    (["--stage", "13", "--stop_stage", "20"], "--stage 13 is not a stage"),
    (["--stage", "9", "--stop_stage", "3"], "--stage 9 is after --stop_stage 3"),
    (["--stop_stage", "-5"], "--stop_stage must be a stage number 1-12, got '-5'"),
    (["--stage", "abc"], "--stage must be a stage number 1-12, got 'abc'"),
    (["--stage=10", "--stop_stage=9"], "--stage 10 is after --stop_stage 9"),  # --name=value is read
    (["--stagee", "3"], "unknown option --stagee"),
])
def test_bad_stage_options_fail_before_any_work(args, message):
    out = _run(*args)
    assert out.returncode != 0
    assert message in out.stderr
    assert "stage 1:" not in out.stdout + out.stderr  # nothing ran
