"""Inference entry point on a tiny random model: every test id gets an output line."""

import shutil

import pytest

from espnet2.bin import speechlm_inference, speechlm_prepare
from espnet2.speechlm.models import build_speechlm, save_pretrained
from espnet2.speechlm.vocab import JointVocabulary


@pytest.fixture
def prepared(tiny_data_dir, tokenizer_config, tmp_path):
    tok_dir = tmp_path / "tokenizers"
    speechlm_prepare.main(["train_tokenizers", "--data_dir", str(tiny_data_dir), "--tasks", "asr", "audiolm",
                           "textlm", "--tokenizer_config", str(tokenizer_config), "--tokenizer_dir", str(tok_dir)])
    jsons = {}
    for task in ("asr", "audiolm", "textlm"):
        out = tmp_path / "dump" / task
        speechlm_prepare.main(["tokenize", "--task", task, "--data_dir", str(tiny_data_dir), "--tokenizer_config",
                               str(tokenizer_config), "--tokenizer_dir", str(tok_dir), "--out_dir", str(out)])
        jsons[task] = out / "data.json"
    speechlm_prepare.main(["vocab", "--data_json", *map(str, jsons.values()), "--out_dir", str(tmp_path / "vocab")])
    vocab = JointVocabulary.load(tmp_path / "vocab")
    model = build_speechlm("delay", "builtin", dict(d_model=32, n_layer=1, n_head=2, n_kv_head=1, d_ff=64,
                                                    max_len=512), vocab.size, vocab.max_streams)
    model_dir = save_pretrained(model, tmp_path / "model")
    shutil.copy(tmp_path / "vocab" / "vocab.json", model_dir / "vocab.json")
    return model_dir, jsons, tmp_path


def ids_of(path):
    return [l.split()[0] for l in path.read_text().splitlines()]


def test_asr_writes_text_for_every_id(prepared, tiny_data_dir):
    model_dir, jsons, tmp = prepared
    conf = tmp / "decode.yaml"
    conf.write_text("asr: {method: greedy, max_new_tokens: 5}\n")
    speechlm_inference.main(["--model_dir", str(model_dir), "--data_json", str(jsons["asr"]), "--inference_config",
                             str(conf), "--out_dir", str(tmp / "dec"), "--batch_size", "3"])
    expected = ids_of(tiny_data_dir / "text")
    written = ids_of(tmp / "dec" / "text") + (ids_of(tmp / "dec" / "failed") if (tmp / "dec" / "failed").exists() else [])
    assert sorted(set(written)) == expected


def test_audiolm_writes_wavs_and_logprob(prepared, tiny_data_dir):
    model_dir, jsons, tmp = prepared
    conf = tmp / "decode.yaml"
    conf.write_text("audiolm: {method: top_k, top_k: 5, max_new_tokens: 6, min_len_ratio: 0.0, logprob: true}\n")
    speechlm_inference.main(["--model_dir", str(model_dir), "--data_json", str(jsons["audiolm"]),
                             "--inference_config", str(conf), "--out_dir", str(tmp / "dec_a")])
    rows = [l.split() for l in (tmp / "dec_a" / "logprob").read_text().splitlines()]
    assert sorted(r[0] for r in rows) == ids_of(tiny_data_dir / "text")
    assert all(float(r[1]) < 0 and int(r[2]) > 0 for r in rows)
    tokens = [l.split() for l in (tmp / "dec_a" / "token").read_text().splitlines()]
    assert len(tokens) == 8 and all(all(0 <= int(t) < 16 for t in r[1:]) for r in tokens)


def test_textlm_logprob_counts_text_tokens_and_eos(prepared, tiny_data_dir):
    model_dir, jsons, tmp = prepared
    conf = tmp / "decode.yaml"
    conf.write_text("textlm: {logprob: true, generate: false}\n")
    speechlm_inference.main(["--model_dir", str(model_dir), "--data_json", str(jsons["textlm"]),
                             "--inference_config", str(conf), "--out_dir", str(tmp / "dec_t")])
    text = dict(l.split(maxsplit=1) for l in (tiny_data_dir / "text").read_text().splitlines())
    for utt, lp, n in (l.split() for l in (tmp / "dec_t" / "logprob").read_text().splitlines()):
        assert int(n) == len(text[utt]) + 1  # characters + eos, indicator excluded
    assert not (tmp / "dec_t" / "text").exists()


def test_unknown_setting_is_refused(tmp_path):
    conf = tmp_path / "d.yaml"
    conf.write_text("asr: {beam: 3}\n")
    with pytest.raises(ValueError, match="unknown settings"):
        speechlm_inference.task_settings(str(conf), "asr", {})
