"""History dropout: holes only in teacher-forced target rows of the chosen ids, in training only."""

import pytest
import torch
from lm_testkit import tiny_model, toy_tts_batch

from espnet2.speechlm.models.multistream.pattern_lm import HistoryDropout
from espnet2.speechlm.vocab import PAD


def _codec(vocab):
    r = vocab.range("codec")
    return [[r.offset, r.offset + r.size]]


def test_only_target_rows_of_the_chosen_ids_get_holes(vocab):
    seq, weight = toy_tts_batch(vocab, n=4, n_frames=30)[:2]
    torch.manual_seed(0)
    out = HistoryDropout(_codec(vocab), p=0.5)(seq, weight)
    changed = out != seq
    assert bool((out[changed] == PAD).all())
    assert bool((weight[changed] > 0).all())  # never a condition
    lo, hi = _codec(vocab)[0]
    assert bool(((seq[changed] >= lo) & (seq[changed] < hi)).all())  # never an indicator or eos
    frac = changed.any(-1).sum() / ((seq >= lo) & (seq < hi) & (weight > 0)).any(-1).sum()
    assert 0.3 < float(frac) < 0.7  # about p of the codec rows, whole rows at a time
    assert bool((~changed.any(-1) | changed.all(-1)).all())  # a codec row loses all its streams
    torch.manual_seed(0)
    assert torch.equal(HistoryDropout(_codec(vocab), p=0.0)(seq, weight), seq)


def test_training_changes_eval_does_not(vocab):
    plain = tiny_model("delay", vocab, seed=1)
    holes = tiny_model("delay", vocab, seed=1, history_dropout={"ranges": _codec(vocab), "p": 0.5})
    batch = toy_tts_batch(vocab, n_frames=20)[:3]
    plain.eval(), holes.eval()
    with torch.no_grad():
        assert torch.equal(plain(*batch)[0], holes(*batch)[0])
    plain.train(), holes.train()
    torch.manual_seed(0)
    assert not torch.equal(plain(*batch)[0], holes(*batch)[0])


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="p must be"):
        HistoryDropout([[0, 4]], p=1.0)
    with pytest.raises(ValueError, match="ranges"):
        HistoryDropout([], p=0.1)
