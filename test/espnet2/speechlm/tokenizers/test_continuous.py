"""Continuous items: placeholder tokens + float features (spk_embedding, llm_embedding)."""

from __future__ import annotations

import numpy as np
import pytest

from espnet2.speechlm.tokenizers import TOKENIZERS, build_tokenizer, train_tokenizer
from espnet2.speechlm.tokenizers.continuous import ContinuousTokenizer, is_continuous

SR = 16000


def tone(freq: float, seconds: float = 0.5, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    wav = 0.3 * np.sin(2 * np.pi * freq * t) + noise * np.random.default_rng(seed).standard_normal(t.size)
    return wav.astype(np.float32)


# --- spk_embedding -----------------------------------------------------------------------
def test_registered_and_recognised():
    for name in ("spk_embedding", "llm_embedding"):
        assert name in TOKENIZERS.names() and is_continuous(name)
    assert not is_continuous("label") and not is_continuous("no_such_family")


def test_mfcc_stats_one_unit_vector_per_item():
    tok = build_tokenizer("spk_embedding", None)
    assert isinstance(tok, ContinuousTokenizer)
    assert (tok.codebook_size, tok.n_streams, tok.vocab_size, tok.embed_dim, tok.sample_rate) == (1, 1, 1, 40, SR)
    wavs = [tone(150), tone(150, noise=0.01), tone(900, noise=0.05, seed=1)]
    tokens, feats = tok.encode(wavs)
    for t, f in zip(tokens, feats):
        assert t.dtype == np.int64 and t.tolist() == [[0]]  # one placeholder, local id 0
        assert f.dtype == np.float32 and f.shape == (1, 40)
        assert abs(np.linalg.norm(f) - 1.0) < 1e-5
    near, far = (feats[0] @ feats[1].T).item(), (feats[0] @ feats[2].T).item()
    assert near > far  # a similar voice lands closer than a different one
    np.testing.assert_array_equal(tok.tokenize(wavs[:1])[0], tokens[0])
    np.testing.assert_allclose(tok.features(wavs[:1])[0], feats[0], rtol=1e-6)  # deterministic, batch-free
    assert tok.token_strings() == ["<continuous>"]
    with pytest.raises(NotImplementedError, match="condition only"):
        tok.detokenize(tokens[0])


def test_mfcc_options_and_raw_scale():
    tok = build_tokenizer("spk_embedding", None, n_mfcc=8, normalize=False, store_dtype="float16")
    assert tok.embed_dim == 16 and tok.store_dtype == "float16"
    f = tok.features([tone(300)])[0]
    assert f.shape == (1, 16) and abs(np.linalg.norm(f) - 1.0) > 0.1
    # train_tokenizer on a family that needs no training just builds it from conf
    assert train_tokenizer("spk_embedding", [], "/tmp/unused_spk_embedding_dir", n_mfcc=8).embed_dim == 16


@pytest.mark.parametrize("conf,match", [
    ({"embedder": "ecapa"}, "unknown embedder 'ecapa'"),
    ({"n_mel": 40}, r"unknown conf keys \['n_mel'\]"),
    ({"embedder": "hf_xvector"}, "needs `model`: a local folder"),
    ({"embedder": "hf_xvector", "model": "/no/such/dir"}, "not a local model folder"),
    ({"store_dtype": "int8"}, "store_dtype must be one of"),
])
def test_spk_embedding_bad_conf_is_clear(conf, match):
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        build_tokenizer("spk_embedding", None, **conf)


def test_spk_embedding_bad_items_name_the_item():
    tok = build_tokenizer("spk_embedding", None)
    with pytest.raises(ValueError, match="item 1 must be 1-D"):
        tok.features([tone(200), np.zeros((2, 100), np.float32)])
    with pytest.raises(TypeError, match="item 0 must be a float waveform"):
        tok.features([np.zeros(100, dtype=np.int16)])
    with pytest.raises(TypeError, match="list of waveforms"):
        tok.features(tone(200))


@pytest.fixture(scope="module")
def xvector_dir(tmp_path_factory):
    """A tiny random WavLM x-vector model + feature extractor, saved like a hub folder."""
    import torch
    from transformers import Wav2Vec2FeatureExtractor, WavLMConfig, WavLMForXVector

    torch.manual_seed(0)
    cfg = WavLMConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                      conv_dim=(16, 16), conv_stride=(5, 4), conv_kernel=(10, 8), num_conv_pos_embeddings=16,
                      num_conv_pos_embedding_groups=2, tdnn_dim=(16, 16), tdnn_kernel=(3, 1), tdnn_dilation=(1, 1),
                      xvector_output_dim=24, num_buckets=32, max_bucket_distance=64)
    d = tmp_path_factory.mktemp("xvector")
    WavLMForXVector(cfg).eval().save_pretrained(str(d))
    Wav2Vec2FeatureExtractor(sampling_rate=SR).save_pretrained(str(d))
    return d


