"""A task none of the built-ins has, declared in YAML only: prepare -> a few training steps -> inference."""

import json
import os
import subprocess
import sys
from pathlib import Path

from espnet2.bin import speechlm_inference, speechlm_prepare

ROOT = Path(__file__).resolve().parents[3]

# speaker identification *and* transcription from audio: two targets of different tokenizers
USER_TASK = """\
task: spk_and_text_from_audio
description: which speaker said what (a user task, not built in)
conditions:
  - {name: wav.scp, tokenizer: codec, reader: audio}
targets:
  - {name: utt2spk, tokenizer: spk_id, reader: label}
  - {name: text, tokenizer: text, reader: text}
"""

TRAIN_CONFIG = """\
model: {arch: delay, body: builtin, body_conf: {d_model: 32, n_layer: 1, n_head: 2, n_kv_head: 1, d_ff: 64, max_len: 256}}
optim: {lr: 1.0e-3, warmup_steps: 0, scheduler: constant}
data: {batch_tokens: 1024}
run: {max_steps: 3, log_interval: 1, valid_interval: 3, save_interval: 3, keep_last_n: 1, keep_best_k: 1}
"""


def test_yaml_only_task_runs_through_prepare_train_and_inference(tiny_data_dir, tokenizer_config, tmp_path):
    task_dir = tmp_path / "conf" / "tasks"
    task_dir.mkdir(parents=True)
    (task_dir / "spk_and_text_from_audio.yaml").write_text(USER_TASK)
    common = ["--data_dir", str(tiny_data_dir), "--tokenizer_config", str(tokenizer_config),
              "--tokenizer_dir", str(tmp_path / "tok"), "--task_dir", str(task_dir)]
    speechlm_prepare.main(["train_tokenizers", "--tasks", "spk_and_text_from_audio", *common])
    out = tmp_path / "dump" / "spk_and_text_from_audio"
    speechlm_prepare.main(["tokenize", "--task", "spk_and_text_from_audio", "--out_dir", str(out), *common])
    speechlm_prepare.main(["vocab", "--data_json", str(out / "data.json"), "--out_dir", str(tmp_path / "vocab")])
    vocab = json.loads((tmp_path / "vocab" / "vocab.json").read_text())
    assert "spk_and_text_from_audio" in vocab["tasks"]  # took a free task slot

    (tmp_path / "train.yaml").write_text(TRAIN_CONFIG)
    env = {**os.environ, "PYTHONPATH": f"{ROOT}:{Path(__file__).parents[2]}", "DS_ACCELERATOR": "cpu"}
    result = subprocess.run(
        [sys.executable, "-m", "espnet2.bin.speechlm_train", "--train_config", str(tmp_path / "train.yaml"),
         "--train_data_json", str(out / "data.json"), "--valid_data_json", str(out / "data.json"),
         "--vocab", str(tmp_path / "vocab"), "--output_dir", str(tmp_path / "exp")],
        env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    model_dir = tmp_path / "exp" / "model"
    assert (model_dir / "templates" / "spk_and_text_from_audio.yaml").is_file()

    (tmp_path / "decode.yaml").write_text("spk_and_text_from_audio: {method: greedy, max_new_tokens: 4}\n")
    speechlm_inference.main(["--model_dir", str(model_dir), "--data_json", str(out / "data.json"),
                             "--inference_config", str(tmp_path / "decode.yaml"), "--out_dir", str(tmp_path / "dec")])
    rows = (tmp_path / "dec" / "token").read_text().splitlines()
    failed = (tmp_path / "dec" / "failed").read_text().splitlines() if (tmp_path / "dec" / "failed").exists() else []
    assert len(rows) == 8 and len(failed) <= 8
