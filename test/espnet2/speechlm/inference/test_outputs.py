"""Generated rows -> target tokens: an out-of-range id is an error, never clipped or cut."""

import numpy as np
import pytest
from decode_testkit import tiny_vocab

from espnet2.speechlm.inference.outputs import OutOfRangeToken, target_tokens
from espnet2.speechlm.vocab import PAD, SOS_EOS


def codec_rows(vocab, local):
    """Local codec ids [T, 4] -> global rows [T, 4]."""
    return vocab.to_global("codec", np.asarray(local))


def test_in_range_rows_map_to_local_ids():
    vocab = tiny_vocab()
    local = np.array([[0, 1, 2, 3], [31, 30, 29, 28]])
    np.testing.assert_array_equal(target_tokens(vocab, "codec", codec_rows(vocab, local)), local)


def test_indicator_ends_the_target():
    vocab = tiny_vocab()
    rows = codec_rows(vocab, [[1, 2, 3, 4], [5, 6, 7, 8]])
    ind = np.array([[vocab.indicator("text"), PAD, PAD, PAD]])
    assert target_tokens(vocab, "codec", np.concatenate([rows, ind, rows])).shape == (2, 4)


@pytest.mark.parametrize("where", ["stream0", "stream2"])
def test_out_of_range_id_is_an_error(where):
    vocab = tiny_vocab()
    rows = codec_rows(vocab, [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]])
    if where == "stream0":
        rows[1, 0] = vocab.range("text").stream_range(0)[0]  # a text id inside a codec target
        match = r"frame 1 stream 0: id \d+ is outside tokenizer 'codec'"
    else:
        rows[2, 2] = vocab.range("codec").stream_range(3)[0]  # stream 3's id in stream 2
        match = r"frame 2 stream 2: id \d+ is outside tokenizer 'codec'"
    with pytest.raises(OutOfRangeToken, match=match):
        target_tokens(vocab, "codec", rows)


def test_special_id_in_stream0_is_an_error_not_a_cut():
    vocab = tiny_vocab()
    rows = codec_rows(vocab, [[1, 2, 3, 4], [5, 6, 7, 8]])
    rows[1, 0] = SOS_EOS
    with pytest.raises(OutOfRangeToken, match="frame 1 stream 0"):
        target_tokens(vocab, "codec", rows)


def test_non_pad_in_a_stream_the_target_lacks_is_an_error():
    vocab = tiny_vocab()
    lo = vocab.range("text").stream_range(0)[0]
    rows = np.array([[lo, PAD, PAD, PAD], [lo + 1, PAD, lo, PAD]])
    with pytest.raises(OutOfRangeToken, match="frame 1 stream 2"):
        target_tokens(vocab, "text", rows)