def test_hf_xvector_from_local_folder(xvector_dir):
    tok = build_tokenizer("spk_embedding", None, embedder="hf_xvector", model=str(xvector_dir))
    assert tok.embed_dim == 24 and tok.sample_rate == SR
    assert tok._embedder is None  # the model loads on first use only
    tokens, feats = tok.encode([tone(200), tone(700, 0.3)])
    assert [t.shape for t in tokens] == [(1, 1), (1, 1)]
    assert all(f.shape == (1, 24) and abs(np.linalg.norm(f) - 1) < 1e-5 for f in feats)
    assert not np.allclose(feats[0], feats[1])


# --- llm_embedding -----------------------------------------------------------------------
TEXTS = ["hello world", "the cat sat on the mat", "a"]


@pytest.fixture(scope="module")
def llm_dir(tmp_path_factory):
    """A tiny random Llama (causal LM head included) + a byte-level BPE tokenizer in one folder."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    raw.train_from_iterator(TEXTS, trainers.BpeTrainer(vocab_size=280, special_tokens=["<s>"],
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    bos = [("<s>", raw.token_to_id("<s>"))]
    raw.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=bos)
    fast = PreTrainedTokenizerFast(tokenizer_object=raw, bos_token="<s>", eos_token="<s>")
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(fast), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    d = tmp_path_factory.mktemp("llm")
    LlamaForCausalLM(cfg).eval().save_pretrained(str(d))
    fast.save_pretrained(str(d))
    return d


def test_llm_hidden_states_match_the_model(llm_dir):
    import torch
    from transformers import AutoTokenizer, LlamaModel

    tok = build_tokenizer("llm_embedding", None, model=str(llm_dir))
    assert (tok.embed_dim, tok.codebook_size, tok.n_streams, tok.sample_rate) == (32, 1, 1, None)
    assert tok._model is None  # building reads only the config
    tokens, feats = tok.encode(TEXTS)
    ref_tok = AutoTokenizer.from_pretrained(str(llm_dir))
    ref = LlamaModel.from_pretrained(str(llm_dir)).eval()
    for text, t, f in zip(TEXTS, tokens, feats):
        ids = ref_tok(text, add_special_tokens=False)["input_ids"]
        assert t.shape == (len(ids), 1) and (t == 0).all()
        with torch.no_grad():
            want = ref(torch.tensor([ids])).last_hidden_state[0].numpy()
        assert f.shape == (len(ids), 32)
        np.testing.assert_allclose(f, want, atol=1e-5)
    first = build_tokenizer("llm_embedding", None, model=str(llm_dir), layer=0).features(TEXTS[:1])[0]
    with torch.no_grad():
        emb = ref.embed_tokens(torch.tensor([ref_tok(TEXTS[0], add_special_tokens=False)["input_ids"]]))[0]
    np.testing.assert_allclose(first, emb.numpy(), atol=1e-6)  # layer 0 = the input embeddings


def test_llm_options_and_errors(llm_dir):
    tok = build_tokenizer("llm_embedding", None, model=str(llm_dir), add_special_tokens=True, max_tokens=3)
    assert tok.features(["a"])[0].shape[0] == 2  # <s> + "a"
    with pytest.raises(ValueError, match=r"item 0 has \d+ tokens > max_tokens=3"):
        tok.features(["the cat sat on the mat"])
    with pytest.raises(ValueError, match="needs `model`"):
        build_tokenizer("llm_embedding", None)
    with pytest.raises(ValueError, match="layer 5 out of range for a 2-layer model"):
        build_tokenizer("llm_embedding", None, model=str(llm_dir), layer=5)
    with pytest.raises(FileNotFoundError, match="looks like a local path"):
        build_tokenizer("llm_embedding", None, model="/no/such/llm")
    with pytest.raises(TypeError, match="list of strings"):
        tok.features("hello")
    with pytest.raises(TypeError, match="item 1 must be a str"):
        tok.features(["ok", 3])
