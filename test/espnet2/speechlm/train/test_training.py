"""DeepSpeed training on CPU, each run in a subprocess (gloo process groups stay out of pytest)."""

import json
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from conftest import REPO, curve, finish, start_toy, subprocess_env, train_log

EXACT = ("loss", "acc", "grad_norm", "lr")


# grad_accum 2 and an epoch boundary (about 7 steps per epoch) inside the resumed stretch
RESUME_CONF = {"run.max_steps": 8, "run.save_interval": 2, "run.valid_interval": 4, "run.keep_last_n": 3,
               "run.grad_accum": 2, "optim.scheduler": "cosine", "optim.warmup_steps": 2}
SINGLE_PROCESS_RUNS = [
    {"name": "zero0", "overrides": {"run.max_steps": 3, "deepspeed.zero_stage": 0}},
    {"name": "zero1", "overrides": {"run.max_steps": 3, "deepspeed.zero_stage": 1}},
    {"name": "zero2", "overrides": {"run.max_steps": 3, "deepspeed.zero_stage": 2}},
    {"name": "zero3", "overrides": {"run.max_steps": 3, "deepspeed.zero_stage": 3, "run.save_interval": 3}},
    {"name": "bf16", "overrides": {"run.max_steps": 3, "deepspeed.bf16": True, "run.save_interval": 3}},
    {"name": "full", "overrides": RESUME_CONF},  # uninterrupted reference of the kill/resume test
    {"name": "nan_ok", "overrides": {"run.max_steps": 4}, "model": "toy", "nan_calls": [2, 3]},
    {"name": "nan_bad", "overrides": {"run.max_steps": 4, "run.nonfinite_patience": 3}, "model": "toy",
     "nan_calls": [2, 3, 4]},
]


@pytest.fixture(scope="module")
def single_process(tmp_path_factory):
    """One process trains every scenario above in turn (saves ~10 s of imports per scenario)."""
    out = tmp_path_factory.mktemp("single")
    proc = start_toy(out, None, "--runs", json.dumps(SINGLE_PROCESS_RUNS))
    state = {}

    def get():
        if not state:
            state.update(finish(proc, timeout=600))
            assert state["rc"] == 0, state["stderr"][-3000:]
        return out, state["result"]

    yield get
    if proc.poll() is None:
        proc.kill()


def wait_for_step(out, step, proc, timeout=400):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if any(r["step"] >= step for r in train_log(out)):
            return
        assert proc.poll() is None, "run ended before it could be killed"
        time.sleep(0.05)
    raise TimeoutError(f"step {step} not reached")


def test_sigkill_resume_and_corrupted_fallback_reproduce_losses(single_process, tmp_path):
    """Kill -9 after step 5 (checkpoints at 2, 4); resume (from 4) and, in a copy whose step 4
    is corrupted, resume from 2: both must log exactly the losses of an uninterrupted run."""
    killed = tmp_path / "killed"
    p_kill = start_toy(killed, RESUME_CONF, "--sleep", "0.3")  # runs beside the single-process fixture
    wait_for_step(killed, 5, p_kill)
    p_kill.send_signal(signal.SIGKILL)
    p_kill.wait()
    assert (killed / "checkpoints" / "step_00000004" / "MANIFEST.json").exists()
    assert not (killed / "checkpoints" / "step_00000008").exists()
    corrupt = tmp_path / "corrupt"
    shutil.copytree(killed, corrupt)
    weights = corrupt / "checkpoints" / "step_00000004" / "ds" / "mp_rank_00_model_states.pt"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))

    p_res, p_cor = start_toy(killed, RESUME_CONF), start_toy(corrupt, RESUME_CONF)
    r_res, r_cor = finish(p_res), finish(p_cor)
    for r in (r_res, r_cor):
        assert r["rc"] == 0, r["stderr"][-3000:]
    assert r_res["result"][""]["resumed_from"].endswith("step_00000004")
    assert r_cor["result"][""]["resumed_from"].endswith("step_00000002")
    assert any(r["epoch"] == 1 for r in train_log(killed))  # the resumed stretch crossed an epoch
    assert "skipping corrupted checkpoint" in r_cor["stderr"] and "checksum mismatch" in r_cor["stderr"]
    out, _ = single_process()
    full = out / "full"
    expected = curve(full, EXACT)
    assert [s for s, *_ in expected] == list(range(1, 9))
    assert curve(killed, EXACT) == expected  # bit-for-bit: same batches, dropout masks, optimizer state
    assert curve(corrupt, EXACT) == expected
    assert curve(killed, ("loss", "acc"), "valid") == curve(full, ("loss", "acc"), "valid")


