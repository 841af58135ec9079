"""Resynthesis topline: references through a tiny trained mel_rvq codec (encode, decode),
cached by fingerprint, scored with the task's config into a RESULTS.md row next to the model's."""

import json

import numpy as np
import pytest
import soundfile as sf

from espnet2.bin import speechlm_score
from espnet2.speechlm.evaluation import resynth
from espnet2.speechlm.evaluation.asr_backends import RECOGNIZERS, Recognizer
from espnet2.speechlm.evaluation.scorer import score_dirs
from espnet2.speechlm.tokenizers import train_tokenizer

from speechlm_eval_audio import synth_voice

SR, HOP = 16000, 320
CODEC = {"n_streams": 2, "codebook_size": 8, "hop_length": HOP, "griffin_lim_iters": 2}
DURS = {"a1": 0.61, "a2": 1.0, "a3": 0.83}


class FixedText(Recognizer):
    """Hears 'hello world' whatever it is given (a stand-in that needs no model)."""

    description = "fixed text"

    def __call__(self, audio) -> str:
        return "hello world"


CONFIG = [
    {"name": "tts_wer", "recognizer": "fixed_text_test"},
    {"name": "si_snr", "hyp": "wav.scp", "ref": "wav.scp", "use_versa": False},
]


@pytest.fixture
def recipe(tmp_path, monkeypatch):
    """dump/audio/test (3 references), dump/tokenizers/codec (trained), dump/tts/test/data.json."""
    monkeypatch.setitem(RECOGNIZERS._entries, "fixed_text_test", FixedText)
    dump = tmp_path / "dump"
    ref = dump / "audio" / "test"
    (ref / "wav").mkdir(parents=True)
    wavs = {u: synth_voice(SR, d, f0=100 + 40 * i, seed=i) for i, (u, d) in enumerate(DURS.items())}
    for u, w in wavs.items():
        sf.write(ref / "wav" / f"{u}.wav", w, SR)
    (ref / "wav.scp").write_text("".join(f"{u} {ref / 'wav' / (u + '.wav')}\n" for u in wavs))
    (ref / "text").write_text("a1 hello world\na2 hello there\na3 good bye\n")
    train_tokenizer("mel_rvq", list(wavs.values()), dump / "tokenizers" / "codec", kmeans_iters=5, **CODEC)
    meta = {
        "format": "espnet-speechlm-data/1", "task": "tts",
        "template": {"task": "tts", "conditions": [{"name": "text", "tokenizer": "text", "reader": "text"}],
                     "targets": [{"name": "wav.scp", "tokenizer": "codec", "reader": "audio"}]},
        "data_dir": str(ref),
        "tokenizers": {
            "codec": {"type": "mel_rvq", "conf": CODEC, "dir": str(dump / "tokenizers" / "codec"), "sample_rate": SR},
            "text": {"type": "char", "conf": {}, "dir": None, "sample_rate": None},
        },
        "shards": [], "num_examples": 3,
    }
    (dump / "tts" / "test").mkdir(parents=True)
    (dump / "tts" / "test" / "data.json").write_text(json.dumps(meta))
    return dump


def test_round_trip_has_the_reference_lengths_and_is_cached(recipe, monkeypatch):
    data_json, cache = recipe / "tts" / "test" / "data.json", recipe / "resynth"
    out = resynth.resynthesize(data_json, cache, progress=False)
    assert out.parent == cache and out.name.startswith("codec_")
    scp = dict(l.split() for l in (out / "wav.scp").read_text().splitlines())
    assert list(scp) == list(DURS)
    for u, d in DURS.items():
        wav, sr = sf.read(scp[u])
        assert sr == SR and abs(len(wav) - round(d * SR)) < HOP  # mel_rvq decodes whole hops
        assert np.abs(wav).max() > 0.01
    assert json.loads((out / "resynth.json").read_text())["n_failed"] == 0

    # a re-run reuses it: nothing is encoded again
    def boom(*a, **k):
        raise AssertionError("resynthesized again")

    monkeypatch.setattr("espnet2.speechlm.tokenizers.mel_rvq.MelRVQTokenizer.detokenize", boom)
    assert resynth.resynthesize(data_json, cache, progress=False) == out
    monkeypatch.undo()

    # another reference (or tokenizer) is another fingerprint
    ref = recipe / "audio" / "test"
    sf.write(ref / "wav" / "a2.wav", synth_voice(SR, 1.0, f0=300, seed=9), SR)
    other = resynth.resynthesize(data_json, cache, progress=False)
    assert other != out and out.is_dir()


