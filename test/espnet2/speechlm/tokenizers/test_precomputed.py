"""precomputed: integer token files pass through, validated (dtype, range, streams)."""

from __future__ import annotations

import numpy as np
import pytest

from espnet2.speechlm.tokenizers import TOKENIZERS, build_tokenizer, train_tokenizer


def test_one_stream_accepts_T_and_T1():
    tok = build_tokenizer("precomputed", None, codebook_size=10)
    assert "precomputed" in TOKENIZERS and tok.vocab_size == 10 and tok.n_streams == 1
    a = np.array([3, 0, 9], dtype=np.uint8)
    b = np.array([[1], [2]], dtype=np.int32)
    out = tok.tokenize([a, b, np.zeros(0, np.int16)])
    assert [o.shape for o in out] == [(3, 1), (2, 1), (0, 1)]
    assert all(o.dtype == np.int64 for o in out)
    np.testing.assert_array_equal(out[0][:, 0], [3, 0, 9])
    np.testing.assert_array_equal(tok.detokenize(out[1]), b)


def test_multi_stream_batch_equals_one_by_one_and_copies(tmp_path):
    tok = train_tokenizer("precomputed", [], tmp_path, codebook_size=16, n_streams=3)  # no training: built from conf
    rng = np.random.default_rng(0)
    items = [rng.integers(0, 16, size=(t, 3)) for t in (4, 1, 7)]
    np.save(tmp_path / "v.npy", items[2])
    items[2] = np.load(tmp_path / "v.npy", mmap_mode="r")  # what the npy reader may hand over
    batch = tok.tokenize(items)
    for x, y in zip(items, batch):
        np.testing.assert_array_equal(tok.tokenize([x])[0], y)
        np.testing.assert_array_equal(tok.detokenize(y), x)
        assert y.shape == x.shape and y.dtype == np.int64
    batch[0][0, 0] = 99  # a copy, never a view of the caller's array
    assert items[0][0, 0] != 99


@pytest.mark.parametrize("item,err,match", [
    (np.array([0.0, 1.0]), TypeError, "dtype float64.*must be integers"),
    (np.array([[1, 2]]), ValueError, r"2 streams .*n_streams=1"),
    (np.array([1, 10]), ValueError, r"id 10 at frame 1, stream 0 is outside \[0, 10\)"),
    (np.array([[-1]]), ValueError, r"id -1 at frame 0"),
    (np.zeros((2, 1, 1), np.int64), ValueError, r"shape \(2, 1, 1\); expected \[T\] or \[T, 1\]"),
    ([1, 2], TypeError, "must be a numpy array"),
])
def test_bad_items_are_refused_with_position(item, err, match):
    tok = build_tokenizer("precomputed", None, codebook_size=10)
    with pytest.raises(err, match=match) as e:
        tok.tokenize([np.array([1]), item])
    assert "item 1" in str(e.value)


def test_multi_stream_needs_2d_and_conf_errors():
    tok = build_tokenizer("precomputed", None, codebook_size=4, n_streams=2)
    with pytest.raises(ValueError, match=r"expected \[T, 2\]"):
        tok.tokenize([np.array([1, 2])])
    with pytest.raises(TypeError, match="list of arrays"):
        tok.tokenize(np.array([1, 2]))
    with pytest.raises(ValueError, match="needs `codebook_size`"):
        build_tokenizer("precomputed", None)
    with pytest.raises(ValueError, match="n_streams must be a positive integer"):
        build_tokenizer("precomputed", None, codebook_size=4, n_streams=0)
    with pytest.raises(ValueError, match="unknown conf keys"):
        build_tokenizer("precomputed", None, codebook_size=4, nstreams=2)