def test_zero_stages_agree(single_process):
    out, result = single_process()
    curves = {s: curve(out / f"zero{s}", ("loss", "grad_norm")) for s in (0, 1, 2, 3)}
    assert len(curves[0]) == 3
    for s in (1, 2, 3):
        for a, b in zip(curves[0], curves[s]):
            assert a[0] == b[0] and a[1] == pytest.approx(b[1], rel=1e-5) and a[2] == pytest.approx(b[2], rel=1e-4)
    assert all(result[f"zero{s}"]["step"] == 3 for s in (0, 1, 2, 3))
    z3 = load_file(str(out / "zero3" / "checkpoints" / "step_00000003" / "model.safetensors"))
    assert z3 and all(t.numel() > 0 for t in z3.values())  # consolidated, not ZeRO-3 partitions


def test_bf16_runs_close_to_fp32(single_process):
    out, result = single_process()
    fp32, bf16 = curve(out / "zero1", ("loss",)), curve(out / "bf16", ("loss",))
    assert [s for s, _ in bf16] == [1, 2, 3]
    assert all(abs(a[1] - b[1]) < 0.05 for a, b in zip(fp32, bf16))
    weights = load_file(str(out / "bf16" / "checkpoints" / "step_00000003" / "model.safetensors"))
    assert {t.dtype for t in weights.values()} == {torch.bfloat16}


def test_nonfinite_loss_is_skipped_then_fatal(single_process):
    out, result = single_process()
    assert result["nan_ok"]["nonfinite_skipped"] == 2 and result["nan_ok"]["step"] == 4
    log = train_log(out / "nan_ok")
    assert all(r["loss"] == r["loss"] for r in log)  # no NaN reached the weights
    assert [r["nonfinite_skipped"] for r in log] == [0, 2, 2, 2]
    assert result["nan_bad"]["error"].startswith("NonFiniteLossError: 3 consecutive non-finite losses")


def prepare_real_data(data_dir, tok_conf, root):
    from espnet2.bin import speechlm_prepare

    def run(*a):
        speechlm_prepare.main([str(x) for x in a])

    run("train_tokenizers", "--data_dir", data_dir, "--tasks", "asr", "audiolm", "--tokenizer_config", tok_conf,
        "--tokenizer_dir", root / "tok")
    for task in ("asr", "audiolm"):
        run("tokenize", "--task", task, "--data_dir", data_dir, "--tokenizer_config", tok_conf, "--tokenizer_dir",
            root / "tok", "--out_dir", root / "dump" / task, "--shard_size", 4)
    run("vocab", "--data_json", root / "dump/asr/data.json", root / "dump/audiolm/data.json", "--out_dir", root / "vocab")


def test_two_cpu_processes_cli_end_to_end(tiny_data_dir, tokenizer_config, tmp_path):
    """speechlm_train.py --ngpu 0 --num_procs 2 on prepared data: torchrun, gloo, ZeRO-1, export."""
    prepare_real_data(tiny_data_dir, tokenizer_config, tmp_path)
    (tmp_path / "train.yaml").write_text("""
model: {arch: delay, body: builtin, body_conf: {d_model: 32, n_layer: 2, n_head: 2, n_kv_head: 2, d_ff: 64, max_len: 256}}
optim: {lr: 1.0e-3, warmup_steps: 2, scheduler: cosine}
data: {batch_tokens: 300}
run: {max_steps: 4, log_interval: 1, valid_interval: 2, save_interval: 2, keep_best_k: 2, plot_images: false}
deepspeed: {zero_stage: 1}
""")
    out = tmp_path / "exp"
    cmd = [sys.executable, "-m", "espnet2.bin.speechlm_train", "--ngpu", "0", "--num_procs", "2",
           "--train_config", tmp_path / "train.yaml", "--vocab", tmp_path / "vocab", "--output_dir", out,
           "--train_data_json", tmp_path / "dump/asr/data.json", f"{tmp_path / 'dump/audiolm/data.json'}:0.5",
           "--valid_data_json", tmp_path / "dump/asr/data.json", tmp_path / "dump/audiolm/data.json"]
    proc = subprocess.run([str(c) for c in cmd], cwd=REPO, env=subprocess_env(), capture_output=True, text=True,
                          timeout=400)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "world size 2" in proc.stderr
    log = train_log(out)
    assert [r["step"] for r in log] == [1, 2, 3, 4] and all(r["loss"] > 0 for r in log)
    valid = train_log(out, "valid")
    assert [r["step"] for r in valid] == [2, 4] and {"asr/loss", "audiolm/loss", "loss"} <= set(valid[-1])
    manifest = json.loads((out / "checkpoints" / "step_00000004" / "MANIFEST.json").read_text())
    assert manifest["world_size"] == 2
    assert {"trainer_state.rank0.pt", "trainer_state.rank1.pt"} <= set(manifest["files"])
    assert (out / "config.yaml").exists() and list((out / "tensorboard").glob("events.*"))

    from espnet2.speechlm.models import load_pretrained

    model = load_pretrained(out / "model")  # no DeepSpeed needed
    assert (out / "model" / "vocab.json").exists()
    assert set(model.extra_config["averaged_checkpoints"]) == {"step_00000002", "step_00000004"}
