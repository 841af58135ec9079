"""Batch helpers of the dataset module: `select_examples` (a sub-batch of some examples)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from espnet2.speechlm.data.dataset import collate, select_examples, side_inputs


def examples(n: int = 5, nq: int = 2) -> list:
    """Ragged examples; even ones carry side features of item `spk` (two placeholder frames)."""
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        T = 4 + i
        e = {"id": f"e{i}", "task": "tts", "seq": rng.integers(0, 9, (T, nq)),
             "weight": rng.random((T, nq)).astype(np.float32)}
        if i % 2 == 0:
            e["feats"] = {"spk": rng.standard_normal((2, 3)).astype(np.float32)}
            e["feat_pos"] = {"spk": np.array([1, T - 2])}
        out.append(e)
    return out


@pytest.mark.parametrize("rows", [[4, 0, 1], [1, 3], [2]])
def test_select_examples_equals_collating_those_examples(rows):
    ex = examples()
    sub = select_examples(collate(ex), rows)
    ref = collate([ex[r] for r in rows])
    for key in ("seqs", "weights", "lengths"):
        assert torch.equal(sub[key], ref[key]), key
    assert sub["seqs"].shape[1] == max(ex[r]["seq"].shape[0] for r in rows)  # cut to the longest selected
    if "feats" in ref:  # features in the new example order, positions renumbered to the new rows
        assert torch.equal(sub["feats"]["spk"], ref["feats"]["spk"])
        assert torch.equal(sub["feat_pos"]["spk"], ref["feat_pos"]["spk"])
    else:  # none of these examples has features: the item is there, empty
        assert sub["feats"]["spk"].shape == (0, 3) and sub["feat_pos"]["spk"].shape == (0, 2)
    assert "ids" not in sub and "tasks" not in sub


def test_select_examples_feature_rows_follow_the_examples():
    ex = examples()
    batch = collate(ex)
    sub = select_examples(batch, [4, 0])
    assert sub["feat_pos"]["spk"][:, 0].tolist() == [0, 0, 1, 1]
    torch.testing.assert_close(sub["feats"]["spk"], torch.from_numpy(np.concatenate(
        [ex[4]["feats"]["spk"], ex[0]["feats"]["spk"]])))
    # every feature row still points at a placeholder frame of its (new) example row
    b, t = sub["feat_pos"]["spk"].unbind(1)
    assert torch.equal(sub["seqs"][b, t], batch["seqs"][torch.tensor([4, 4, 0, 0]), t])
    assert torch.equal(side_inputs(batch, [4, 0])["feats"]["spk"], sub["feats"]["spk"])


def test_select_examples_without_side_features_has_none():
    ex = [e for e in examples() if "feats" not in e]
    sub = select_examples(collate(ex), [1, 0])
    assert set(sub) == {"seqs", "weights", "lengths"}


def test_select_examples_bad_rows_are_errors():
    batch = collate(examples())
    with pytest.raises(IndexError, match=r"example rows \[5\] out of range for a batch of 5"):
        select_examples(batch, [0, 5])
    with pytest.raises(IndexError, match=r"example rows \[-1\] out of range"):  # no silent wrap-around
        select_examples(batch, [-1])
    with pytest.raises(ValueError, match="no example rows"):
        select_examples(batch, [])
    with pytest.raises(IndexError, match="out of range"):  # side_inputs goes through it
        side_inputs(batch, [7])
