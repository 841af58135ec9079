import numpy as np
import pytest
import torch

from espnet2.speechlm.data.dataset import TokenBatchSampler, collate, parse_data_arg, sampling_ratios


def make(ratios=(1.0, 0.5), n=(200, 100), seed=3, **kw):
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 60, size=sum(n))
    sources = np.repeat(np.arange(len(n)), n)
    return TokenBatchSampler(lengths, sources, list(ratios), batch_tokens=240, seed=seed, **kw), lengths, sources


def test_batches_respect_token_budget_and_are_deterministic():
    s, lengths, _ = make()
    batches = list(s)
    assert all(max(lengths[b]) * len(b) <= 240 for b in batches)
    s2, _, _ = make()
    assert list(s2) == batches
    s.set_epoch(1)
    assert list(s) != batches


def test_ratios_are_honoured():
    counts = np.zeros(2)
    s, _, sources = make(ratios=(2.0, 0.3))
    for epoch in range(3):
        s.set_epoch(epoch)
        for b in s:
            counts += np.bincount(sources[b], minlength=2)
    assert counts[0] == 3 * 2 * 200
    assert abs(counts[1] - 3 * 0.3 * 100) <= 3


def test_resume_skips_consumed_batches_exactly():
    s, _, _ = make()
    s.set_epoch(2)
    full = list(s)
    s2, _, _ = make()
    s2.load_state_dict({"epoch": 2, "consumed": 5})
    assert list(s2) == full[5:]
    assert s2.state_dict() == {"epoch": 2, "consumed": len(full)}


def test_replicas_get_disjoint_equal_shares():
    shares = [list(make(num_replicas=2, rank=r)[0]) for r in range(2)]
    assert len(shares[0]) == len(shares[1])
    flat0 = {i for b in shares[0] for i in b}
    flat1 = {i for b in shares[1] for i in b}
    assert not flat0 & flat1


def test_validation_replicas_score_every_example_exactly_once():
    """every_batch: the batches left after an even split go round-robin, none is dropped."""
    whole = list(make(shuffle=False)[0])
    n_ranks = next(r for r in range(2, len(whole) + 2) if len(whole) % r)  # leaves a remainder
    shares = [list(make(shuffle=False, num_replicas=n_ranks, rank=r, every_batch=True)[0]) for r in range(n_ranks)]
    assert sorted(i for share in shares for b in share for i in b) == sorted(i for b in whole for i in b)
    assert max(map(len, shares)) - min(map(len, shares)) == 1
    even = [list(make(shuffle=False, num_replicas=n_ranks, rank=r)[0]) for r in range(n_ranks)]
    assert sum(map(len, even)) < len(whole)  # training keeps ranks in lock-step instead


def test_too_small_budget_is_a_clear_error():
    with pytest.raises(ValueError, match="smaller than the longest example"):
        TokenBatchSampler(np.array([10, 500]), np.array([0, 0]), [1.0], batch_tokens=100)


def test_collate_pads_with_zero_weight():
    ex = [{"id": "a", "task": "t", "seq": np.ones((3, 2), dtype=np.int64), "weight": np.ones((3, 2), np.float32)},
          {"id": "b", "task": "t", "seq": np.ones((5, 2), dtype=np.int64), "weight": np.ones((5, 2), np.float32)}]
    b = collate(ex)
    assert b["seqs"].shape == (2, 5, 2) and b["lengths"].tolist() == [3, 5]
    assert (b["seqs"][0, 3:] == 0).all() and (b["weights"][0, 3:] == 0).all()
    assert b["weights"].dtype == torch.float32


def test_data_arg_parsing():
    assert parse_data_arg("dump/asr/train/data.json:0.5") == ("dump/asr/train/data.json", 0.5)
    assert parse_data_arg("dump/asr/train/data.json") == ("dump/asr/train/data.json", None)


def test_sampling_ratios_explicit_wins_then_task_then_one():
    ratios = sampling_ratios(["asr", "textlm", "tts"], [None, None, 3.0], {"textlm": 0.25, "tts": 0.5})
    assert ratios == [1.0, 0.25, 3.0]


def test_sampling_ratios_reject_unknown_task_and_nonpositive():
    with pytest.raises(ValueError, match="audiolm"):
        sampling_ratios(["asr"], [None], {"audiolm": 0.5})
    with pytest.raises(ValueError, match="> 0"):
        sampling_ratios(["asr"], [None], {"asr": 0.0})


def test_curriculum_warmup_batches_come_first_then_the_usual_epoch():
    plain = list(make()[0])
    s, _, sources = make(warmup_sources=[1], warmup_batches=7)
    batches = list(s)
    assert len(batches) == len(plain) + 7
    assert all((sources[b] == 1).all() for b in batches[:7])
    assert batches[7:] == plain  # the epoch after the warm-up is the one without it
    s.set_epoch(1)
    later, p1 = list(s), make()[0]
    p1.set_epoch(1)
    assert later == list(p1)  # only epoch 0 is warmed up


def test_curriculum_warmup_longer_than_one_pass_and_resumes():
    s, _, sources = make(warmup_sources=[1], warmup_batches=60)  # source 1 fills far fewer batches a pass
    full = list(s)
    assert all((sources[b] == 1).all() for b in full[:60])
    one_pass = sum(1 for b in make()[0] if (sources[b] == 1).all())
    assert one_pass < 60
    s2, _, _ = make(warmup_sources=[1], warmup_batches=60)
    s2.load_state_dict({"epoch": 0, "consumed": 33})
    assert list(s2) == full[33:]


def test_curriculum_warmup_per_rank():
    for r in range(2):
        s, _, sources = make(num_replicas=2, rank=r, warmup_sources=[0], warmup_batches=5)
        batches = list(s)
        assert all((sources[b] == 0).all() for b in batches[:5])
        assert not all((sources[b] == 0).all() for b in batches[5:])


def test_curriculum_warmup_errors():
    with pytest.raises(ValueError, match="no example comes from the warm-up sources"):
        make(n=(200, 0), warmup_sources=[1], warmup_batches=3)
    with pytest.raises(ValueError, match=">= 0"):
        make(warmup_sources=[1], warmup_batches=-1)
