"""label: one token per item, sorted inventory, <unk> = 0, persistence, registry."""

from __future__ import annotations

import numpy as np
import pytest

from espnet2.speechlm.tokenizers import TOKENIZERS, build_tokenizer, train_tokenizer


@pytest.fixture()
def tok(tmp_path):
    return train_tokenizer("label", ["spk2", "spk1", "spk2", "spk3 "], tmp_path)


def test_registry_has_every_family():
    for name in ["sentencepiece", "char", "mel_rvq", "label", "g2p_espeak"]:
        assert name in TOKENIZERS
    with pytest.raises(KeyError, match="unknown tokenizer"):
        build_tokenizer("nope", None)


def test_one_token_per_item(tok):
    assert tok.token_strings() == ["<unk>", "spk1", "spk2", "spk3"]
    out = tok.tokenize(["spk1", "spk3", "stranger"])
    assert [o.shape for o in out] == [(1, 1)] * 3
    assert all(o.dtype == np.int64 for o in out)
    assert [int(o[0, 0]) for o in out] == [1, 3, 0]
    assert tok.detokenize(out[1]) == "spk3"
    assert tok.vocab_size == 4


def test_min_count(tmp_path):
    tok = train_tokenizer("label", ["a", "a", "b"], tmp_path, min_count=2)
    assert tok.token_strings() == ["<unk>", "a"]
    assert int(tok.tokenize(["b"])[0][0, 0]) == 0


def test_save_load(tok, tmp_path):
    loaded = build_tokenizer("label", tmp_path)
    assert loaded.token_strings() == tok.token_strings()


def test_errors(tok, tmp_path):
    with pytest.raises(TypeError, match="must be a str"):
        tok.tokenize([1])
    with pytest.raises(TypeError, match="list of labels"):
        tok.tokenize("spk1")
    with pytest.raises(ValueError, match="no labels"):
        train_tokenizer("label", [], tmp_path / "e")
    with pytest.raises(ValueError, match="trained model_dir"):
        build_tokenizer("label", None)
