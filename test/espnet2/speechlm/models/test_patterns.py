import pytest
import torch

from espnet2.speechlm.models.multistream.patterns import PATTERNS, custom_pattern


@pytest.mark.parametrize("name", ["delay", "parallel"])
def test_round_trip(name):
    pattern = PATTERNS.get(name)(4)
    frames = torch.randint(3, 100, (2, 7, 4))
    rows = pattern.build(frames, fill=0)
    assert rows.shape == (2, 7 + pattern.max_shift, 4)
    assert torch.equal(pattern.revert(rows), frames)


def test_delay_layout():
    pattern = PATTERNS.get("delay")(3)
    frames = torch.arange(1, 13).view(1, 4, 3)  # frame t, stream k -> 3t + k + 1
    rows = pattern.build(frames, fill=0)[0]
    for k in range(3):
        assert rows[:k, k].eq(0).all()  # before the stream starts
        assert torch.equal(rows[k: k + 4, k], frames[0, :, k])
        assert rows[k + 4:, k].eq(0).all()  # after it ends: extended, not truncated


def test_custom_pattern_round_trip():
    pattern = custom_pattern([0, 2, 2, 5])
    frames = torch.randint(0, 9, (3, 6, 4))
    assert torch.equal(pattern.revert(pattern.build(frames)), frames)


@pytest.mark.parametrize("name", ["delay", "parallel"])
def test_each_target_token_in_loss_exactly_once(name):
    """Targets the LM sees (rows[1:] where w > 0) are exactly the weighted frame tokens."""
    pattern = PATTERNS.get(name)(4)
    B, T, nq = 2, 6, 4
    frames = torch.arange(B * T * nq).view(B, T, nq) + 1  # every token unique
    weight = (torch.rand(B, T, nq) > 0.3).float()
    weight[:, 0, 0] = 0.0  # the first token (task id) is a condition and has no context
    if name == "parallel":
        weight[:, 0] = 0.0  # ... and so is its whole frame, which is read, never predicted
    rows, wrows = pattern.build(frames, fill=0), pattern.build(weight, fill=0.0)
    seen = rows[:, 1:][wrows[:, 1:] > 0]
    expected = frames[weight > 0]
    assert seen.numel() == expected.numel()  # no duplicate ...
    assert torch.equal(seen.sort().values, expected.sort().values)  # ... and none missing
