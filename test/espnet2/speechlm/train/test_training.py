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

from train_testkit import REPO, curve, finish, start_toy, subprocess_env, train_log

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
    # same as zero1, with activation checkpointing / torch.compile (eager backend: no code generation)
    {"name": "ckpt_act", "overrides": {"run.max_steps": 3, "run.activation_checkpointing": True}},
    {"name": "compiled", "overrides": {"run.max_steps": 3, "run.compile": True, "run.compile_backend": "eager"}},
    {"name": "dpo", "overrides": {"run.max_steps": 8, "train.objective": "dpo", "dpo.beta": 0.5, "optim.lr": 3e-3,
                                  "data.batch_tokens": 160, "run.valid_interval": 8, "run.save_interval": 8,
                                  "run.tensorboard": True}},
    {"name": "dpo_zero3", "overrides": {"run.max_steps": 2, "train.objective": "dpo", "deepspeed.zero_stage": 3,
                                        "data.batch_tokens": 160, "run.save_interval": 2}},
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


def test_activation_checkpointing_and_compile_train_like_the_plain_model(single_process):
    out, result = single_process()
    plain = curve(out / "zero1", ("loss", "grad_norm"))
    assert curve(out / "ckpt_act", ("loss", "grad_norm")) == plain  # recomputation is exact, dropout included
    compiled = curve(out / "compiled", ("loss", "grad_norm"))
    assert [s for s, *_ in compiled] == [1, 2, 3]
    for a, b in zip(plain, compiled):
        assert a[1] == pytest.approx(b[1], rel=1e-5) and a[2] == pytest.approx(b[2], rel=1e-4)


def test_per_task_training_loss_and_acc(single_process):
    out, _ = single_process()
    log = train_log(out / "full")  # 8 steps of small mixed batches
    seen = set()
    for rec in log:
        tasks = {k.split("/")[0] for k in rec if k.endswith("/loss")}
        assert tasks and tasks <= {"asr", "tts"} and all(f"{t}/acc" in rec for t in tasks)
        seen |= tasks
        losses = [rec[f"{t}/loss"] for t in tasks]
        assert all(v > 0 for v in losses) and all(0 <= rec[f"{t}/acc"] <= 1 for t in tasks)
    assert seen == {"asr", "tts"}
    # one micro-batch per step: the batch loss is a token-weighted mean of its tasks' losses
    for rec in train_log(out / "zero1"):
        losses = [v for k, v in rec.items() if k.endswith("/loss")]
        assert min(losses) - 1e-5 <= rec["loss"] <= max(losses) + 1e-5


def test_dpo_through_deepspeed_raises_the_margin_and_keeps_the_reference(single_process):
    out, result = single_process()
    r = result["dpo"]
    assert r["step"] == 8 and r["ref_unchanged"] and not r["ref_requires_grad"] and r["policy_changed"]
    log = train_log(out / "dpo")
    assert log[0]["loss"] == pytest.approx(0.6931472, abs=1e-6) and log[0]["margin"] == 0.0  # policy == reference
    assert log[-1]["margin"] > 0.1 and log[-1]["acc"] >= 0.9 and log[-1]["loss"] < log[0]["loss"] - 0.05
    assert log[-1]["chosen_reward"] > log[-1]["rejected_reward"]
    assert {"asr/loss", "tts/loss", "asr/acc"} <= set(log[-1])  # per task: mean pair loss, reward accuracy
    valid = train_log(out / "dpo", "valid")
    assert valid[-1]["step"] == 8 and valid[-1]["loss"] < 0.6931 and {"asr/loss", "tts/loss"} <= set(valid[-1])
    for run, step in (("dpo", 8), ("dpo_zero3", 2)):  # checkpoints hold the plain model (ZeRO-3: consolidated)
        weights = load_file(str(out / run / "checkpoints" / f"step_{step:08d}" / "model.safetensors"))
        assert weights["embed.weight"].numel() > 0 and not any(k.startswith("policy.") for k in weights)
    assert result["dpo_zero3"]["ref_unchanged"] and result["dpo_zero3"]["step"] == 2
    assert train_log(out / "dpo_zero3")[0]["loss"] == pytest.approx(0.6931472, abs=1e-6)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / "dpo" / "tensorboard"))
    events.Reload()
    assert {"train/asr/loss", "train/tts/acc", "train/margin", "valid/asr/loss"} <= set(events.Tags()["scalars"])


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


def test_cli_dpo_from_an_exported_model(tiny_data_dir, tokenizer_config, tmp_path):
    """speechlm_train --set train.objective=dpo on prepared preference pairs, starting from (and
    anchored to) an exported model; the exported DPO model is a plain model for the plain task."""
    import yaml

    from test_dpo import prepare_pairs

    from espnet2.bin import speechlm_train
    from espnet2.speechlm.models import load_pretrained, save_pretrained
    from espnet2.speechlm.train.config import load_config
    from espnet2.speechlm.vocab import JointVocabulary

    data_json, vocab_dir = prepare_pairs(tiny_data_dir, tokenizer_config, tmp_path)
    (tmp_path / "train.yaml").write_text("""
model: {arch: delay, body: builtin, body_conf: {d_model: 32, n_layer: 1, n_head: 2, n_kv_head: 2, d_ff: 64, max_len: 256}}
train: {objective: dpo}
dpo: {beta: 0.2}
optim: {lr: 1.0e-3}
data: {batch_tokens: 600}
run: {max_steps: 3, log_interval: 1, valid_interval: 3, save_interval: 3, plot_images: false, tensorboard: false}
""")
    cfg = load_config(tmp_path / "train.yaml")
    save_pretrained(speechlm_train.build_model(cfg, JointVocabulary.load(vocab_dir)), tmp_path / "sft")
    out = tmp_path / "exp"
    cmd = [sys.executable, "-m", "espnet2.bin.speechlm_train", "--train_config", tmp_path / "train.yaml",
           "--vocab", vocab_dir, "--output_dir", out, "--train_data_json", data_json, "--valid_data_json", data_json,
           "--set", f"train.init={tmp_path / 'sft'}"]
    proc = subprocess.run([str(c) for c in cmd], cwd=REPO, env=subprocess_env(), capture_output=True, text=True,
                          timeout=400)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "initial weights from" in proc.stderr
    log = train_log(out)
    assert [r["step"] for r in log] == [1, 2, 3] and log[0]["loss"] == pytest.approx(0.6931472, abs=1e-5)
    assert "margin" in log[-1] and "asr/loss" in log[-1]
    template = yaml.safe_load((out / "model" / "templates" / "asr.yaml").read_text())
    assert [t["name"] for t in template["targets"]] == ["text"]  # no rejected item in the shipped task
    model = load_pretrained(out / "model")
    sft = load_pretrained(tmp_path / "sft")
    assert not torch.equal(model.embed.weight, sft.embed.weight)  # trained