def test_topline_row_comes_right_after_the_model_row(recipe, monkeypatch, tmp_path):
    data_json, ref = recipe / "tts" / "test" / "data.json", recipe / "audio" / "test"
    md = tmp_path / "exp" / "RESULTS.md"
    # the model's outputs: the references themselves, scored as the recipe does
    score_dirs(CONFIG, ref, ref, tmp_path / "model_score", task="tts", test_set="test", results_md=md, progress=False)
    summary = resynth.score_topline(CONFIG, data_json, ref, recipe / "resynth", task="tts", results_md=md, progress=False)
    assert summary["task"] == "tts (resynthesis topline)" and summary["n_scored"] == 3
    assert summary["scores"]["tts_wer"] == pytest.approx(3 / 6)  # "hello world" against the three texts
    assert summary["scores"]["si_snr"] < 60  # not the references themselves
    score_dirs(CONFIG, ref, ref, tmp_path / "s2", task="asr", test_set="test", results_md=md, progress=False)
    rows = [l.split("|")[1].strip() for l in md.read_text().splitlines() if l.startswith("| ") and "task" not in l]
    assert rows == ["asr", "tts", "tts (resynthesis topline)"]
    assert "- tts_wer: recognizer fixed text; text normalizer basic (lowercase, no punctuation) " \
           "[asr/test, tts/test, tts (resynthesis topline)/test]" in md.read_text()

    # the scores are cached too: a re-run scores nothing and writes the same row
    before = md.read_text()
    md.unlink()

    def boom(*a, **k):
        raise AssertionError("scored again")

    monkeypatch.setattr("espnet2.speechlm.evaluation.scorer.score_dirs", boom)
    again = resynth.score_topline(CONFIG, data_json, ref, recipe / "resynth", task="tts", results_md=md, progress=False)
    assert again["scores"] == summary["scores"]
    assert "| tts (resynthesis topline) | test | 3 |" in md.read_text()
    assert md.read_text().count("|") < before.count("|")  # only that row now


def test_no_topline_without_tts_wer_or_audio_target(recipe, tmp_path):
    data_json, ref = recipe / "tts" / "test" / "data.json", recipe / "audio" / "test"
    assert resynth.score_topline([{"name": "si_snr", "use_versa": False}], data_json, ref, tmp_path / "c", task="tts") is None
    meta = json.loads(data_json.read_text())
    meta["template"]["targets"] = [{"name": "text", "tokenizer": "text", "reader": "text"}]
    asr = tmp_path / "asr.json"
    asr.write_text(json.dumps(meta))
    assert resynth.audio_target(asr) is None
    assert resynth.score_topline(CONFIG, asr, ref, tmp_path / "c", task="asr") is None
    assert not (tmp_path / "c").exists()
    with pytest.raises(ValueError, match="not audio"):
        resynth.resynthesize(asr, tmp_path / "c")


def test_cli(recipe, tmp_path, capsys):
    import yaml

    for sub in ("resynth", "topline"):
        with pytest.raises(SystemExit) as e:
            speechlm_score.main([sub, "--help"])
        assert e.value.code == 0
    assert "--cache_dir" in capsys.readouterr().out
    data_json = recipe / "tts" / "test" / "data.json"
    assert speechlm_score.main(["resynth", "--data_json", str(data_json), "--cache_dir", str(tmp_path / "c"),
                                "--tokenizer_dir", str(recipe / "tokenizers"), "--no_progress"]) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith(str(tmp_path / "c" / "codec_")) and (tmp_path / "c" / out.rsplit("/", 1)[1] / "wav.scp").is_file()
    conf = tmp_path / "score.yaml"
    conf.write_text(yaml.safe_dump([{"name": "si_snr", "use_versa": False}, {"name": "tts_wer", "recognizer": "pocketsphinx"}]))
    with pytest.raises(FileNotFoundError, match="no trained tokenizer 'codec'"):
        speechlm_score.main(["topline", "--data_json", str(data_json), "--cache_dir", str(tmp_path / "c"),
                             "--score_config", str(conf), "--task", "tts", "--tokenizer_dir", str(tmp_path), "--verbose"])
