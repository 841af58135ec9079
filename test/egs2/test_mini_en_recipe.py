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

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "egs2" / "mini_en" / "speechlm1"

pytestmark = pytest.mark.skipif(
    not (shutil.which("flite") or shutil.which("espeak-ng")), reason="needs flite or espeak-ng (tools/install.sh)")

TASKS = ("asr", "tts_spkid", "tts_spkemb", "textlm", "audiolm")
# 9 utterances over at most 8 round-robin voices: at least one speaker of valid/test has a second
# utterance for tts_spkemb's speaker prompt; the others' examples are skipped with their reason.
NUM_TEST = 9


def run_stages(recipe: Path, *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    env["PYTHONPATH"] = f"{ROOT}:{env.get('PYTHONPATH', '')}"
    env.setdefault("TORCH_EXTENSIONS_DIR", str(ROOT / "tools" / ".cache" / "torch_extensions"))
    env["DS_ACCELERATOR"] = "cpu"
    cmd = [
        "bash", "speechlm.sh", "--python", sys.executable, "--data_name", "smoke",
        "--tasks", " ".join(TASKS), "--train_set", "train", "--valid_set", "valid",
        "--test_sets", "test", "--tokenizer_config", "conf/tokenizers_tiny.yaml",
        "--train_config", "conf/train_tiny.yaml", "--inference_config", "conf/decode.yaml",
        "--local_data_opts", f"--num_train 24 --num_valid {NUM_TEST} --num_test {NUM_TEST} --nj 2", "--nj", "1",
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
    for task in TASKS:
        for split in ("train", "valid", "test"):
            assert json.loads((recipe / "dump" / task / split / "data.json").read_text())["num_examples"] > 0
    assert (recipe / "dump" / "vocab" / "vocab.txt").is_file()
    assert (exp / "train" / "images" / "curves.png").is_file()
    # conf/train_tiny.yaml's curriculum: steps 1-2 (the first log window) train asr alone, then all tasks
    logged = [json.loads(l) for l in (exp / "train" / "log" / "train.jsonl").read_text().splitlines()]
    tasks_of = [{k.split("/")[0] for k in rec if k.endswith("/loss")} for rec in logged]
    assert logged[0]["step"] == 2 and tasks_of[0] == {"asr"}, tasks_of
    assert set().union(*tasks_of[1:]) - {"asr"}, tasks_of
    model = exp / "train" / "model"
    assert {"model.safetensors", "config.json", "vocab.json"} <= {p.name for p in model.iterdir()}
    assert (model / "tokenizers" / "codec").is_dir() and (model / "templates" / "asr.yaml").is_file()
    test_ids = sorted(l.split()[0] for l in (recipe / "data" / "test" / "text").read_text().splitlines())
    hyp_ids = sorted(l.split()[0] for l in (exp / "decode" / "asr_test" / "token").read_text().splitlines())
    assert hyp_ids == test_ids
    wavs = (exp / "decode" / "tts_spkid_test" / "wav.scp").read_text().splitlines()
    assert wavs and all(Path(l.split()[1]).is_file() for l in wavs)
    results = (exp / "RESULTS.md").read_text()
    for task in TASKS:
        assert f"| {task} | test |" in results, results
    for task in ("tts_spkid", "tts_spkemb"):  # codec targets scored with tts_wer: a topline row right after
        assert f"| {task} | test |" in results.split(f"| {task} (resynthesis topline) | test |")[0].splitlines()[-1]
    assert "- tts_wer: recognizer " in results  # the recognizer is named below the table
    # one resynthesis of the test references, shared by both tasks (same references, same codec)
    assert len(list((recipe / "dump" / "resynth").glob("codec_*/resynth.json"))) == 1
    assert (exp / "packed" / "README.md").is_file() and (exp / "packed" / "model.safetensors").is_file()
    assert json.loads((exp / "dataset" / "datasets.json").read_text())


def test_speaker_embedding_task_goes_through_every_stage(recipe):
    """tts_spkemb: features stored beside the tokens, a projection trained for them, prompts
    decoded with them, scored with the recipe's conf/score/tts_spkemb.yaml, packed with the dataset."""
    exp = recipe / "exp" / "speechlm_smoke_train_tiny"
    kept = {}
    for split in ("train", "valid", "test"):
        out = recipe / "dump" / "tts_spkemb" / split
        meta = json.loads((out / "data.json").read_text())
        assert meta["tokenizers"]["spk_embedding"]["embed_dim"] == 40  # mfcc_stats: mean + std of 20 MFCCs
        shards = [out / sh["path"] for sh in meta["shards"]]
        kept[split] = [i for d in shards for i in (d / "ids.txt").read_text().split()]
        feats = np.concatenate([np.load(d / "item1.feat.npy") for d in shards])  # item1: utt2spk
        assert feats.shape == (len(kept[split]), 40) and len(kept[split]) == meta["num_examples"] > 0
        np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, rtol=1e-5)  # normalize: true
        skipped = (out / "skipped.txt").read_text().splitlines()
        assert all("has no other utterance for a prompt" in line for line in skipped), skipped
        n_utts = len((recipe / "dump" / "audio" / split / "utt2spk").read_text().splitlines())
        assert len(kept[split]) + len(skipped) == n_utts
        packed = exp / "dataset" / "tts_spkemb" / split
        for d in shards:  # stage 12 ships the features with the tokens
            shipped = np.load(packed / d.relative_to(out) / "item1.feat.npy")
            assert np.array_equal(np.load(d / "item1.feat.npy"), shipped)
    # a tokenizer the task does not use is neither applied nor listed in its data.json
    spkid = json.loads((recipe / "dump" / "tts_spkid" / "test" / "data.json").read_text())
    assert "spk_embedding" not in spkid["tokenizers"]
    config = json.loads((exp / "train" / "model" / "config.json").read_text())
    # the speaker embedding (tts_spkemb) and the Whisper tiny.en encoder's frames (asr's `speech`)
    assert config["model"]["continuous"] == {"spk_embedding": 40, "speech": 384}
    for folder in (exp / "train" / "model", exp / "packed"):  # the embedder's settings travel with the model
        record = yaml.safe_load((folder / "tokenizers.yaml").read_text())
        assert record["spk_embedding"] == {"type": "spk_embedding", "conf": {"embedder": "mfcc_stats"}}
        # every tokenizer the tasks use, with the type conf/tokenizers_tiny.yaml gives it
        assert (record["text"]["type"], record["phn"]["type"], record["speech"]["type"]) == \
            ("sentencepiece", "g2p_espeak", "whisper_features")
        assert "units" not in record  # defined in the config, used by no task of the run
    dec = exp / "decode" / "tts_spkemb_test"
    wavs = dict(l.split() for l in (dec / "wav.scp").read_text().splitlines())
    assert sorted(wavs) == sorted(kept["test"]) and all(Path(w).is_file() for w in wavs.values())
    assert yaml.safe_load((dec / "inference.yaml").read_text())["search"]["method"] == "top_k"  # decode.yaml entry
    summary = json.loads((dec / "score" / "summary.json").read_text())
    assert set(summary["metrics"]) == {"tts_wer", "spk_sim", "mcd"}  # conf/score/tts_spkemb.yaml, not tts.yaml
    assert summary["n_scored"] == len(kept["test"]) and -1.0 <= summary["scores"]["spk_sim"] <= 1.0


def test_rerun_skips_finished_stages(recipe):
    result = run_stages(recipe, "--stop_stage", "10")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "skip stage 8: training (done" in result.stderr
    assert "stage 5: tokenization" not in result.stderr.replace("skip stage 5: tokenization", "")
    # nothing was decoded again, so nothing is scored again (it took minutes on the mini recipe)
    for task in TASKS:
        assert f"skip stage 10: scoring {task}/test (done" in result.stderr
    assert "stage 10: scoring" not in result.stderr.replace("skip stage 10: scoring", "")


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
    assert len((tmp_path / "dec" / "token").read_text().splitlines()) == NUM_TEST


def test_changed_sample_rate_redoes_formatting_and_tokenization(recipe):
    """Stage 1 and 2 markers used to record no inputs (a new --fs was ignored) and stage 5 did
    not look at the audio it reads. Restoring --fs gives the same audio, tokens and vocabulary,
    so the trained model stays valid for the tests after this one."""
    vocab = recipe / "dump" / "vocab" / "vocab.json"
    before = vocab.read_text()
    low = run_stages(recipe, "--fs", "8000", "--stage", "1", "--stop_stage", "2")
    assert low.returncode == 0, low.stderr[-3000:]
    assert "skip stage 1: data preparation (done" in low.stderr
    assert "redo stage 2: format train: its inputs changed" in low.stderr
    assert "fs: 8000" in (recipe / "dump" / "audio" / "train" / "format_audio.yaml").read_text()
    # the 16 kHz tokenizers then refuse the 8 kHz audio, but the point here is that stage 5 saw it change
    tok = run_stages(recipe, "--stage", "5", "--stop_stage", "5")
    assert "redo stage 5: tokenize asr/train: its inputs changed" in tok.stderr
    back = run_stages(recipe, "--stage", "2", "--stop_stage", "8")
    assert back.returncode == 0, back.stderr[-3000:]
    assert "redo stage 2: format train" in back.stderr and "stage 5: tokenization asr train" in back.stderr
    assert vocab.read_text() == before
    assert "skip stage 8: training (done" in back.stderr


def test_changed_task_list_redoes_what_depends_on_it(recipe):
    """Markers hold their inputs: dropping a task redoes the vocabulary and statistics but
    re-tokenizes nothing; stage 6 extends an existing vocabulary (ids stay stable), so
    restoring the task list gives the same vocabulary, the trained model is still valid and
    stage 8 stays done. (Last in this file: it ends where it started.)"""
    vocab = recipe / "dump" / "vocab" / "vocab.json"
    before = vocab.read_text()
    fewer = run_stages(recipe, "--stage", "3", "--stop_stage", "7", "--tasks", "asr tts_spkid textlm")
    assert fewer.returncode == 0, fewer.stderr[-3000:]
    assert "redo stage 3: tokenizer training" in fewer.stderr and "redo stage 6: joint vocabulary" in fewer.stderr
    assert vocab.read_text() == before  # extended by nothing: every id kept
    assert "stage 5: tokenization" not in fewer.stderr.replace("skip stage 5: tokenization", "")
    back = run_stages(recipe, "--stage", "6", "--stop_stage", "8")
    assert back.returncode == 0, back.stderr[-3000:]
    assert "redo stage 6: joint vocabulary" in back.stderr and vocab.read_text() == before
    assert "skip stage 8: training (done" in back.stderr
