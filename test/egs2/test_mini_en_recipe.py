"""Smoke test: the mini recipe's stages 1-12 on a few dozen utterances with a tiny model.

It checks that every stage runs and hands the next one what it needs (it does not check
that the model learns: the default config does that, see the README).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "egs2" / "mini_en" / "speechlm1"

pytestmark = pytest.mark.skipif(
    not (shutil.which("flite") or shutil.which("espeak-ng")), reason="needs flite or espeak-ng (tools/install.sh)")


def run_stages(recipe: Path, *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    env["PYTHONPATH"] = f"{ROOT}:{env.get('PYTHONPATH', '')}"
    env.setdefault("TORCH_EXTENSIONS_DIR", str(ROOT / "tools" / ".cache" / "torch_extensions"))
    env["DS_ACCELERATOR"] = "cpu"
    cmd = [
        "bash", "speechlm.sh", "--python", sys.executable, "--data_name", "smoke",
        "--tasks", "asr tts_spkid textlm audiolm", "--train_set", "train", "--valid_set", "valid",
        "--test_sets", "test", "--tokenizer_config", "conf/tokenizers_tiny.yaml",
        "--train_config", "conf/train_tiny.yaml", "--inference_config", "conf/decode.yaml",
        "--local_data_opts", "--num_train 24 --num_valid 4 --num_test 4 --nj 2", "--nj", "1",
        "--tokenizer_max_items", "50",
        "--prep_cmd", "env", "--prep_jobs", "2",  # the cluster path, with `env` as a stand-in launcher
        *extra,
    ]
    return subprocess.run(cmd, cwd=recipe, env=env, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def recipe(tmp_path_factory) -> Path:
    """A copy of the recipe dir (its outputs stay out of the source tree)."""
    dst = tmp_path_factory.mktemp("egs2") / "speechlm1"
    shutil.copytree(RECIPE, dst, symlinks=False, ignore=shutil.ignore_patterns("data", "dump", "exp", "downloads"))
    (dst / "speechlm.sh").unlink()
    (dst / "speechlm.sh").symlink_to(ROOT / "egs2" / "TEMPLATE" / "speechlm1" / "speechlm.sh")
    result = run_stages(dst)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    return dst


def test_every_stage_leaves_its_output(recipe):
    exp = recipe / "exp" / "speechlm_smoke_train_tiny"
    for task in ("asr", "tts_spkid", "textlm", "audiolm"):
        for split in ("train", "valid", "test"):
            assert json.loads((recipe / "dump" / task / split / "data.json").read_text())["num_examples"] > 0
    assert (recipe / "dump" / "vocab" / "vocab.txt").is_file()
    assert (exp / "train" / "images" / "curves.png").is_file()
    model = exp / "train" / "model"
    assert {"model.safetensors", "config.json", "vocab.json"} <= {p.name for p in model.iterdir()}
    assert (model / "tokenizers" / "codec").is_dir() and (model / "templates" / "asr.yaml").is_file()
    test_ids = sorted(l.split()[0] for l in (recipe / "data" / "test" / "text").read_text().splitlines())
    hyp_ids = sorted(l.split()[0] for l in (exp / "decode" / "asr_test" / "token").read_text().splitlines())
    assert hyp_ids == test_ids
    wavs = (exp / "decode" / "tts_spkid_test" / "wav.scp").read_text().splitlines()
    assert wavs and all(Path(l.split()[1]).is_file() for l in wavs)
    results = (exp / "RESULTS.md").read_text()
    for row in ("| asr | test |", "| tts_spkid | test |", "| textlm | test |", "| audiolm | test |"):
        assert row in results, results
    assert (exp / "packed" / "README.md").is_file() and (exp / "packed" / "model.safetensors").is_file()
    assert json.loads((exp / "dataset" / "datasets.json").read_text())


def test_rerun_skips_finished_stages(recipe):
    result = run_stages(recipe, "--stop_stage", "9")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "skip stage 8: training (done" in result.stderr
    assert "stage 5: tokenization" not in result.stderr.replace("skip stage 5: tokenization", "")


def test_inference_from_the_packed_folder(recipe, tmp_path):
    """What a user does after downloading: the packed folder alone decodes the test set."""
    exp = recipe / "exp" / "speechlm_smoke_train_tiny"
    packed = tmp_path / "downloaded"
    shutil.copytree(exp / "packed", packed)
    shutil.rmtree(recipe / "dump" / "tokenizers" / "text", ignore_errors=False)  # only the packed copy is left
    try:
        from espnet2.bin import speechlm_inference

        speechlm_inference.main(["--model_dir", str(packed), "--data_json", str(recipe / "dump" / "asr" / "test" / "data.json"),
                                 "--inference_config", str(recipe / "conf" / "decode.yaml"), "--out_dir", str(tmp_path / "dec")])
    finally:
        shutil.copytree(exp / "train" / "model" / "tokenizers" / "text", recipe / "dump" / "tokenizers" / "text")
    assert len((tmp_path / "dec" / "token").read_text().splitlines()) == 4
