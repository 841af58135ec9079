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
    with pytest.raises(ValueError, match=r"d\.yaml: unknown config key\(s\) asr\.beam; known at this level: "
                                         r".*beam_size"):
        speechlm_inference.task_settings(str(conf), "asr", {})


@pytest.mark.parametrize("text, message", [
    ("asr: {method: greedy}\nkwss: {method: beam}\n", r"unknown config key\(s\) kwss; known at this level: .*asr"),
    ("asr: {method: greedy}\ntts_spkid: {top_kk: 30}\n", r"unknown config key\(s\) tts_spkid\.top_kk"),
    ("asr:\n", r"asr: expected a mapping of settings"),
])
def test_misspelt_task_or_other_task_setting_is_refused(tmp_path, text, message):
    """Every entry is checked while decoding asr: a typo elsewhere is not silently ignored."""
    conf = tmp_path / "d.yaml"
    conf.write_text(text)
    with pytest.raises(ValueError, match=message):
        speechlm_inference.task_settings(str(conf), "asr", {})


def test_tasks_of_the_model_and_builtin_tasks_are_known(tmp_path):
    conf = tmp_path / "d.yaml"
    conf.write_text("default: {max_new_tokens: 7}\nkws: {method: beam}\ntts_spkid: {top_k: 3}\n")
    search, generate, logprob = speechlm_inference.task_settings(str(conf), "asr", {}, known_tasks=["kws"])
    assert (search.method, search.max_new_tokens, generate, logprob) == ("greedy", 7, True, False)
    assert speechlm_inference.task_settings(str(conf), "kws", {})[0].method == "beam"


class _Chars:
    """A character tokenizer over ids 0..9 (a..j) that refuses the ids in `refuse`."""

    sample_rate = None

    def __init__(self, refuse=()):
        self.refuse = set(refuse)

    def detokenize(self, tokens):
        if int(tokens[0, 0]) in self.refuse:
            raise ValueError(f"id {int(tokens[0, 0])} has no entry in this codebook")
        return "".join(chr(97 + int(t)) for t in tokens[:, 0])


def _write_all(tmp_path, hyps, tokenizer):
    """hyps: {id: local ids of a one-stream text hypothesis} -> the decode folder after writing them."""
    import numpy as np

    from espnet2.speechlm.inference.outputs import OutputWriter

    vocab = JointVocabulary()
    vocab.add_tokenizer("text", "char", 10, 1)
    lo = vocab.range("text").stream_range(0)[0]
    out = OutputWriter(tmp_path)
    for example_id, ids in hyps.items():
        speechlm_inference.write_hypothesis(out, example_id, 0, lo + np.array(ids)[:, None], vocab, "text", tokenizer)
    out.close()
    return tmp_path


def test_out_of_range_hypothesis_is_listed_as_failed(tmp_path):
    """The hypothesis is not written clipped or cut: its id goes to `failed` with the reason."""
    d = _write_all(tmp_path, {"ok": [0, 1], "bad": [0, 10]}, _Chars())
    assert (d / "text").read_text() == "ok ab\n"
    assert (d / "token").read_text() == "ok 0 1\n"
    failed = (d / "failed").read_text()
    assert failed.startswith("bad out-of-range token (frame 1 stream 0: id ") and "'text'" in failed


def test_detokenize_failure_is_listed_and_the_set_goes_on(tmp_path):
    """A tokenizer refusing one hypothesis (a codec id it cannot decode) used to abort the set."""
    d = _write_all(tmp_path, {"u0": [0, 1], "u1": [3, 1], "u2": [1, 1]}, _Chars(refuse=[3]))
    assert (d / "text").read_text() == "u0 ab\nu2 bb\n"
    assert (d / "failed").read_text() == "u1 detokenize failed (id 3 has no entry in this codebook)\n"
