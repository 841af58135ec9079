"""g2p_espeak: phones from espeak-ng, batched == one-by-one, <unk> = 0, no decoder."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from espnet2.speechlm.tokenizers import build_tokenizer, train_tokenizer
from espnet2.speechlm.tokenizers.g2p import SENTINEL_TEXT, EspeakPhonemizer

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")

TRAIN = ["hello world", "the cat sat on the mat, and then it slept.", "how are you today?"]


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return train_tokenizer("g2p_espeak", TRAIN, tmp_path_factory.mktemp("g2p"))


def test_phones_look_right(tok):
    phones = tok.phonemize(["hello world"])[0]
    assert phones[:5] == ["h", "ə", "l", "ˈ", "oʊ"]
    assert " " in phones
    assert "|" in tok.phonemize(["the cat, the mat"])[0]  # clause boundary from the comma


def test_shapes_and_batching(tok):
    texts = ["the cat", "", "...", "hello, how are you?", SENTINEL_TEXT, "sat on the mat"]
    batch = tok.tokenize(texts)
    assert batch[1].shape == (0, 1) and batch[2].shape == (0, 1)
    for t, ids in zip(texts, batch):
        assert ids.dtype == np.int64 and ids.ndim == 2 and ids.shape[1] == 1
        np.testing.assert_array_equal(tok.tokenize([t])[0], ids)
    # same batch without the sentinel clash takes the fast path and agrees too
    for t, ids in zip(texts[:4], tok.tokenize(texts[:4])):
        np.testing.assert_array_equal(tok.tokenize([t])[0], ids)


def test_unknown_phone_is_zero(tok):
    ids = tok.tokenize(["xylophone quiz"])[0][:, 0]  # phones like z, ɪ not in the training text
    assert (ids == 0).any() and (ids != 0).any()


def test_stress_options():
    sep = EspeakPhonemizer("en-us", "separate")(["hello"])[0]
    att = EspeakPhonemizer("en-us", "attach")(["hello"])[0]
    drop = EspeakPhonemizer("en-us", "drop")(["hello"])[0]
    assert "ˈ" in sep and "ˈoʊ" in att and not any("ˈ" in p for p in drop)


def test_save_load_and_no_decoder(tok, tmp_path):
    tok.inventory.save(tmp_path / "g2p.json", language="en-us", stress="separate")
    loaded = build_tokenizer("g2p_espeak", tmp_path, language="en-us")
    assert loaded.token_strings() == tok.token_strings()
    with pytest.raises(NotImplementedError, match="no decoder"):
        tok.detokenize(np.zeros((3, 1), np.int64))
    with pytest.raises(ValueError, match="language"):
        build_tokenizer("g2p_espeak", tmp_path, language="fr")


def test_errors(tok):
    with pytest.raises(TypeError, match="must be a str"):
        tok.tokenize([None])
    with pytest.raises(TypeError, match="list of strings"):
        tok.tokenize("hello")
    with pytest.raises(RuntimeError, match="espeak-ng -v xx-nope failed"):
        EspeakPhonemizer("xx-nope")
