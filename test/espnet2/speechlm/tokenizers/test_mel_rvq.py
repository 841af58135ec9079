"""mel_rvq: shapes, determinism, batching, reconstruction, persistence, input errors.

Kept light: ~3 s of synthetic audio, 4 streams x 16 centroids, few Griffin-Lim iterations.
"""

from __future__ import annotations

import numpy as np
import pytest

from espnet2.speechlm.tokenizers import build_tokenizer, train_tokenizer
from espnet2.speechlm.tokenizers.mel_rvq import MelRVQTokenizer

SR = 16000
CONF = dict(n_streams=4, codebook_size=16, hop_length=320, griffin_lim_iters=4)


def synth(seconds: float, f0: float, seed: int) -> np.ndarray:
    """A gliding harmonic tone with noise bursts: varied enough spectra for k-means."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    f = f0 * (1 + 0.5 * np.sin(2 * np.pi * 0.7 * t))  # [N] Hz
    phase = 2 * np.pi * np.cumsum(f) / SR
    wav = sum(np.sin(h * phase) / h for h in range(1, 6))
    wav = wav * (0.5 + 0.5 * np.sin(2 * np.pi * 2.3 * t) ** 2)
    wav = wav + 0.3 * rng.standard_normal(len(t)) * (np.sin(2 * np.pi * 1.1 * t) > 0.6)
    return (0.3 * wav / np.abs(wav).max()).astype(np.float32)


@pytest.fixture(scope="module")
def waves() -> list[np.ndarray]:
    return [synth(1.0, 120, 0), synth(0.73, 210, 1), synth(1.2, 160, 2)]


@pytest.fixture(scope="module")
def tok(waves, tmp_path_factory) -> MelRVQTokenizer:
    out = tmp_path_factory.mktemp("mel_rvq")
    return train_tokenizer("mel_rvq", waves, out, kmeans_iters=10, **CONF)


def test_shapes_and_range(tok, waves):
    codes = tok.tokenize(waves)
    assert len(codes) == len(waves)
    for c, w in zip(codes, waves):
        assert c.dtype == np.int64
        assert c.shape == (1 + len(w) // 320, 4)
        assert c.min() >= 0 and c.max() < 16
    assert tok.frame_rate == 50.0 and tok.sample_rate == SR
    assert tok.vocab_size == 64
    assert len(tok.token_strings()) == 16


def test_batch_equals_one_by_one_and_deterministic(tok, waves):
    batch = tok.tokenize(waves)
    for w, c in zip(waves, batch):
        np.testing.assert_array_equal(tok.tokenize([w])[0], c)
    for a, b in zip(batch, tok.tokenize(waves)):
        np.testing.assert_array_equal(a, b)
    assert tok.tokenize([]) == []


def test_more_streams_lower_mel_error(tok, waves):
    z = np.concatenate([tok.features(w) for w in waves])  # [T, n_mels]
    codes = np.concatenate(tok.tokenize(waves))  # [T, 4]
    errs = [np.mean((tok.dequantize(codes[:, :k]) - z) ** 2) for k in range(1, 5)]
    assert all(a > b for a, b in zip(errs, errs[1:])), errs
    assert errs[-1] < 0.5 * np.mean(z**2)


def test_detokenize_length_and_dtype(tok, waves):
    w = waves[1]
    out = tok.detokenize(tok.tokenize([w])[0])
    assert out.dtype == np.float32 and out.ndim == 1
    assert abs(len(out) - len(w)) < 320
    assert np.all(np.isfinite(out)) and np.abs(out).max() > 0
    coarse = tok.detokenize(tok.tokenize([w])[0][:, :2])  # a coarse prefix of streams also decodes
    assert len(coarse) == len(out)


def test_save_load_equal(tok, waves, tmp_path):
    tok.save(tmp_path)
    loaded = build_tokenizer("mel_rvq", tmp_path, **CONF)
    np.testing.assert_array_equal(loaded.codebooks, tok.codebooks)
    np.testing.assert_array_equal(loaded.mean, tok.mean)
    for a, b in zip(loaded.tokenize(waves), tok.tokenize(waves)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="codebook_size"):
        build_tokenizer("mel_rvq", tmp_path, codebook_size=32)
    with pytest.raises(FileNotFoundError, match="train the tokenizer first"):
        build_tokenizer("mel_rvq", tmp_path / "missing")


def test_training_is_deterministic(waves, tok, tmp_path):
    again = MelRVQTokenizer.train(waves, tmp_path, kmeans_iters=10, **CONF)
    np.testing.assert_array_equal(again.codebooks, tok.codebooks)


@pytest.mark.parametrize(
    "item, err, msg",
    [
        (np.zeros(0, np.float32), ValueError, "empty audio"),
        (np.zeros((2, 1600), np.float32), ValueError, "must be 1-D"),
        ([0.1, 0.2], TypeError, "numpy float waveform"),
        ("a.wav", TypeError, "numpy float waveform"),
        (np.zeros(1600, np.int16), TypeError, "float waveform"),
        (np.full(1600, np.nan, np.float32), ValueError, "NaN"),
    ],
)
def test_bad_input(tok, item, err, msg):
    with pytest.raises(err, match=msg):
        tok.tokenize([item])


def test_bad_tokens_and_bare_array(tok, waves):
    with pytest.raises(TypeError, match="list of waveforms"):
        tok.tokenize(waves[0])
    with pytest.raises(ValueError, match=r"\[0, 16\)"):
        tok.detokenize(np.full((5, 4), 16))
    with pytest.raises(ValueError, match="expected tokens"):
        tok.detokenize(np.zeros((5, 5), np.int64))


def test_unknown_option(waves, tmp_path):
    with pytest.raises(ValueError, match="unknown option"):
        MelRVQTokenizer.train(waves, tmp_path, n_codebooks=4)


def test_short_clips(tok):
    codes = tok.tokenize([np.zeros(100, np.float32), np.zeros(700, np.float32)])
    assert [c.shape[0] for c in codes] == [1, 3]
    assert tok.detokenize(codes[0]).shape == (0,)  # one frame is less than one hop of audio
    assert tok.detokenize(codes[1]).shape == (640,)
    assert tok.detokenize(np.zeros((0, 4), np.int64)).shape == (0,)
