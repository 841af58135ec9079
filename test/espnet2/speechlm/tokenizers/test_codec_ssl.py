"""codec_ssl: SSL units + codec codes on one frame grid.

Frame-rate alignment (stub tokenizers that emit frame indices, and real ssl_kmeans +
mel_rvq at 50 vs 25 / 75 Hz), save/load, batching, decoding through the codec, input
errors, a pretrained-style codec by name (tiny random encodec), and a codec_ssl task
template prepared end to end on a tiny data dir.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from espnet2.speechlm.tokenizers import build_tokenizer, train_tokenizer
from espnet2.speechlm.tokenizers.abs_tokenizer import AbsTokenizer
from espnet2.speechlm.tokenizers.codec_ssl import CodecSSLTokenizer, align_to_grid

SR = 16000
KM = dict(kmeans_batch_size=256, kmeans_n_init=1, kmeans_iters=20)
SSL = {"type": "ssl_kmeans", "conf": dict(features="mfcc", codebook_size=8, **KM)}
CODEC = {"type": "mel_rvq", "conf": dict(n_streams=2, codebook_size=16, hop_length=640, griffin_lim_iters=4,
                                          kmeans_iters=10)}  # 25 Hz


def sweep(seconds: float, f0: float, seed: int, sr: int = SR) -> np.ndarray:
    """A chirp from f0 up to 8 f0 with a little noise."""
    t = np.arange(int(seconds * sr)) / sr
    phase = 2 * np.pi * (f0 * t + 3.5 * f0 / seconds * t**2)
    noise = 0.02 * np.random.default_rng(seed).standard_normal(len(t))
    return (0.3 * np.sin(phase) + noise).astype(np.float32)


def two_tones(sr: int, seconds: float = 0.6) -> np.ndarray:
    """`seconds` of a 300 Hz tone, then `seconds` of a 3 kHz tone."""
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.concatenate([np.sin(2 * np.pi * 300 * t), np.sin(2 * np.pi * 3000 * t)])).astype(np.float32)


@pytest.fixture(scope="module")
def waves() -> list[np.ndarray]:
    return [sweep(1.0, 150, 0), sweep(0.53, 400, 1), sweep(0.77, 90, 2), sweep(0.03, 500, 3)]


@pytest.fixture(scope="module")
def trained(waves, tmp_path_factory):
    out = tmp_path_factory.mktemp("codec_ssl")
    return train_tokenizer("codec_ssl", waves, out, ssl=SSL, codec=CODEC), out


# --------------------------------------------------------------------------------------
# alignment with stub tokenizers: every token is the index of the frame it came from
# --------------------------------------------------------------------------------------
class FrameIndexTokenizer(AbsTokenizer):
    """Test stub: `n_streams` copies of the frame index, ceil(N * rate / sr) frames."""

    def __init__(self, frame_rate: float, n_streams: int = 1, sample_rate: int = SR):
        self.frame_rate, self.n_streams, self.sample_rate = frame_rate, n_streams, sample_rate
        self.codebook_size = 10_000

    def tokenize(self, items):
        out = []
        for w in items:
            t = int(np.ceil(len(w) * self.frame_rate / self.sample_rate))
            out.append(np.repeat(np.arange(t)[:, None], self.n_streams, axis=1))
        return out

    def detokenize(self, tokens):
        return tokens.copy()

    @classmethod
    def load(cls, model_dir, **conf):
        return cls(**conf)


@pytest.mark.parametrize("ssl_rate,codec_rate", [(50, 25), (50, 75), (50, 12.5), (50, 50), (25, 50), (50, 86.1328125)])
def test_alignment_picks_the_nearest_ssl_frame(ssl_rate, codec_rate):
    tok = CodecSSLTokenizer(FrameIndexTokenizer(ssl_rate), FrameIndexTokenizer(codec_rate, n_streams=3))
    assert (tok.n_streams, tok.frame_rate, tok.codebook_size) == (4, codec_rate, 10_000)
    for n in [1, 317, SR, 12345]:
        (out,) = tok.tokenize([np.zeros(n, dtype=np.float32)])
        n_ssl = int(np.ceil(n * ssl_rate / SR))
        assert out.shape == (int(np.ceil(n * codec_rate / SR)), 4)  # T = codec length
        np.testing.assert_array_equal(out[:, 1:], np.arange(len(out))[:, None].repeat(3, 1))  # codec untouched
        t_codec = np.arange(len(out)) / codec_rate
        t_ssl = out[:, 0] / ssl_rate
        inside = t_codec <= (n_ssl - 1) / ssl_rate
        assert np.all(np.abs(t_ssl - t_codec)[inside] <= 0.5 / ssl_rate + 1e-12)
        assert np.all(out[~inside, 0] == n_ssl - 1)  # past the SSL end: its last frame
    if (ssl_rate, codec_rate) == (50, 75):
        np.testing.assert_array_equal(tok.tokenize([np.zeros(1700, np.float32)])[0][:, 0],
                                      [0, 1, 1, 2, 3, 3, 4, 5])  # round(j * 2 / 3), ties up


def test_align_to_grid_edge_cases():
    units = np.arange(5)[:, None]
    np.testing.assert_array_equal(align_to_grid(units, 50, 25, 4)[:, 0], [0, 2, 4, 4])
    np.testing.assert_array_equal(align_to_grid(units, 50, 100, 3)[:, 0], [0, 1, 1])  # 0.5 rounds up
    with pytest.raises(ValueError, match="SSL tokenizer gave no frames"):
        align_to_grid(units[:0], 50, 25, 3)


# --------------------------------------------------------------------------------------
# real sub-tokenizers
# --------------------------------------------------------------------------------------
def test_shapes_streams_and_codebooks(trained, waves):
    tok, _ = trained
    assert (tok.n_streams, tok.codebook_size, tok.frame_rate, tok.sample_rate) == (3, 16, 25.0, SR)
    assert tok.vocab_size == 48
    names = tok.token_strings()
    assert len(names) == 16 and names[:8] == [f"u{i}" for i in range(8)] and names[8] == "8"
    out = tok.tokenize(waves)
    ssl, codec = tok.ssl.tokenize(waves), tok.codec.tokenize(waves)
    for o, s, c in zip(out, ssl, codec):
        assert o.dtype == np.int64 and o.shape == (len(c), 3)
        np.testing.assert_array_equal(o[:, 1:], c)  # codec streams are the codec's own local ids
        idx = np.minimum(2 * np.arange(len(c)), len(s) - 1)  # 50 Hz -> 25 Hz: every second SSL frame
        np.testing.assert_array_equal(o[:, 0], s[idx, 0])
        assert o[:, 0].max() < 8 and o[:, 1:].max() < 16  # stream 0 keeps the SSL ids


def test_batch_equals_one_by_one(trained, waves):
    tok, _ = trained
    batch = tok.tokenize(waves)
    for w, b in zip(waves, batch):
        np.testing.assert_array_equal(tok.tokenize([w])[0], b)
    assert tok.tokenize([]) == []


def test_save_load_round_trip(trained, waves):
    tok, out = trained
    assert sorted(p.name for p in out.iterdir()) == ["codec", "codec_ssl.json", "ssl"]
    assert not list(out.rglob("*.pkl")) and not list(out.rglob("*.pickle"))
    saved = json.loads((out / "codec_ssl.json").read_text())
    assert (saved["ssl"]["type"], saved["codec"]["type"]) == ("ssl_kmeans", "mel_rvq")
    for again in [build_tokenizer("codec_ssl", out, ssl=SSL, codec=CODEC), build_tokenizer("codec_ssl", out)]:
        for a, b in zip(tok.tokenize(waves), again.tokenize(waves)):
            np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="ssl is 'mel_rvq' in config but 'ssl_kmeans' was trained"):
        build_tokenizer("codec_ssl", out, ssl=CODEC, codec=CODEC)


def test_detokenize_drops_ssl_and_decodes_with_codec(trained, waves):
    tok, _ = trained
    tokens = tok.tokenize([waves[0]])[0]
    wav = tok.detokenize(tokens)
    assert wav.dtype == np.float32 and wav.ndim == 1 and np.all(np.isfinite(wav)) and np.abs(wav).max() > 0
    assert abs(len(wav) - len(waves[0])) <= 640  # within one codec hop
    np.testing.assert_array_equal(wav, tok.codec.detokenize(tokens[:, 1:]))
    other = tokens.copy()
    other[:, 0] = (other[:, 0] + 3) % 8  # the SSL stream does not reach the decoder
    np.testing.assert_array_equal(tok.detokenize(other), wav)
    assert len(tok.detokenize(tokens[:, :2])) == len(wav)  # SSL + a coarse codec prefix
    with pytest.raises(ValueError, match=r"expected tokens \[T, 2..3\] \(SSL stream first\)"):
        tok.detokenize(tokens[:, :1])


def test_units_land_at_the_right_times_75hz_codec(tmp_path):
    """24 kHz: SSL at 50 Hz (hop 480) and codec at 75 Hz (hop 320); a tone change at 0.6 s."""
    sr = 24000
    wav = two_tones(sr)
    ssl = {"type": "ssl_kmeans", "conf": dict(features="logmel", sample_rate=sr, hop_length=480, n_fft=600,
                                              n_mels=40, codebook_size=2, kmeans_batch_size=256, kmeans_n_init=3)}
    codec = {"type": "mel_rvq", "conf": dict(sample_rate=sr, hop_length=320, n_streams=1, codebook_size=4,
                                             kmeans_iters=10)}
    tok = train_tokenizer("codec_ssl", [wav], tmp_path, ssl=ssl, codec=codec)
    assert tok.frame_rate == 75.0 and tok.ssl.frame_rate == 50.0
    (out,) = tok.tokenize([wav])
    assert len(out) == len(tok.codec.tokenize([wav])[0]) == 1 + len(wav) // 320
    units = tok.ssl.tokenize([wav])[0][:, 0]
    np.testing.assert_array_equal(out[:, 0], units[np.floor(np.arange(len(out)) * 2 / 3 + 0.5).astype(int)])
    t = np.arange(len(out)) / 75.0
    first, second = out[(t > 0.05) & (t < 0.55), 0], out[(t > 0.65) & (t < 1.15), 0]
    assert len(set(first)) == 1 and len(set(second)) == 1 and first[0] != second[0]


def test_encodec_by_name(tmp_path, waves):
    """A pretrained-style codec (here a tiny random encodec at 16 kHz, 25 Hz) needs no folder of its own."""
    codec = {"type": "encodec", "conf": {"n_streams": 2, "random_init_config": dict(
        sampling_rate=16000, upsampling_ratios=[8, 5, 4, 4], hidden_size=16, num_filters=4, codebook_size=1024,
        num_lstm_layers=1, target_bandwidths=[0.5])}}  # 0.5 kbit/s = 25 Hz x 2 streams x 10 bits
    tok = train_tokenizer("codec_ssl", waves, tmp_path, ssl=SSL, codec=codec)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["codec_ssl.json", "ssl"]
    assert (tok.n_streams, tok.codebook_size, tok.frame_rate) == (3, 1024, 25.0)
    out = tok.tokenize(waves)
    again = build_tokenizer("codec_ssl", tmp_path, ssl=SSL, codec=codec)
    for o, a, w in zip(out, again.tokenize(waves), waves):
        np.testing.assert_array_equal(o, a)
        assert o.shape == (int(np.ceil(len(w) / 640)), 3)
    assert tok.detokenize(out[0]).shape == (len(out[0]) * 640,)


# --------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------
def test_bad_input_and_config_errors(trained, waves, tmp_path):
    tok, _ = trained
    with pytest.raises(ValueError, match="item 1 is empty audio"):
        tok.tokenize([waves[0], np.zeros(0, dtype=np.float32)])
    with pytest.raises(TypeError, match="list of waveforms"):
        tok.tokenize(waves[0])
    # sample rates: caught from the confs before any training, and from the built tokenizers
    bad_codec = {"type": "mel_rvq", "conf": {**CODEC["conf"], "sample_rate": 24000}}
    ssl16 = {"type": "ssl_kmeans", "conf": {**SSL["conf"], "sample_rate": 16000}}
    with pytest.raises(ValueError, match=r"sample rates differ: ssl \(ssl_kmeans\) 16000 Hz, codec \(mel_rvq\) 24000 Hz"):
        train_tokenizer("codec_ssl", waves, tmp_path / "a", ssl=ssl16, codec=bad_codec)
    assert not (tmp_path / "a" / "ssl").exists()
    with pytest.raises(ValueError, match=r"sample rates differ: ssl \(FrameIndexTokenizer\) 16000 Hz, codec \(FrameIndexTokenizer\) 24000"):
        CodecSSLTokenizer(FrameIndexTokenizer(50), FrameIndexTokenizer(75, 2, sample_rate=24000))
    with pytest.raises(ValueError, match="must have 1 stream, has 2"):
        CodecSSLTokenizer(FrameIndexTokenizer(50, 2), FrameIndexTokenizer(75, 2))
    with pytest.raises(ValueError, match=r"needs a fixed frame_rate .* \(turn off dedup\)"):
        train_tokenizer("codec_ssl", waves, tmp_path / "d", codec=CODEC,
                        ssl={"type": "ssl_kmeans", "conf": {**SSL["conf"], "dedup": True}})
    with pytest.raises(ValueError, match="unknown feature backend 'wav2vec'"):
        train_tokenizer("codec_ssl", waves, tmp_path / "f", codec=CODEC,
                        ssl={"type": "ssl_kmeans", "conf": {**SSL["conf"], "features": "wav2vec"}})
    with pytest.raises(KeyError, match="unknown tokenizer 'hubert_units'"):
        train_tokenizer("codec_ssl", waves, tmp_path / "b", ssl={"type": "hubert_units"}, codec=CODEC)
    with pytest.raises(ValueError, match="needs both `ssl` and `codec`"):
        train_tokenizer("codec_ssl", waves, tmp_path / "c", ssl=SSL)
    with pytest.raises(ValueError, match=r"`codec` has unknown keys \['n_streams'\]"):
        train_tokenizer("codec_ssl", waves, tmp_path / "e", ssl=SSL, codec={**CODEC, "n_streams": 2})
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['ssl_layer'\]"):
        train_tokenizer("codec_ssl", waves, tmp_path / "g", ssl=SSL, codec=CODEC, ssl_layer=6)
    with pytest.raises(FileNotFoundError, match="the ssl tokenizer \\(ssl_kmeans\\) is not trained"):
        CodecSSLTokenizer.load(tmp_path / "never_trained", ssl=SSL, codec=CODEC)


# --------------------------------------------------------------------------------------
# a codec_ssl task template, prepared end to end
# --------------------------------------------------------------------------------------
def test_codec_ssl_asr_template_prepares(tiny_data_dir, tmp_path):
    from espnet2.bin import speechlm_prepare
    from espnet2.speechlm.data import prepare as prep
    from espnet2.speechlm.data.dataset import SpeechLMDataset
    from espnet2.speechlm.data.index import read_index
    from espnet2.speechlm.data.readers import read_audio
    from espnet2.speechlm.vocab import JointVocabulary

    conf = tmp_path / "tokenizers.yaml"
    conf.write_text(yaml.safe_dump({"text": {"type": "char"},
                                    "codec_ssl": {"type": "codec_ssl", "conf": {"ssl": SSL, "codec": CODEC}}}))
    tok_dir, out = tmp_path / "tokenizers", tmp_path / "dump" / "codec_ssl_asr" / "train"

    def run(*args):
        speechlm_prepare.main([str(a) for a in args])

    run("train_tokenizers", "--data_dir", tiny_data_dir, "--tasks", "codec_ssl_asr", "--tokenizer_config", conf,
        "--tokenizer_dir", tok_dir)
    assert (tok_dir / "codec_ssl" / "ssl" / "ssl_kmeans.safetensors").is_file()
    assert (tok_dir / "codec_ssl" / "codec" / "mel_rvq.safetensors").is_file()
    run("tokenize", "--task", "codec_ssl_asr", "--data_dir", tiny_data_dir, "--tokenizer_config", conf,
        "--tokenizer_dir", tok_dir, "--out_dir", out, "--shard_size", 3)
    meta = json.loads((out / "data.json").read_text())
    assert meta["num_examples"] == 8 and meta["num_skipped"] == 0
    summary = meta["tokenizers"]["codec_ssl"]
    assert (summary["n_streams"], summary["codebook_size"], summary["frame_rate"]) == (3, 16, 25.0)

    # the shards hold exactly what the trained tokenizer gives for each utterance
    tok = prep.load_tokenizer(prep.TokenizerSpec("codec_ssl", "codec_ssl", {"ssl": SSL, "codec": CODEC}), tok_dir)
    wav_scp = read_index(tiny_data_dir / "wav.scp")[0]
    for shard in sorted((out / "shards").iterdir()):
        ids = (shard / "ids.txt").read_text().split()
        flat, lens = np.load(shard / "item0.npy"), np.load(shard / "item0.len.npy")
        assert flat.shape[1] == 3
        ref = tok.tokenize([read_audio(wav_scp[i].content, SR) for i in ids])
        np.testing.assert_array_equal(lens, [len(r) for r in ref])
        np.testing.assert_array_equal(flat, np.concatenate(ref))

    run("vocab", "--data_json", out / "data.json", "--out_dir", tmp_path / "vocab")
    vocab = JointVocabulary.load(tmp_path / "vocab")
    ds = SpeechLMDataset([out / "data.json"], vocab)
    assert len(ds) == 8 and ds[0]["seq"].shape[1] == 3
    assert "codec_ssl:0:u0" in Path(tmp_path / "vocab" / "vocab.txt").read_text()

    # each stream gets its own ids: the codec streams cannot emit ids their codec lacks
    from espnet2.speechlm.inference import ModalityTable
    from espnet2.speechlm.inference.outputs import OutOfRangeToken, target_tokens
    from espnet2.speechlm.models.heads import vocab_head_ranges

    r = vocab.range("codec_ssl")
    sizes = [SSL["conf"]["codebook_size"]] + [CODEC["conf"]["codebook_size"]] * 2
    assert summary["stream_sizes"] == sizes == r.stream_sizes and max(sizes) > min(sizes)
    heads = vocab_head_ranges(vocab)
    table = ModalityTable.from_vocab(vocab)
    for k, n in enumerate(sizes):
        lo = r.stream_range(k)[0]
        covered = {i for a, b in heads[k] for i in range(a, b)}
        assert sum(i in covered for i in range(lo, lo + r.codebook_size)) == n  # this stream's head: its n ids
        allowed = table.stream0[vocab.ranges.index(r)] if k == 0 else table.streamk[vocab.ranges.index(r), k]
        assert int(allowed[lo: lo + r.codebook_size].sum()) == n
    small = int(np.argmin(sizes))
    rows = vocab.to_global("codec_ssl", np.zeros((2, 3), dtype=np.int64))
    rows[1, small] += sizes[small]  # the first id past that stream's own size
    with pytest.raises(OutOfRangeToken, match=f"stream {small}"):
        target_tokens(vocab, "codec_ssl", rows)
