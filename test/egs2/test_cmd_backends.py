"""The `${cmd} JOB=1:N LOG COMMAND` launchers (utils/run.sh, utils/slurm.sh) and stage 5 through them.

Slurm is replaced by fake `sbatch` / `srun` executables first on PATH: they record their
arguments and run the tasks here (the array tasks with SLURM_ARRAY_TASK_ID set).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "egs2" / "TEMPLATE" / "speechlm1"
RUN = TEMPLATE / "utils" / "run.sh"
SLURM = TEMPLATE / "utils" / "slurm.sh"

FAKE_SBATCH = r"""#!/usr/bin/env bash
# fake sbatch: record the arguments (tab-separated), run the array tasks here one after another
{ printf 'sbatch'; printf '\t%s' "$@"; echo; } >> "${FAKE_SLURM_RECORD}"
array=1-1 output=slurm-%a.out script=""
while [ $# -gt 0 ]; do
    case "$1" in
        --array=*) array="${1#--array=}" ;;
        --output=*) output="${1#--output=}" ;;
        -*) ;;
        *) script="$1"; shift; break ;;
    esac
    shift
done
range="${array%%%*}"; rc=0
echo 4242
for ((id = ${range%-*}; id <= ${range#*-}; id++)); do
    out="${output//%a/${id}}"; out="${out//%%/%}"
    SLURM_ARRAY_TASK_ID=${id} SLURM_JOB_ID=4242 bash "${script}" "$@" > "${out}" 2>&1 || rc=$?
done
exit ${rc}
"""

FAKE_SRUN = r"""#!/usr/bin/env bash
# fake srun: record the arguments, drop the options, run the command here
{ printf 'srun'; printf '\t%s' "$@"; echo; } >> "${FAKE_SLURM_RECORD}"
while [ $# -gt 0 ] && [[ "$1" == -* ]]; do shift; done
exec "$@"
"""


@pytest.fixture
def fake_slurm(tmp_path: Path) -> dict:
    """Environment with fake sbatch/srun first on PATH; env['FAKE_SLURM_RECORD'] collects their calls."""
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    for name, text in [("sbatch", FAKE_SBATCH), ("srun", FAKE_SRUN)]:
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    env = dict(os.environ)
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    env["FAKE_SLURM_RECORD"] = str(tmp_path / "slurm_calls.tsv")
    return env


def calls(env: dict) -> list[list[str]]:
    path = Path(env["FAKE_SLURM_RECORD"])
    return [line.split("\t") for line in path.read_text().splitlines()] if path.exists() else []


def launch(launcher: Path, *args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(launcher), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=60)


# --- utils/run.sh ----------------------------------------------------------------------
def test_run_substitutes_job_in_command_and_log(tmp_path):
    r = launch(RUN, "JOB=1:3", "log/x.JOB.log", "echo", "job", "JOB", "$((JOB*10))", "a b", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    for j in (1, 2, 3):
        lines = (tmp_path / "log" / f"x.{j}.log").read_text().splitlines()
        assert lines[0] == f"# echo job {j} $(({j}*10)) a\\ b"
        assert lines[2] == f"job {j} {j * 10} a b"
        assert lines[-1].startswith("# Ended (code 0)")


def test_run_single_word_is_a_command_line_and_no_job_range_runs_once(tmp_path):
    r = launch(RUN, "one.log", "echo piped | tr a-z A-Z", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "PIPED" in (tmp_path / "one.log").read_text()


def test_run_honours_max_jobs_run(tmp_path):
    # every job notes how many jobs are running when it starts, then holds its slot for a while
    job = "mkdir running/JOB && ls running | wc -l > count.JOB && sleep 0.4 && rmdir running/JOB"
    (tmp_path / "running").mkdir()
    t0 = time.perf_counter()
    r = launch(RUN, "--max_jobs_run", "2", "JOB=1:5", "log/x.JOB.log", job, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    counts = [int((tmp_path / f"count.{j}").read_text()) for j in range(1, 6)]
    assert max(counts) <= 2, counts
    assert time.perf_counter() - t0 >= 3 * 0.4  # 5 jobs, 2 at a time: 3 rounds at least


def test_run_without_limit_runs_every_job_at_once(tmp_path):
    # a barrier: each job waits (at most 20 s) until all three have started
    job = ("mkdir started/JOB; for i in $(seq 200); do [ $(ls started | wc -l) -ge 3 ] && exit 0; sleep 0.1; done; "
           "exit 9")
    (tmp_path / "started").mkdir()
    r = launch(RUN, "JOB=1:3", "log/x.JOB.log", job, cwd=tmp_path)
    assert r.returncode == 0, r.stderr


def test_run_names_the_log_of_a_failing_job(tmp_path):
    r = launch(RUN, "JOB=1:3", "log/x.JOB.log", "echo out JOB; [ JOB -ne 2 ] || exit 3", cwd=tmp_path)
    assert r.returncode != 0
    assert "1 of 3 jobs failed" in r.stderr and "log/x.2.log" in r.stderr
    assert "log/x.1.log" not in r.stderr and "log/x.3.log" not in r.stderr
    assert (tmp_path / "log" / "x.2.log").read_text().splitlines()[-1].startswith("# Ended (code 3)")
    for j in (1, 3):  # the other jobs still ran to the end
        assert (tmp_path / "log" / f"x.{j}.log").read_text().splitlines()[-1].startswith("# Ended (code 0)")


@pytest.mark.parametrize("args, message", [
    (["JOB=3:1", "x.log", "true"], "bad job range JOB=3:1"),
    (["JOB=1:2", "x.log"], "usage:"),
    (["--max_jobs_run", "many", "x.log", "true"], "--max_jobs_run needs a number"),
    (["--mem"], "option --mem needs a value"),
])
def test_run_rejects_bad_usage(tmp_path, args, message):
    r = launch(RUN, *args, cwd=tmp_path)
    assert r.returncode != 0 and message in r.stderr, r.stderr


# --- utils/slurm.sh ---------------------------------------------------------------------
def test_slurm_submits_one_array_with_the_requested_resources(tmp_path, fake_slurm):
    r = launch(SLURM, "--mem", "2G", "--num_threads", "3", "--gpu", "1", "--time", "0:10:00", "--partition", "cpu",
               "--max_jobs_run", "2", "--account=speech", "--exclusive",
               "JOB=1:3", "exp/log/tok.JOB.log", "echo", "task", "JOB", "$((JOB-1))", cwd=tmp_path, env=fake_slurm)
    assert r.returncode == 0, r.stderr
    (call,) = calls(fake_slurm)
    script = "exp/log/q/tok.sh"
    assert call == ["sbatch", "--wait", "--parsable", "--array=1-3%2", "--job-name=tok", "--output=exp/log/tok.%a.log",
                    "--mem=2G", "--cpus-per-task=3", "--gres=gpu:1", "--time=0:10:00", "--partition=cpu",
                    "--account=speech", "--exclusive", script]
    assert os.access(tmp_path / script, os.X_OK)
    for j in (1, 2, 3):
        lines = (tmp_path / "exp" / "log" / f"tok.{j}.log").read_text().splitlines()
        assert lines[0] == f"# echo task {j} $(({j}-1))"
        assert f"task {j} {j - 1}" in lines and lines[-1].startswith("# Ended (code 0)")


def test_slurm_minimal_options_and_cpus_per_task_alias(tmp_path, fake_slurm):
    r = launch(SLURM, "--cpus-per-task=4", "JOB=2:3", "l/a_JOB.log", "true", cwd=tmp_path, env=fake_slurm)
    assert r.returncode == 0, r.stderr
    (call,) = calls(fake_slurm)
    assert call[1:-1] == ["--wait", "--parsable", "--array=2-3", "--job-name=a_", "--output=l/a_%a.log",
                          "--cpus-per-task=4"]


def test_slurm_names_the_log_of_a_failing_task(tmp_path, fake_slurm):
    r = launch(SLURM, "JOB=1:3", "log/x.JOB.log", "[ JOB -ne 3 ] || exit 5", cwd=tmp_path, env=fake_slurm)
    assert r.returncode != 0
    assert "1 of 3 jobs failed" in r.stderr and "log/x.3.log" in r.stderr and "log/x.1.log" not in r.stderr
    assert (tmp_path / "log" / "x.3.log").read_text().splitlines()[-1].startswith("# Ended (code 5)")


def test_slurm_srun_mode_runs_one_step_per_job(tmp_path, fake_slurm):
    r = launch(SLURM, "--srun", "--mem", "1G", "--max_jobs_run", "1", "JOB=1:2", "log/s.JOB.log", "echo", "step", "JOB",
               cwd=tmp_path, env=fake_slurm)
    assert r.returncode == 0, r.stderr
    got = sorted(calls(fake_slurm))
    assert got == [["srun", "--ntasks=1", "--job-name=s", "--mem=1G", "bash", "log/q/s.sh", str(j)] for j in (1, 2)]
    for j in (1, 2):
        assert f"step {j}" in (tmp_path / "log" / f"s.{j}.log").read_text()


@pytest.mark.skipif(shutil.which("sbatch") is not None, reason="a real sbatch is installed")
def test_slurm_without_sbatch_says_so(tmp_path):
    r = launch(SLURM, "JOB=1:2", "log/x.JOB.log", "true", cwd=tmp_path)
    assert r.returncode != 0 and "sbatch not found" in r.stderr


# --- stage 5 through the launchers --------------------------------------------------------
def run_stage5(recipe: Path, env: dict, *extra: str) -> subprocess.CompletedProcess:
    cmd = ["bash", "speechlm.sh", "--python", sys.executable, "--stage", "3", "--stop_stage", "5",
           "--tasks", "asr", "--train_set", "train", "--valid_set", "train", "--test_sets", "",
           "--tokenizer_config", "conf/tokenizers.yaml", "--nj", "1", "--prep_jobs", "2",
           "--prep_shard_size", "3", *extra]  # 8 examples: 3 shards, job 1 gets shards 0 and 2, job 2 shard 1
    return subprocess.run(cmd, cwd=recipe, env=env, capture_output=True, text=True, timeout=120)


def outputs(out_dir: Path) -> dict:
    """Every file of a task/split dump except the run-specific prepare.yaml, as bytes."""
    return {str(p.relative_to(out_dir)): p.read_bytes() for p in sorted(out_dir.rglob("*"))
            if p.is_file() and p.name != "prepare.yaml"}


def test_stage5_with_slurm_jobs_matches_the_local_run(tmp_path, tiny_data_dir, tokenizer_config, fake_slurm):
    recipe = tmp_path / "recipe"
    (recipe / "conf").mkdir(parents=True)
    (recipe / "speechlm.sh").symlink_to(TEMPLATE / "speechlm.sh")
    shutil.copy(tokenizer_config, recipe / "conf" / "tokenizers.yaml")
    shutil.copytree(tiny_data_dir, recipe / "dump" / "audio" / "train")
    env = dict(fake_slurm, PYTHONPATH=f"{ROOT}:{ROOT / 'test'}:{fake_slurm.get('PYTHONPATH', '')}")
    out = recipe / "dump" / "asr" / "train"
    logs = recipe / "dump" / "logs" / "stage5_asr_train"

    r = run_stage5(recipe, env, "--prep_cmd", "utils/run.sh --max_jobs_run 2")
    assert r.returncode == 0, r.stderr[-4000:]
    local = outputs(out)
    assert len([k for k in local if k.endswith("/done")]) == 3
    assert "tokenize asr" in (logs / "tokenize.1.log").read_text()  # the jobs did the shards, not the merge

    # again through Slurm, chosen by the recipe's cmd.sh
    shutil.rmtree(out)
    shutil.rmtree(logs)
    for m in (recipe / "dump" / ".done").glob("stage5_*"):
        m.unlink()
    (recipe / "cmd.sh").write_text('prep_cmd="utils/slurm.sh --mem 1G --time 0:05:00"\n')
    r = run_stage5(recipe, env, "--prep_jobs", "5")  # 3 shards: 3 jobs, not 5
    assert r.returncode == 0, r.stderr[-4000:]
    (call,) = calls(fake_slurm)
    assert call[1:6] == ["--wait", "--parsable", "--array=1-3", "--job-name=tokenize",
                         "--output=dump/logs/stage5_asr_train/tokenize.%a.log"]
    assert call[6:8] == ["--mem=1G", "--time=0:05:00"]
    for j in (1, 2, 3):
        text = (logs / f"tokenize.{j}.log").read_text()
        assert f"--job_index $(({j}-1)) --num_jobs 3" in text and "tokenize asr" in text
        assert text.splitlines()[-1].startswith("# Ended (code 0)")
    assert outputs(out) == local


def test_stage5_older_prefix_form_runs_under_run_sh(tmp_path, tiny_data_dir, tokenizer_config, fake_slurm):
    """`--prep_cmd "srun -c 4"` (a prefix, the form before launchers) still works, and wins over cmd.sh."""
    recipe = tmp_path / "recipe"
    (recipe / "conf").mkdir(parents=True)
    (recipe / "speechlm.sh").symlink_to(TEMPLATE / "speechlm.sh")
    shutil.copy(tokenizer_config, recipe / "conf" / "tokenizers.yaml")
    shutil.copytree(tiny_data_dir, recipe / "dump" / "audio" / "train")
    (recipe / "cmd.sh").write_text('prep_cmd="utils/slurm.sh --mem 1G"\n')
    env = dict(fake_slurm, PYTHONPATH=f"{ROOT}:{ROOT / 'test'}:{fake_slurm.get('PYTHONPATH', '')}")
    r = run_stage5(recipe, env, "--prep_cmd", "env SPEECHLM_PREFIX=1")
    assert r.returncode == 0, r.stderr[-4000:]
    assert calls(fake_slurm) == []  # the command line won over cmd.sh
    for j in (1, 2):
        log = recipe / "dump" / "logs" / "stage5_asr_train" / f"tokenize.{j}.log"
        assert log.read_text().startswith("# env SPEECHLM_PREFIX=1 ") and "tokenize asr" in log.read_text()
    assert json.loads((recipe / "dump" / "asr" / "train" / "data.json").read_text())["num_examples"] == 8


def test_stage5_names_the_failing_job_and_stops(tmp_path, tiny_data_dir, tokenizer_config):
    recipe = tmp_path / "recipe"
    (recipe / "conf").mkdir(parents=True)
    (recipe / "speechlm.sh").symlink_to(TEMPLATE / "speechlm.sh")
    (recipe / "conf" / "tokenizers.yaml").write_text("text: {type: char}\n")  # no `codec`: every job fails
    shutil.copytree(tiny_data_dir, recipe / "dump" / "audio" / "train")
    env = dict(os.environ, PYTHONPATH=f"{ROOT}:{os.environ.get('PYTHONPATH', '')}")
    r = subprocess.run(["bash", "speechlm.sh", "--python", sys.executable, "--stage", "5", "--stop_stage", "5",
                        "--tasks", "asr", "--valid_set", "train", "--test_sets", "",
                        "--tokenizer_config", "conf/tokenizers.yaml", "--prep_jobs", "2", "--prep_shard_size", "4"],
                       cwd=recipe, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "dump/logs/stage5_asr_train/tokenize.1.log" in r.stderr
    assert "codec" in (recipe / "dump" / "logs" / "stage5_asr_train" / "tokenize.1.log").read_text()
    assert not (recipe / "dump" / ".done" / "stage5_asr_train").exists()


def test_stage5_one_shard_locally_needs_no_job(tmp_path, tiny_data_dir, tokenizer_config):
    """A set of one shard under the local launcher is tokenized by the merge call itself (one start-up, not two)."""
    recipe = tmp_path / "recipe"
    (recipe / "conf").mkdir(parents=True)
    (recipe / "speechlm.sh").symlink_to(TEMPLATE / "speechlm.sh")
    shutil.copy(tokenizer_config, recipe / "conf" / "tokenizers.yaml")
    shutil.copytree(tiny_data_dir, recipe / "dump" / "audio" / "train")
    env = dict(os.environ, PYTHONPATH=f"{ROOT}:{ROOT / 'test'}:{os.environ.get('PYTHONPATH', '')}")
    r = run_stage5(recipe, env, "--prep_shard_size", "8", "--prep_cmd", "utils/run.sh")
    assert r.returncode == 0, r.stderr[-4000:]
    assert json.loads((recipe / "dump" / "asr" / "train" / "data.json").read_text())["num_examples"] == 8
    assert not (recipe / "dump" / "logs").exists() and " jobs with " not in r.stderr
