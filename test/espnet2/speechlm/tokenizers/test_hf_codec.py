"""hf_codec (encodec, dac, mimi): shapes, determinism, batching, decoding, persistence, errors.

Every model is a tiny random-weight config (about 10k parameters, 16 kHz) so that
nothing is downloaded; `save_pretrained` + `model: <folder>` covers the real loading path.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from espnet2.speechlm.tokenizers import TOKENIZERS, build_tokenizer, train_tokenizer
from espnet2.speechlm.tokenizers.hf_codec import DacTokenizer, EncodecTokenizer, MimiTokenizer

SR = 16000
TINY = {
    # hop 40 (400 Hz), 6-bit codes: 2.4 kbit/s per stream -> bandwidths [2.4, 4.8, 9.6] = 1, 2, 4 streams
    "encodec": dict(
        sampling_rate=SR, hidden_size=16, num_filters=4, upsampling_ratios=[5, 8], codebook_size=64,
        num_lstm_layers=1, target_bandwidths=[2.4, 4.8, 9.6],
    ),
    # hop 8 (2000 Hz), 3 codebooks; non-causal encoder
    "dac": dict(
        sampling_rate=SR, encoder_hidden_size=4, downsampling_ratios=[2, 4], decoder_hidden_size=16,
        n_codebooks=3, codebook_size=64, codebook_dim=4,
    ),
    # hop 16 * 2 (500 Hz), 1 semantic + 3 acoustic codebooks, one transformer layer
    "mimi": dict(
        sampling_rate=SR, hidden_size=16, num_filters=4, upsampling_ratios=[4, 4], codebook_size=64,
        codebook_dim=8, vector_quantization_hidden_dimension=8, upsample_groups=16, num_quantizers=4,
        num_hidden_layers=1, intermediate_size=32, num_attention_heads=2, num_key_value_heads=2,
        sliding_window=20, max_position_embeddings=512,
    ),
}
N_STREAMS = {"encodec": 2, "dac": 2, "mimi": 3}
HOP = {"encodec": 40, "dac": 8, "mimi": 32}
FAMILIES = list(TINY)


def conf(family: str, **over) -> dict:
    return {"n_streams": N_STREAMS[family], "random_init_config": TINY[family], "batch_size": 3, **over}


def synth(n: int, seed: int) -> np.ndarray:
    """Noise under a moving envelope plus a tone: varied frames for varied codes."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SR
    wav = 0.2 * rng.standard_normal(n) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)) + 0.2 * np.sin(2 * np.pi * 220 * t)
    return wav.astype(np.float32)


# lengths: very short (< 1 frame), exact multiples of every hop, one sample over, odd
LENGTHS = [17, 1600, 1601, 2999, 4000]


@pytest.fixture(scope="module")
def waves() -> list[np.ndarray]:
    return [synth(n, i) for i, n in enumerate(LENGTHS)]


@pytest.fixture(scope="module", params=FAMILIES)
def tok(request):
    return build_tokenizer(request.param, None, **conf(request.param))


def test_registered_names():
    assert TOKENIZERS.get("encodec") is EncodecTokenizer
    assert TOKENIZERS.get("dac") is DacTokenizer
    assert TOKENIZERS.get("mimi") is MimiTokenizer


