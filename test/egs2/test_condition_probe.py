"""local/condition_probe.py: the corrupted conditions are what the probe claims they are."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

PROBE = Path(__file__).resolve().parents[2] / "egs2" / "mini_en" / "speechlm1" / "local" / "condition_probe.py"


def _probe():
    spec = importlib.util.spec_from_file_location("mini_en_condition_probe", PROBE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_shuffled_keeps_the_phones_and_moves_them_constant_replaces_them():
    probe = _probe()
    g = torch.Generator().manual_seed(0)
    seq = torch.randint(0, 40, (3, 30, 2), generator=g)  # ids 10..19 play the phones
    is_phn = (seq[..., 0] >= 10) & (seq[..., 0] < 20)
    assert torch.equal(probe.corrupt(seq, 10, 20, "real"), seq)
    shuffled = probe.corrupt(seq, 10, 20, "shuffled")
    assert torch.equal(shuffled[~is_phn], seq[~is_phn])  # everything else, and stream 1, untouched
    assert torch.equal(shuffled[..., 1], seq[..., 1])
    for b in range(3):
        assert sorted(shuffled[b, is_phn[b], 0].tolist()) == sorted(seq[b, is_phn[b], 0].tolist())
    assert not torch.equal(shuffled, seq)
    constant = probe.corrupt(seq, 10, 20, "constant")
    assert bool((constant[..., 0][is_phn] == 10).all())
    assert torch.equal(constant[~is_phn], seq[~is_phn])
