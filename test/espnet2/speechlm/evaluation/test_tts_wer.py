import pytest

from espnet2.speechlm.evaluation import build_metric

from speechlm_eval_audio import HAVE_FLITE, SENTENCE, flite_wav


def test_pocketsphinx_recognises_flite_sentence(tmp_path):
    if not HAVE_FLITE:
        pytest.skip("flite is not installed (apt-get install flite) so no test speech can be made")
    pytest.importorskip("pocketsphinx")
    from espnet2.speechlm.evaluation.data_io import load_audio

    audio = load_audio(str(flite_wav(SENTENCE, tmp_path / "s.wav")))
    m = build_metric({"name": "tts_wer"})
    out = m.score(audio, SENTENCE.upper() + ".")
    assert out["tts_wer"] <= 0.5, out["asr_text"]
    assert "quick brown fox" in out["asr_text"].lower()
    assert "pocketsphinx" in m.info()["recognizer"]


def test_whisper_needs_local_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="never downloaded"):
        build_metric({"name": "tts_wer", "recognizer": "whisper", "model_dir": str(tmp_path / "missing")})
    with pytest.raises(ValueError, match="model_dir"):
        build_metric({"name": "tts_wer", "recognizer": "whisper"})
