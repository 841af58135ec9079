"""timestamp: `LABEL START END` segments -> (label, start, end) tokens on a time grid, and back."""

from __future__ import annotations

import numpy as np
import pytest

from espnet2.speechlm.tokenizers import build_tokenizer, train_tokenizer

TRAIN = ["spk1 0.00 1.20 spk2 1.20 3.00", "spk2 0.5 0.9", "music 0 30"]


@pytest.fixture()
def tok(tmp_path):
    return train_tokenizer("timestamp", TRAIN, tmp_path, resolution=0.02, max_seconds=30.0)


def test_layout(tok):
    assert tok.token_strings()[:4] == ["<unk>", "music", "spk1", "spk2"]
    assert tok.codebook_size == 4 + 1501 and tok.time_offset == 4
    ids = tok.tokenize(["spk2 0.50 1.21 alien 2 2"])[0]
    assert ids.shape == (6, 1) and ids.dtype == np.int64
    np.testing.assert_array_equal(ids[:, 0], [3, 4 + 25, 4 + 61, 0, 4 + 100, 4 + 100])  # 1.21 s -> step 61 (half-up)
    assert tok.token_strings()[4 + 25] == "<t0.50>"


def test_round_trip(tok):
    text = "spk1 0.00 1.20 spk2 1.20 3.00 music 29.98 30.00"
    ids = tok.tokenize([text])[0]
    assert tok.detokenize(ids) == text
    assert tok.decode_segments(ids)[1] == ("spk2", 1.2, 3.0)
    rough = tok.detokenize(tok.tokenize(["spk1 0.011 1.209 who 3 4"])[0])
    assert rough == "spk1 0.02 1.20 <unk> 3.00 4.00"  # within resolution / 2; unseen label -> <unk>
    np.testing.assert_array_equal(tok.tokenize([rough])[0], tok.tokenize(["spk1 0.011 1.209 who 3 4"])[0])


def test_batch_equals_one_by_one_and_save_load(tok, tmp_path):
    items = TRAIN + ["", "spk1 1 2"]
    batch = tok.tokenize(items)
    assert batch[3].shape == (0, 1)
    loaded = build_tokenizer("timestamp", tmp_path)
    for x, y in zip(items, batch):
        np.testing.assert_array_equal(tok.tokenize([x])[0], y)
        np.testing.assert_array_equal(loaded.tokenize([x])[0], y)


@pytest.mark.parametrize("item,match", [
    ("spk1 0.5", r"item 0: 2 fields is not a whole number of `LABEL START END` triples"),
    ("spk1 0 1 spk2 x 2", r"segment 1 'spk2 x 2': start and end must be seconds"),
    ("spk1 2 1", r"segment 0 'spk1 2 1': need 0 <= start <= end"),
    ("spk1 -1 1", r"need 0 <= start <= end"),
    ("spk1 0 1 spk2 29 31", r"segment 1 \(spk2 29.0 31.0\) ends after max_seconds=30.0"),
])
def test_bad_segments(tok, item, match):
    with pytest.raises(ValueError, match=match):
        tok.tokenize([item])


def test_decode_and_conf_errors(tok, tmp_path):
    ids = tok.tokenize(["spk1 0 1"])[0]
    with pytest.raises(ValueError, match="not a whole number"):
        tok.detokenize(ids[:2])
    with pytest.raises(ValueError, match="segment 0: token 2 is not a time"):
        tok.detokenize(ids[[0, 0, 1]])
    with pytest.raises(ValueError, match="is not a label"):
        tok.detokenize(ids[[1, 1, 2]])
    with pytest.raises(ValueError, match="max_seconds=10 in config"):
        build_tokenizer("timestamp", tmp_path, max_seconds=10)
    with pytest.raises(ValueError, match="trained model_dir"):
        build_tokenizer("timestamp", None)
    with pytest.raises(TypeError, match="list of items"):
        tok.tokenize("spk1 0 1")
