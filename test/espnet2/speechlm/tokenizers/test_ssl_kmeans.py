"""ssl_kmeans: offline (mfcc/logmel) and HuggingFace (tiny random HuBERT/WavLM/wav2vec2) backends.

Shapes, determinism, save/load, batching, reservoir sampling, dedup and input errors.
Synthetic audio only (tones, chirps, noise); k-means kept tiny (16 clusters).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from espnet2.speechlm.tokenizers import build_tokenizer, train_tokenizer
from espnet2.speechlm.tokenizers.ssl_kmeans import FrameReservoir, SSLKMeansTokenizer, dedup_units

SR = 16000
KM = dict(codebook_size=16, kmeans_batch_size=256, kmeans_n_init=1, kmeans_iters=20)
# a 2-layer, 32-dim encoder with the real conv front end (hop 320 = 50 Hz)
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
            conv_dim=(8,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)


def tone(seconds: float, freq: float, seed: int = 0, noise: float = 0.02) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * freq * t) + noise * rng.standard_normal(len(t))).astype(np.float32)


def chirp(seconds: float, f0: float, f1: float, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    phase = 2 * np.pi * (f0 * t + 0.5 * (f1 - f0) / seconds * t**2)
    rng = np.random.default_rng(seed)
    return (0.3 * np.sin(phase) + 0.02 * rng.standard_normal(len(t))).astype(np.float32)


@pytest.fixture(scope="module")
def waves() -> list[np.ndarray]:
    # different lengths, including one shorter than an STFT window
    return [chirp(1.0, 100, 3000, 0), tone(0.47, 440, 1), chirp(0.81, 2000, 300, 2), tone(0.02, 900, 3)]


@pytest.fixture(scope="module", params=["mfcc", "logmel"])
def offline(request, waves, tmp_path_factory):
    out = tmp_path_factory.mktemp(request.param)
    conf = dict(features=request.param, **KM)
    return train_tokenizer("ssl_kmeans", waves, out, **conf), out, conf


def test_offline_shapes_and_range(offline, waves):
    tok, _, _ = offline
    units = tok.tokenize(waves)
    assert len(units) == len(waves)
    for u, w in zip(units, waves):
        assert u.dtype == np.int64 and u.shape == (1 + len(w) // 320, 1)  # centered frames, 50 Hz
        assert u.min() >= 0 and u.max() < 16
    assert (tok.frame_rate, tok.sample_rate, tok.n_streams, tok.vocab_size) == (50.0, SR, 1, 16)
    assert tok.token_strings()[:2] == ["u0", "u1"]
    dims = {"mfcc": 39, "logmel": 80}[tok.cfg.features]  # 13 MFCC + deltas + delta-deltas
    assert tok.centroids.shape == (16, dims)
    assert len(np.unique(np.concatenate(units))) > 4  # the clusters are actually used


def test_offline_batch_equals_one_by_one_and_deterministic(offline, waves):
    tok, _, _ = offline
    batch = tok.tokenize(waves)
    for w, u in zip(waves, batch):
        np.testing.assert_array_equal(tok.tokenize([w])[0], u)
    reordered = tok.tokenize(waves[::-1])[::-1]
    for a, b in zip(batch, reordered):
        np.testing.assert_array_equal(a, b)
    assert tok.tokenize([]) == []


def test_training_is_deterministic(waves, tmp_path):
    a = train_tokenizer("ssl_kmeans", waves, tmp_path / "a", features="logmel", **KM)
    b = train_tokenizer("ssl_kmeans", waves, tmp_path / "b", features="logmel", **KM)
    np.testing.assert_array_equal(a.centroids, b.centroids)
    c = train_tokenizer("ssl_kmeans", waves, tmp_path / "c", features="logmel", seed=1, **KM)
    assert not np.array_equal(a.centroids, c.centroids)  # the seed is really used


def test_save_load_round_trip(offline, waves):
    tok, out, conf = offline
    files = sorted(p.name for p in out.iterdir())
    assert files == ["ssl_kmeans.json", "ssl_kmeans.safetensors"]  # no pickle
    assert json.loads((out / "ssl_kmeans.json").read_text())["normalize"] is True
    again = build_tokenizer("ssl_kmeans", out, **conf)
    for a, b in zip(tok.tokenize(waves), again.tokenize(waves)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(tok.mean, again.mean)
    assert build_tokenizer("ssl_kmeans", out).tokenize(waves[:1])[0].shape == tok.tokenize(waves[:1])[0].shape
    with pytest.raises(ValueError, match="codebook_size=32 in config but the trained model has 16"):
        build_tokenizer("ssl_kmeans", out, **{**conf, "codebook_size": 32})


def test_units_separate_different_sounds(tmp_path):
    """Low tone, high tone and noise each get their own units (the features carry real content)."""
    low, high = tone(1.0, 200, 0, noise=0.0), tone(1.0, 3000, 1, noise=0.0)
    noise = (0.1 * np.random.default_rng(2).standard_normal(SR)).astype(np.float32)
    tok = train_tokenizer("ssl_kmeans", [low, high, noise], tmp_path, features="mfcc", codebook_size=3,
                          kmeans_batch_size=256, kmeans_n_init=3, kmeans_iters=50)
    major = [np.bincount(u[5:-5, 0]).argmax() for u in tok.tokenize([low, high, noise])]  # skip edge frames
    assert len(set(major)) == 3, major


def test_normalisation_stats_are_saved_and_used(offline, waves):
    tok, _, _ = offline
    x = np.concatenate([tok.backend(w) for w in waves])  # raw features of every training frame
    np.testing.assert_allclose(tok.mean, x.mean(0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(tok.features(waves[0]), (tok.backend(waves[0]) - tok.mean) / tok.std, rtol=1e-6)


def test_max_frames_bounds_training_and_reservoir_is_uniform(waves, tmp_path):
    tok = train_tokenizer("ssl_kmeans", waves, tmp_path, features="logmel", max_frames=40, **KM)
    assert tok.centroids.shape == (16, 80)
    pool = FrameReservoir(100, seed=0)
    for start in range(0, 10_000, 700):  # 10 000 numbered frames in uneven chunks
        pool.add(np.arange(start, min(start + 700, 10_000), dtype=np.float32)[:, None])
    kept = pool.frames()[:, 0]
    assert kept.shape == (100,) and len(np.unique(kept)) == 100
    assert 3500 < kept.mean() < 6500  # a uniform sample of 0..9999, not the first chunk
    mean, std = pool.stats()  # statistics cover all frames, not only the kept ones
    np.testing.assert_allclose([mean[0], std[0]], [4999.5, np.arange(10_000).std()], rtol=1e-6)


def test_dedup_collapses_repeats(waves, tmp_path):
    tok = train_tokenizer("ssl_kmeans", waves, tmp_path / "d", features="logmel", dedup=True, **KM)
    plain = build_tokenizer("ssl_kmeans", tmp_path / "d", dedup=True)
    assert tok.frame_rate is None  # no fixed frame grid any more
    raw = train_tokenizer("ssl_kmeans", waves, tmp_path / "r", features="logmel", **KM).tokenize(waves)
    for d, r, p in zip(tok.tokenize(waves), raw, plain.tokenize(waves)):
        assert np.all(d[1:, 0] != d[:-1, 0])
        np.testing.assert_array_equal(d[:, 0], dedup_units(r[:, 0]))
        np.testing.assert_array_equal(d, p)
    np.testing.assert_array_equal(dedup_units(np.array([3, 3, 1, 1, 1, 3, 2, 2])), [3, 1, 3, 2])


def test_detokenize_is_not_implemented(offline):
    with pytest.raises(NotImplementedError, match="no decoder"):
        offline[0].detokenize(np.zeros((4, 1), dtype=np.int64))


def test_bad_input_errors(offline, waves, tmp_path):
    tok = offline[0]
    with pytest.raises(ValueError, match="item 1 is empty audio"):
        tok.tokenize([waves[0], np.zeros(0, dtype=np.float32)])
    with pytest.raises(ValueError, match=r"must be 1-D \(mono\)"):
        tok.tokenize([np.zeros((2, 800), dtype=np.float32)])
    with pytest.raises(TypeError, match="float waveform"):
        tok.tokenize([np.zeros(800, dtype=np.int16)])
    with pytest.raises(TypeError, match="list of waveforms"):
        tok.tokenize(waves[0])
    with pytest.raises(ValueError, match="unknown feature backend 'fbank'; known: \\['hf', 'logmel', 'mfcc', 'whisper'\\]"):
        train_tokenizer("ssl_kmeans", waves, tmp_path / "x", features="fbank", **KM)
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['n_cluster'\]"):
        train_tokenizer("ssl_kmeans", waves, tmp_path / "y", features="mfcc", n_cluster=8)
    with pytest.raises(ValueError, match="got no waveforms"):
        train_tokenizer("ssl_kmeans", [], tmp_path / "z", features="mfcc", **KM)
    with pytest.raises(ValueError, match="exactly one of `model`"):
        train_tokenizer("ssl_kmeans", waves, tmp_path / "h", features="hf", **KM)
    with pytest.raises(FileNotFoundError, match="train the ssl_kmeans tokenizer first"):
        SSLKMeansTokenizer.load(tmp_path / "nothing_here")


# --------------------------------------------------------------------------------------
# hf backend: tiny random models saved with save_pretrained and loaded by path
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def short(waves) -> list[np.ndarray]:
    """Half-length clips: CPU time of the HF forward passes stays small."""
    return [w[: max(1, len(w) // 2)] for w in waves]


@pytest.fixture(scope="module", params=["hubert", "wavlm", "wav2vec2"])
def hf_model_dir(request, tmp_path_factory):
    import torch
    from transformers import AutoConfig, AutoModel, Wav2Vec2FeatureExtractor

    torch.manual_seed(0)
    model = AutoModel.from_config(AutoConfig.for_model(request.param, **TINY))
    out = tmp_path_factory.mktemp(request.param)
    model.save_pretrained(str(out))
    if request.param == "wav2vec2":  # large-model style: per-utterance input normalisation
        Wav2Vec2FeatureExtractor(sampling_rate=SR, do_normalize=True).save_pretrained(str(out))
    return out


def test_hf_backend_units(hf_model_dir, short, tmp_path):
    import torch
    from transformers import AutoModel

    conf = dict(features="hf", model=str(hf_model_dir), layer=1, **KM)
    tok = train_tokenizer("ssl_kmeans", short[:3], tmp_path, **conf)
    assert (tok.frame_rate, tok.cfg.normalize) == (50.0, False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ssl_kmeans.json", "ssl_kmeans.safetensors"]
    full = AutoModel.from_pretrained(str(hf_model_dir)).eval()
    units = tok.tokenize(short)
    for w, u in zip(short, units):
        n = max(len(w), tok.backend.min_samples)  # the 0.02 s clip is padded to one conv frame
        assert u.shape == (int(full._get_feat_extract_output_lengths(n)), 1)
    # dropping the layers above `layer` leaves hidden_states[layer] unchanged
    w = short[0]
    if tok.backend.extractor is not None:  # the saved extractor normalises each utterance
        w = (w - w.mean()) / np.sqrt(w.var() + 1e-7)
    x = torch.from_numpy(w)[None]  # [1, N]
    with torch.no_grad():
        ref = full(x, output_hidden_states=True).hidden_states[1][0].numpy()
    np.testing.assert_allclose(tok.backend(short[0]), ref, rtol=1e-4, atol=1e-5)
    assert (tok.backend.extractor is not None) == (hf_model_dir.name.startswith("wav2vec2"))
    for w, u in zip(short, units):  # batching == one by one
        np.testing.assert_array_equal(tok.tokenize([w])[0], u)
    again = build_tokenizer("ssl_kmeans", tmp_path, **conf)
    for a, b in zip(units, again.tokenize(short)):
        np.testing.assert_array_equal(a, b)


def test_hf_random_init_is_saved_with_the_tokenizer(short, tmp_path):
    conf = dict(features="hf", layer=2, random_init_config={"model_type": "hubert", "overrides": TINY, "seed": 3}, **KM)
    tok = train_tokenizer("ssl_kmeans", short[:3], tmp_path, **conf)
    assert (tmp_path / "hf_model" / "model.safetensors").is_file()
    again = build_tokenizer("ssl_kmeans", tmp_path, **conf)
    for a, b in zip(tok.tokenize(short), again.tokenize(short)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="layer 3 > num_hidden_layers 2"):
        train_tokenizer("ssl_kmeans", short[:3], tmp_path / "bad", **{**conf, "layer": 3})


def test_hf_missing_model_is_clear(short, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(OSError, match="cannot load model .*empty.*pass the local folder"):
        train_tokenizer("ssl_kmeans", short, tmp_path / "o", features="hf", model=str(tmp_path / "empty"), **KM)
