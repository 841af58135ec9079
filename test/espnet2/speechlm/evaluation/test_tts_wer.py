import pytest

from espnet2.speechlm.evaluation import build_metric

from speechlm_eval_audio import HAVE_FLITE, SENTENCE, flite_wav


def test_pocketsphinx_recognises_flite_sentence(tmp_path):
    if not HAVE_FLITE:
        pytest.skip("flite is not installed (apt-get install flite) so no test speech can be made")
    pytest.importorskip("pocketsphinx")
    from espnet2.speechlm.evaluation.data_io import load_audio

    audio = load_audio(str(flite_wav(SENTENCE, tmp_path / "s.wav")))
    m = build_metric({"name": "tts_wer", "recognizer": "pocketsphinx"})
    out = m.score(audio, SENTENCE.upper() + ".")
    assert out["tts_wer"] <= 0.5, out["asr_text"]
    assert "quick brown fox" in out["asr_text"].lower()
    assert "pocketsphinx" in m.info()["recognizer"]


def test_whisper_needs_local_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="never downloaded"):
        build_metric({"name": "tts_wer", "recognizer": "whisper", "model_dir": str(tmp_path / "missing")})
    with pytest.raises(ValueError, match="model_dir"):
        build_metric({"name": "tts_wer", "recognizer": "whisper"})


def _noise(seconds: float = 2.0):
    import numpy as np

    from espnet2.speechlm.evaluation.base import Audio

    rng = np.random.default_rng(0)
    return Audio((0.3 * rng.standard_normal(int(16000 * seconds))).astype(np.float32), 16000)


def test_pocketsphinx_result_does_not_depend_on_previous_utterance(speech):
    """The decoder is reused across utterances (and split among --nj workers), so a
    hypothesis and its score must be the same as from a fresh decoder."""
    pytest.importorskip("pocketsphinx")
    from espnet2.speechlm.evaluation.asr_backends import PocketSphinx

    fresh = PocketSphinx()
    text = fresh(speech)
    first = (text, fresh.decoder.hyp().score)
    reused = PocketSphinx()
    reused(_noise())
    assert (reused(speech), reused.decoder.hyp().score) == first


def test_pocketsphinx_decoder_options(speech):
    pytest.importorskip("pocketsphinx")
    from espnet2.speechlm.evaluation.asr_backends import PocketSphinx

    m = build_metric({"name": "tts_wer", "recognizer": "pocketsphinx", "recognizer_conf": {"decoder_options": {"maxhmmpf": 10000}}})
    assert m.recognizer.decoder.config["maxhmmpf"] == 10000
    assert "maxhmmpf=10000" in m.info()["recognizer"]  # a non-default search is visible in summary.json
    with pytest.raises(ValueError, match="unknown setting.*maxhmmpff"):
        PocketSphinx(decoder_options={"maxhmmpff": 1})
    with pytest.raises(ValueError, match="samprate"):
        PocketSphinx(decoder_options={"samprate": 8000})
