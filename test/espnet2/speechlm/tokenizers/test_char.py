"""char: inventory training, <unk> = 0, exact round trip, batching, persistence, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from espnet2.speechlm.tokenizers import build_tokenizer, train_tokenizer


@pytest.fixture()
def tok(tmp_path):
    return train_tokenizer("char", ["hello world", "héllo, wörld!"], tmp_path)


def test_inventory(tok, tmp_path):
    assert tok.token_strings()[0] == "<unk>"
    assert "<space>" in tok.token_strings()
    assert tok.codebook_size == 1 + len(set("hello worldéö,!"))
    saved = json.loads((tmp_path / "chars.json").read_text())
    assert saved["symbols"][0] == "<unk>"


def test_round_trip_and_shapes(tok):
    texts = ["hello wörld", "", "drow!"]
    out = tok.tokenize(texts)
    for t, ids in zip(texts, out):
        assert ids.dtype == np.int64 and ids.shape == (len(t), 1)
        assert tok.detokenize(ids) == t
        np.testing.assert_array_equal(tok.tokenize([t])[0], ids)


def test_unknown_is_zero(tok):
    ids = tok.tokenize(["hxz"])[0][:, 0]
    assert ids[0] != 0 and ids[1] == 0 and ids[2] == 0
    assert tok.detokenize(ids[:, None]) == "h<unk><unk>"


def test_save_load(tok, tmp_path):
    loaded = build_tokenizer("char", tmp_path)
    assert loaded.inventory.symbols == tok.inventory.symbols


def test_errors(tok, tmp_path):
    with pytest.raises(TypeError, match="must be a str"):
        tok.tokenize([3])
    with pytest.raises(TypeError, match="list of strings"):
        tok.tokenize("abc")
    with pytest.raises(ValueError, match=r"\[0, "):
        tok.detokenize(np.array([[999]]))
    with pytest.raises(ValueError, match="no text"):
        train_tokenizer("char", [""], tmp_path / "empty")
    with pytest.raises(FileNotFoundError):
        build_tokenizer("char", tmp_path / "nope")
