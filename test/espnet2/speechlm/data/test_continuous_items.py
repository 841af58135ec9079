"""Continuous items end to end: prepare (tts_spkemb) -> data.json + feature shards -> dataset /
collate -> a few training steps -> loss depends on the speaker embedding -> generate / inference."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from espnet2.bin import speechlm_inference, speechlm_prepare
from espnet2.speechlm.data import prepare as prep
from espnet2.speechlm.data.dataset import Manifest, SpeechLMDataset, collate, side_inputs
from espnet2.speechlm.data.readers import ReadContext, get_reader
from espnet2.speechlm.inference import ModalityTable, SearchConfig
from espnet2.speechlm.models import build_speechlm, save_pretrained, vocab_build_args
from espnet2.speechlm.tasks.template import load_template
from espnet2.speechlm.vocab import JointVocabulary

pytestmark = pytest.mark.usefixtures("one_thread")  # test/conftest.py

SR = 16000
WORDS = ["hello world", "good morning", "see you", "the cat", "a dog runs", "blue sky", "red car", "big house"]
# the mini recipe's offline tokenizers (egs2/mini_en/speechlm1/conf/tokenizers_tiny.yaml), sized for 8 sentences,
# plus the offline speaker embedding
TOKENIZERS = """\
text: {type: sentencepiece, conf: {vocab_size: 40, model_type: bpe}}
codec: {type: mel_rvq, conf: {n_streams: 2, codebook_size: 16}}
spk_embedding: {type: spk_embedding, conf: {embedder: mfcc_stats}}
"""
BODY = dict(d_model=32, n_layer=1, n_head=2, n_kv_head=2, d_ff=64, max_len=256, dropout=0.0)


def voice(f0: float, tilt: float, seconds: float, seed: int) -> np.ndarray:
    """A harmonic 'voice': speakers differ by pitch and spectral tilt, utterances by length and vibrato."""
    t = np.arange(int(seconds * SR)) / SR
    phase = 2 * np.pi * f0 * (t + 0.002 * np.sin(2 * np.pi * (3 + seed) * t))
    wav = sum(tilt ** k * np.sin(k * phase) for k in range(1, 8))
    return (0.25 * wav / np.abs(wav).max()).astype(np.float32)


def run(*args):
    speechlm_prepare.main([str(a) for a in args])


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """8 utterances of 2 speakers -> tokenizers, tts_spkemb + asr manifests, joint vocabulary."""
    root = tmp_path_factory.mktemp("continuous")
    d = root / "data"
    (d / "wav").mkdir(parents=True)
    rows = {"wav.scp": [], "text": [], "utt2spk": []}
    for i, sentence in enumerate(WORDS):
        spk = f"spk{i % 2}"
        utt = f"{spk}_utt{i:02d}"
        f0, tilt = (110.0, 0.8) if spk == "spk0" else (230.0, 0.3)
        sf.write(d / "wav" / f"{utt}.wav", voice(f0, tilt, 0.25 + 0.03 * i, i), SR)
        rows["wav.scp"].append(f"{utt} {d / 'wav' / (utt + '.wav')}")
        rows["text"].append(f"{utt} {sentence}")
        rows["utt2spk"].append(f"{utt} {spk}")
    for name, lines in rows.items():
        (d / name).write_text("\n".join(sorted(lines)) + "\n")
    conf = root / "tokenizers.yaml"
    conf.write_text(TOKENIZERS)
    run("train_tokenizers", "--data_dir", d, "--tasks", "tts_spkemb", "asr", "--tokenizer_config", conf,
        "--tokenizer_dir", root / "tok")
    for task in ("tts_spkemb", "asr"):
        run("tokenize", "--task", task, "--data_dir", d, "--tokenizer_config", conf, "--tokenizer_dir", root / "tok",
            "--out_dir", root / "dump" / task, "--shard_size", 3)
    run("vocab", "--data_json", root / "dump/tts_spkemb/data.json", root / "dump/asr/data.json",
        "--out_dir", root / "vocab")
    return root


# --- preparation ------------------------------------------------------------------------------
def test_prepare_writes_features_beside_the_tokens(prepared):
    out = prepared / "dump" / "tts_spkemb"
    meta = json.loads((out / "data.json").read_text())
    assert meta["num_examples"] == 8 and meta["num_skipped"] == 0 and len(meta["shards"]) == 3
    assert meta["tokenizers"]["spk_embedding"]["embed_dim"] == 40
    assert meta["tokenizers"]["spk_embedding"]["codebook_size"] == 1
    assert all("embed_dim" not in meta["tokenizers"][n] for n in ("text", "codec"))
    asr = json.loads((prepared / "dump/asr/data.json").read_text())
    assert all("embed_dim" not in info for info in asr["tokenizers"].values())
    assert not list((prepared / "dump/asr").rglob("*.feat.npy"))  # discrete items: unchanged layout

    tok = prep.load_tokenizer(prep.TokenizerSpec("spk_embedding", "spk_embedding", {}), prepared / "tok")
    ctx = ReadContext(prepared / "data", sample_rate=SR)
    utt2spk = dict(l.split() for l in (prepared / "data/utt2spk").read_text().splitlines())
    own = dict(l.split() for l in (prepared / "data/wav.scp").read_text().splitlines())
    for s in meta["shards"]:
        shard = out / s["path"]
        ids = (shard / "ids.txt").read_text().split()
        assert sorted(p.name for p in shard.glob("*.feat.npy")) == ["item1.feat.npy"]  # the condition item only
        feats = np.load(shard / "item1.feat.npy")
        assert feats.dtype == np.float32 and feats.shape == (len(ids), 40)
        assert (np.load(shard / "item1.len.npy") == 1).all() and (np.load(shard / "item1.npy") == 0).all()
        for i, row in zip(ids, feats):
            prompt = get_reader("spk_prompt")(i, utt2spk[i], ctx)  # another utterance of the same speaker
            np.testing.assert_allclose(row, tok.features([prompt])[0][0], rtol=1e-5, atol=1e-6)
            mine = tok.features([get_reader("audio")(i, own[i], ctx)])[0][0]
            assert not np.allclose(row, mine)  # not the target's own audio


def test_continuous_target_is_refused_at_load_time(prepared, tmp_path):
    bad = tmp_path / "spk_from_text.yaml"
    bad.write_text("task: spk_from_text\nconditions:\n  - {name: text, tokenizer: text}\n"
                   "targets:\n  - {name: utt2spk, tokenizer: spk_embedding, reader: spk_prompt}\n")
    specs = prep.load_tokenizer_config(prepared / "tokenizers.yaml")
    template = load_template(str(bad))
    msg = r"template 'spk_from_text': target item 'utt2spk' uses the continuous tokenizer 'spk_embedding'"
    with pytest.raises(ValueError, match=msg):
        prep.plan(prep.PrepareJob(prepared / "data", template, specs, prepared / "tok", tmp_path / "o"))
    with pytest.raises(ValueError, match=msg):
        prep.train_tokenizers(prepared / "data", [template], specs, tmp_path / "tok")
    # a manifest edited by hand into the same shape is refused when opened
    out = tmp_path / "dump"
    shutil.copytree(prepared / "dump/tts_spkemb", out)
    meta = json.loads((out / "data.json").read_text())
    meta["template"]["targets"].append(meta["template"]["conditions"].pop(1))
    (out / "data.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"target item 'utt2spk' uses the continuous tokenizer"):
        Manifest(out / "data.json")


def test_missing_feature_file_is_clear(prepared, tmp_path):
    out = tmp_path / "dump"
    shutil.copytree(prepared / "dump/tts_spkemb", out)
    (out / "shards/shard_00001/item1.feat.npy").unlink()
    with pytest.raises(FileNotFoundError, match=r"shard_00001/item1.feat.npy missing.*re-run preparation"):
        Manifest(out / "data.json")


# --- dataset and batches -------------------------------------------------------------------------
def test_examples_and_batches_carry_side_features(prepared):
    vocab = JointVocabulary.load(prepared / "vocab")
    ds = SpeechLMDataset([prepared / "dump/tts_spkemb/data.json", prepared / "dump/asr/data.json"], vocab)
    P, ind = vocab.range("spk_embedding").offset, vocab.indicator("spk_embedding")
    tts = [i for i in range(len(ds)) if ds.tasks[ds.sources[i]] == "tts_spkemb"]
    asr = [i for i in range(len(ds)) if ds.tasks[ds.sources[i]] == "asr"]
    ex = ds[tts[0]]
    t = int(ex["feat_pos"]["spk_embedding"][0])
    assert ex["feats"]["spk_embedding"].shape == (1, 40) and ex["seq"][t - 1, 0] == ind and ex["seq"][t, 0] == P
    assert (ex["weight"][t] == 0).all()  # a condition: no loss on the placeholder
    assert set(ds[asr[0]]) == {"id", "task", "seq", "weight"}  # discrete-only examples are unchanged
    assert set(collate([ds[i] for i in asr[:3]])) == {"seqs", "weights", "lengths", "ids", "tasks"}
    pre = ds.prefix(tts[0])
    np.testing.assert_array_equal(pre["feats"]["spk_embedding"], ex["feats"]["spk_embedding"])

    order = [asr[0], tts[1], asr[1], tts[2], tts[3]]
    batch = collate([ds[i] for i in order])
    feats, pos = batch["feats"]["spk_embedding"], batch["feat_pos"]["spk_embedding"]
    assert feats.dtype == torch.float32 and feats.shape == (3, 40) and pos.tolist()[0][0] == 1
    assert pos[:, 0].tolist() == [1, 3, 4]
    assert (batch["seqs"][pos[:, 0], pos[:, 1], 0] == P).all()
    assert int((batch["seqs"][..., 0] == P).sum()) == 3
    for m, i in enumerate([tts[1], tts[2], tts[3]]):
        np.testing.assert_array_equal(feats[m].numpy(), ds[i]["feats"]["spk_embedding"][0])
    sub = side_inputs(batch, [4, 0, 1])  # a sub-batch keeps its examples' features, in its order
    torch.testing.assert_close(sub["feats"]["spk_embedding"], feats[[2, 0]])
    assert side_inputs(collate([ds[i] for i in asr[:2]])) == {}


# --- training and generation ------------------------------------------------------------------
def tts_batch(ds):
    return collate([ds[i] for i in range(len(ds))])


def test_train_steps_loss_follows_the_speaker_embedding_and_generate(prepared, tmp_path):
    torch.manual_seed(0)
    vocab = JointVocabulary.load(prepared / "vocab")
    data_json = prepared / "dump/tts_spkemb/data.json"
    embed_dim = Manifest(data_json).embed_dims["spk_embedding"]
    model = build_speechlm("delay", "builtin", BODY, vocab.size, vocab.max_streams,
                           continuous={"spk_embedding": embed_dim}, **vocab_build_args(vocab))
    ds = SpeechLMDataset([data_json], vocab)
    batch = tts_batch(ds)
    args = (batch["seqs"], batch["weights"], batch["lengths"])
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        loss, _, _ = model(*args, **side_inputs(batch))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0]
    assert float(model.continuous_proj["spk_embedding"].weight.grad.abs().sum()) > 0

    model.eval()
    feats = batch["feats"]["spk_embedding"]
    with torch.no_grad():
        right = float(model(*args, feats=batch["feats"])[0])
        swapped = float(model(*args, feats={"spk_embedding": feats.flip(0)})[0])  # other speakers' embeddings
        zero = float(model(*args, feats={"spk_embedding": torch.zeros_like(feats)})[0])
    assert right != swapped and right != zero

    # generate from the prompts (text + speaker embedding + <codec_start>)
    from espnet2.bin.speechlm_inference import pad_prefixes, prompt_features

    examples = [ds.prefix(i) for i in range(4)]
    prefix, lengths = pad_prefixes([e["prefix"] for e in examples])
    table = ModalityTable.from_vocab(vocab, model.vocab_size, model.n_streams).final_target(vocab, "codec")
    hyps = model.generate(prefix, lengths, SearchConfig(method="greedy", max_len_ratio=1.0), table,
                          feats=prompt_features(examples, "cpu"))
    lo, hi = vocab.range("codec").stream_range(0)
    assert len(hyps) == 4
    for nbest in hyps:
        first = nbest[0][:, 0]
        assert first.numel() >= 1 and ((first >= lo) & (first < hi)).all()  # codec frames only

    # the inference CLI on the saved model: generation and teacher-forced log-probs use the features
    model_dir = tmp_path / "model"
    save_pretrained(model, model_dir)
    shutil.copy(prepared / "vocab/vocab.json", model_dir / "vocab.json")
    (tmp_path / "decode.yaml").write_text("tts_spkemb: {method: greedy, max_len_ratio: 1.0, logprob: true}\n")
    speechlm_inference.main(["--model_dir", str(model_dir), "--data_json", str(data_json), "--inference_config",
                             str(tmp_path / "decode.yaml"), "--out_dir", str(tmp_path / "dec"), "--device", "cpu",
                             "--batch_size", "3"])
    ids = sorted(ds.example_id(i) for i in range(len(ds)))
    assert sorted(l.split()[0] for l in (tmp_path / "dec/token").read_text().splitlines()) == ids
    assert sorted(l.split()[0] for l in (tmp_path / "dec/wav.scp").read_text().splitlines()) == ids
    logprob = dict(l.split(maxsplit=1) for l in (tmp_path / "dec/logprob").read_text().splitlines())
    ex = ds[0]
    with torch.no_grad():
        seq, w = torch.from_numpy(ex["seq"])[None], torch.from_numpy(ex["weight"])[None]
        w[..., 0][torch.isin(seq[..., 0], torch.tensor(sorted(vocab.indicators.values())))] = 0.0
        w = (w > 0).float()
        f = {"spk_embedding": torch.from_numpy(ex["feats"]["spk_embedding"])}
        loss, _, n = model(seq, w, torch.tensor([seq.shape[1]]), feats=f)
    lp, count = logprob[ex["id"]].split()
    assert int(count) == int(n) and abs(float(lp) + float(loss) * float(n)) < 1e-3


def test_training_cli_passes_side_features(prepared, tmp_path):
    """speechlm_train (DeepSpeed, one CPU process) on tts_spkemb + asr: the trainer moves the side
    features to the device and into the model, also for per-task validation sub-batches."""
    import subprocess
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
    from train_testkit import REPO, subprocess_env, train_log

    (tmp_path / "train.yaml").write_text("""