def test_shapes_range_and_attributes(tok, waves):
    fam = tok.family
    codes = tok.tokenize(waves)
    assert len(codes) == len(waves)
    for c, w in zip(codes, waves):
        assert c.dtype == np.int64
        assert c.shape == (-(-len(w) // HOP[fam]), N_STREAMS[fam])
        assert c.min() >= 0 and c.max() < 64
    assert tok.sample_rate == SR and tok.hop_length == HOP[fam]
    assert tok.frame_rate == SR / HOP[fam]
    assert tok.codebook_size == 64 and tok.n_streams == N_STREAMS[fam]
    assert tok.vocab_size == 64 * N_STREAMS[fam]
    assert tok.bitrate == pytest.approx(tok.frame_rate * N_STREAMS[fam] * 6)
    # random codebooks are fitted to the latents: codes must vary over time in every stream
    long = codes[-1]
    assert all(len(np.unique(long[:, k])) > 5 for k in range(N_STREAMS[fam]))
    assert tok.tokenize([]) == []


def test_deterministic_and_seeded(tok, waves):
    fam = tok.family
    a = tok.tokenize(waves)
    for x, y in zip(a, tok.tokenize(waves)):
        np.testing.assert_array_equal(x, y)
    state = torch.get_rng_state()
    same = build_tokenizer(fam, None, **conf(fam))
    assert torch.equal(state, torch.get_rng_state()), "building must not touch the global RNG"
    np.testing.assert_array_equal(same.tokenize(waves[-1:])[0], a[-1])
    other = build_tokenizer(fam, None, **conf(fam, seed=1))
    assert not np.array_equal(other.tokenize(waves[-1:])[0], a[-1])


def test_batch_equals_one_by_one(tok, waves):
    batch = tok.tokenize(waves)  # batch_size 3: two forward passes of mixed lengths
    for w, c in zip(waves, batch):
        np.testing.assert_array_equal(tok.tokenize([w])[0], c)
    # reversed order and a different batch size give the same codes too
    rev = build_tokenizer(tok.family, None, **conf(tok.family, batch_size=5)).tokenize(waves[::-1])
    for c, r in zip(batch, rev[::-1]):
        np.testing.assert_array_equal(c, r)


def test_detokenize(tok, waves):
    fam = tok.family
    codes = tok.tokenize(waves[-1:])[0]
    wav = tok.detokenize(codes)
    assert wav.dtype == np.float32 and wav.ndim == 1
    assert len(wav) == len(codes) * HOP[fam]  # ceil(N / hop) * hop: within one hop of the input
    assert abs(len(wav) - len(waves[-1])) < HOP[fam]
    assert np.all(np.isfinite(wav)) and np.abs(wav).max() > 0
    coarse = tok.detokenize(codes[:, :1])  # a prefix of the streams decodes too
    assert coarse.shape == wav.shape and not np.allclose(coarse, wav)
    assert tok.detokenize(np.zeros((0, N_STREAMS[fam]), dtype=np.int64)).shape == (0,)


def test_local_folder_gives_same_tokens(tok, waves, tmp_path):
    fam = tok.family
    tok.save_pretrained(tmp_path / "hf")
    loaded = build_tokenizer(fam, tmp_path / "out", model=str(tmp_path / "hf"), n_streams=N_STREAMS[fam])
    assert type(loaded) is type(tok)
    for a, b in zip(tok.tokenize(waves), loaded.tokenize(waves)):
        np.testing.assert_array_equal(a, b)
    meta = json.loads((tmp_path / "out" / "hf_codec.json").read_text())
    assert meta["family"] == fam and meta["model"] == str(tmp_path / "hf") and meta["n_streams_used"] == N_STREAMS[fam]


def test_bad_input_errors(tok):
    good = synth(800, 0)
    for bad, err, msg in [
        (np.zeros(0, np.float32), ValueError, "item 1 is empty"),
        (np.zeros((2, 800), np.float32), ValueError, "item 1 must be 1-D"),
        (np.array([0.1, np.nan] * 400, np.float32), ValueError, "item 1 contains NaN"),
        (np.zeros(800, np.int16), TypeError, "item 1 must be a float waveform"),
        ([0.0] * 800, TypeError, "item 1 must be a 1-D numpy"),
    ]:
        with pytest.raises(err, match=msg):
            tok.tokenize([good, bad])
    with pytest.raises(TypeError, match="wrap a single one"):
        tok.tokenize(good)
    n = tok.n_streams
    with pytest.raises(ValueError, match="expected tokens"):
        tok.detokenize(np.zeros((5, n + 1), np.int64))
    with pytest.raises(ValueError, match="expected tokens"):
        tok.detokenize(np.zeros(5, np.int64))
    with pytest.raises(ValueError, match=r"lie in \[0, 64\)"):
        tok.detokenize(np.full((5, n), 64, np.int64))


def test_build_by_name_and_train_tokenizer(tmp_path, waves):
    tok = build_tokenizer("encodec", tmp_path / "a", **conf("encodec"))
    assert isinstance(tok, EncodecTokenizer) and not EncodecTokenizer.needs_training()
    assert (tmp_path / "a" / "hf_codec.json").is_file()
    # train_tokenizer builds a non-trainable family from conf alone
    same = train_tokenizer("encodec", [], tmp_path / "b", **conf("encodec"))
    np.testing.assert_array_equal(same.tokenize(waves[-1:])[0], tok.tokenize(waves[-1:])[0])


def test_encodec_streams_map_to_bandwidths():
    for n, bw in [(1, 2.4), (2, 4.8), (4, 9.6)]:
        tok = build_tokenizer("encodec", None, **conf("encodec", n_streams=n))
        assert tok.bandwidth == bw and tok.tokenize([synth(400, 0)])[0].shape == (10, n)
    assert build_tokenizer("encodec", None, **conf("encodec", n_streams=None)).n_streams == 4  # no 8: largest
    with pytest.raises(ValueError, match=r"n_streams=3 matches no bandwidth.*\{1: 2.4, 2: 4.8, 4: 9.6\}"):
        build_tokenizer("encodec", None, **conf("encodec", n_streams=3))


@pytest.mark.parametrize(
    "family,over,err,msg",
    [
        ("dac", dict(n_streams=4), ValueError, r"n_streams must be in \[1, 3\]"),
        ("mimi", dict(n_streams=0), ValueError, r"n_streams must be in \[1, 4\]"),
        ("mimi", dict(bandwidth=6.0), ValueError, r"unknown option\(s\) \['bandwidth'\]"),
        ("dac", dict(device="tpu"), ValueError, "device must be"),
        ("dac", dict(batch_size=0), ValueError, "batch_size must be >= 1"),
        ("dac", dict(model="/no/such/dir", random_init_config=None), FileNotFoundError, "/no/such/dir does not exist"),
        ("dac", dict(model="descript/dac_16khz"), ValueError, "either `model`.*or `random_init_config`"),
        ("encodec", dict(random_init_config={**TINY["encodec"], "normalize": True}), NotImplementedError, "scales"),
        ("mimi", dict(random_init_config={**TINY["mimi"], "audio_channels": 2}), NotImplementedError, "mono"),
        ("dac", dict(random_init_config={"no_such_field": 1}), ValueError, "bad random_init_config"),
    ],
)
def test_bad_conf_errors(family, over, err, msg):
    with pytest.raises(err, match=msg):
        build_tokenizer(family, None, **conf(family, **over))


def test_reader_rejects_wrong_sample_rate(tmp_path):
    """The data reader checks `tokenizer.sample_rate`: a 8 kHz file is refused for a 16 kHz codec."""
    from espnet2.speechlm.data.readers import ItemError, read_audio

    tok = build_tokenizer("dac", None, **conf("dac"))
    sf.write(tmp_path / "ok.wav", synth(800, 0), SR)
    sf.write(tmp_path / "bad.wav", synth(800, 0), 8000)
    assert tok.tokenize([read_audio(str(tmp_path / "ok.wav"), tok.sample_rate)])[0].shape == (100, 2)
    with pytest.raises(ItemError, match="sample rate 8000 != 16000"):
        read_audio(str(tmp_path / "bad.wav"), tok.sample_rate)
