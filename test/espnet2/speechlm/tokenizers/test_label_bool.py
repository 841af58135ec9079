"""A boolean item (yes/no questions, VAD flags) is the `label` tokenizer with classes false/true."""

from __future__ import annotations

import numpy as np

from espnet2.speechlm.tokenizers import build_tokenizer, train_tokenizer


def test_bool_labels(tmp_path):
    tok = train_tokenizer("label", ["true", "false", "true\n", " false"], tmp_path)
    assert tok.token_strings() == ["<unk>", "false", "true"] and tok.vocab_size == 3
    items = ["true", "false", "True", "yes"]
    out = tok.tokenize(items)
    assert [int(o[0, 0]) for o in out] == [2, 1, 0, 0]  # case matters: normalise to true/false in data prep
    for x, y in zip(items, out):
        np.testing.assert_array_equal(tok.tokenize([x])[0], y)
    assert [tok.detokenize(o) for o in out[:2]] == ["true", "false"]
    assert build_tokenizer("label", tmp_path).token_strings() == tok.token_strings()