model:
  arch: delay
  body: builtin
  body_conf: {d_model: 32, n_layer: 1, n_head: 2, n_kv_head: 2, d_ff: 64, max_len: 256}
  # no arch_conf.continuous: the feature size comes from data.json's embed_dim
optim: {lr: 1.0e-3}
data: {batch_tokens: 2000}
run: {max_steps: 2, log_interval: 1, valid_interval: 2, save_interval: 2, plot_images: false, tensorboard: false}
""")
    tts, asr = prepared / "dump/tts_spkemb/data.json", prepared / "dump/asr/data.json"
    out = tmp_path / "exp"
    cmd = [sys.executable, "-m", "espnet2.bin.speechlm_train", "--train_config", tmp_path / "train.yaml",
           "--vocab", prepared / "vocab", "--output_dir", out, "--train_data_json", tts, asr,
           "--valid_data_json", tts, asr]
    proc = subprocess.run([str(c) for c in cmd], cwd=REPO, env=subprocess_env(), capture_output=True, text=True,
                          timeout=400)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert [r["step"] for r in train_log(out)] == [1, 2]
    valid = train_log(out, "valid")[-1]
    assert {"tts_spkemb/loss", "asr/loss"} <= set(valid)  # mixed batches split per task, features kept
    from espnet2.speechlm.models import load_pretrained

    model = load_pretrained(out / "model")
    assert model.continuous_proj["spk_embedding"].in_features == 40
