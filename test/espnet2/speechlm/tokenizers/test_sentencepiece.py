"""sentencepiece: exact text round trip, batching, persistence, unk, input errors."""

from __future__ import annotations

import numpy as np
import pytest

from espnet2.speechlm.tokenizers import build_tokenizer, train_tokenizer

CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "a stitch in time saves nine",
    "she sells sea shells by the sea shore",
    "speech language models read tokens",
    "the rain in spain stays mainly in the plain",
] * 4


@pytest.fixture(scope="module", params=["bpe", "unigram", "char"])
def tok(request, tmp_path_factory):
    out = tmp_path_factory.mktemp(f"sp_{request.param}")
    return train_tokenizer("sentencepiece", iter(CORPUS), out, vocab_size=60, model_type=request.param)


def test_round_trip_exact(tok):
    texts = ["the lazy fox reads tokens", "sea shells", "nine"]
    for t, ids in zip(texts, tok.tokenize(texts)):
        assert ids.dtype == np.int64 and ids.ndim == 2 and ids.shape[1] == 1
        assert 0 <= ids.min() and ids.max() < tok.codebook_size
        assert tok.detokenize(ids) == t


def test_batch_equals_one_by_one(tok):
    texts = ["the quick dog", "", "a plain time"]
    batch = tok.tokenize(texts)
    assert batch[1].shape == (0, 1)
    for t, ids in zip(texts, batch):
        np.testing.assert_array_equal(tok.tokenize([t])[0], ids)


def test_sizes_and_strings(tok):
    assert tok.n_streams == 1 and tok.frame_rate is None
    assert 20 < tok.codebook_size <= 60  # soft limit: a tiny corpus may give fewer pieces
    strings = tok.token_strings()
    assert len(strings) == tok.codebook_size and strings[0] == "<unk>"


def test_unknown_char_maps_to_unk(tok):
    ids = tok.tokenize(["zq€"])[0]
    assert (ids == 0).any()


def test_save_load_equal(tok):
    loaded = build_tokenizer("sentencepiece", tok.model_dir, vocab_size=60)
    texts = CORPUS[:5]
    for a, b in zip(loaded.tokenize(texts), tok.tokenize(texts)):
        np.testing.assert_array_equal(a, b)


def test_errors(tok, tmp_path):
    with pytest.raises(TypeError, match="must be a str"):
        tok.tokenize([b"bytes"])
    with pytest.raises(TypeError, match="list of strings"):
        tok.tokenize("not a list")
    with pytest.raises(ValueError, match=r"\[0, "):
        tok.detokenize(np.array([[tok.codebook_size]]))
    with pytest.raises(FileNotFoundError, match="train the tokenizer first"):
        build_tokenizer("sentencepiece", tmp_path)
    with pytest.raises(ValueError, match="no non-empty text"):
        train_tokenizer("sentencepiece", ["", "  "], tmp_path / "x", vocab_size=10)
    with pytest.raises(ValueError, match="model_type"):
        train_tokenizer("sentencepiece", CORPUS, tmp_path / "y", model_type="wordpiece")
