import math

import pytest
import torch
from decode_testkit import prompts, random_model

from espnet2.speechlm.inference import ModalityTable, SearchConfig
from espnet2.speechlm.vocab import PAD, SOS_EOS

ARCHS = ["delay", "parallel", "multiscale", "valle"]


def _same(a, b):
    return len(a) == len(b) and all(
        len(x) == len(y) and all(torch.equal(p, q) for p, q in zip(x, y)) for x, y in zip(a, b)
    )


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("method", ["greedy", "top_k", "beam"])
def test_cached_equals_uncached(arch, method, vocab):
    model = random_model(arch, vocab)
    prefix, lengths = prompts(vocab)
    table = ModalityTable.from_vocab(vocab)
    cfg = SearchConfig(method=method, beam_size=3, nbest=2, max_len_ratio=2.0, temperature=1.5)
    cached = model.generate(prefix, lengths, cfg, table)
    uncached = model.generate(prefix, lengths, cfg, table, use_cache=False)
    assert _same(cached, uncached)
    assert all(len(h) == 2 for h in cached)


@pytest.mark.parametrize("arch", ARCHS)
def test_beam_one_equals_greedy(arch, vocab):
    model = random_model(arch, vocab, seed=1)
    prefix, lengths = prompts(vocab)
    table = ModalityTable.from_vocab(vocab)
    greedy = model.generate(prefix, lengths, SearchConfig(method="greedy", max_len_ratio=3.0), table)
    beam = model.generate(prefix, lengths, SearchConfig(method="beam", beam_size=1, max_len_ratio=3.0), table)
    assert _same(greedy, beam)


@pytest.mark.parametrize("arch", ARCHS)
def test_batch_equals_one_by_one(arch, vocab):
    """Left-padding + per-row positions: batching does not change greedy output."""
    model = random_model(arch, vocab, seed=2)
    prefix, lengths = prompts(vocab)
    table = ModalityTable.from_vocab(vocab)
    cfg = SearchConfig(method="greedy", max_len_ratio=2.0)
    batched = model.generate(prefix, lengths, cfg, table)
    for b in range(len(lengths)):
        alone = model.generate(prefix[b: b + 1, : lengths[b]], lengths[b: b + 1], cfg, table)
        assert _same([batched[b]], alone)


def _check_modalities(vocab, prefix_last_indicator: int, frames: torch.Tensor):
    """Walk the generated frames with the masking rules, from the prompt's opened tokenizer."""
    current = vocab.range_of_indicator(prefix_last_indicator)
    indicators = set(vocab.indicators.values())
    for frame in frames.tolist():
        s0 = frame[0]
        assert s0 != SOS_EOS, "eos must not appear inside a continuation"
        if s0 in indicators:
            current = vocab.range_of_indicator(s0)
            assert all(t == PAD for t in frame[1:])
            continue
        lo, hi = current.stream_range(0)
        assert lo <= s0 < hi
        for k, t in enumerate(frame[1:], start=1):
            if k < current.n_streams:
                lo, hi = current.stream_range(k)
                assert lo <= t < hi, (k, t, current)
            else:
                assert t == PAD


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("target", ["codec", "text"])
def test_random_model_stays_in_modality(arch, target, vocab):
    model = random_model(arch, vocab, seed=3)
    prefix, lengths = prompts(vocab, target=target)
    table = ModalityTable.from_vocab(vocab)
    n_switches = 0
    for method in ["top_k", "top_p", "beam"]:
        cfg = SearchConfig(method=method, top_k=10_000, top_p=1.0, temperature=3.0, nbest=3, beam_size=3,
                           max_len_ratio=3.0, seed=7)
        for hyps in model.generate(prefix, lengths, cfg, table):
            for frames in hyps:
                _check_modalities(vocab, vocab.indicator(target), frames)
                n_switches += sum(int(t) in vocab.indicators.values() for t in frames[:, 0])
    assert n_switches > 0  # a hot random model does switch modality, and stays legal doing so


@pytest.mark.parametrize("arch", ARCHS)
def test_length_limits(arch, vocab):
    model = random_model(arch, vocab, seed=4)
    prefix, lengths = prompts(vocab)
    table = ModalityTable.from_vocab(vocab)
    # eos masked for ever (min > max) -> every output has exactly max_new frames
    cfg = SearchConfig(method="top_k", temperature=2.0, min_len_ratio=100, max_len_ratio=1.5, max_new_tokens=9)
    for L, hyps in zip(lengths.tolist(), model.generate(prefix, lengths, cfg, table)):
        assert hyps[0].shape[0] == min(math.floor(1.5 * L), 9)
    cfg = SearchConfig(method="top_k", temperature=2.0, min_len_ratio=1.0, max_len_ratio=4.0, nbest=4)
    for L, hyps in zip(lengths.tolist(), model.generate(prefix, lengths, cfg, table)):
        assert all(L <= h.shape[0] <= 4 * L for h in hyps)


def test_sampling_is_seeded(vocab):
    model = random_model("delay", vocab)
    prefix, lengths = prompts(vocab)
    table = ModalityTable.from_vocab(vocab)
    cfg = SearchConfig(method="top_p", temperature=2.0, top_p=0.95, max_len_ratio=2.0, seed=11)
    a = model.generate(prefix, lengths, cfg, table)
    assert _same(a, model.generate(prefix, lengths, cfg, table))
    cfg.seed = 12
    assert not _same(a, model.generate(prefix, lengths, cfg, table))


def test_beam_scores_sorted_and_nbest(vocab):
    model = random_model("delay", vocab, seed=5)
    prefix, lengths = prompts(vocab)
    out = model.generate(prefix, lengths, SearchConfig(method="beam", beam_size=4, nbest=3, max_len_ratio=2.0),
                         ModalityTable.from_vocab(vocab))
    assert [len(h) for h in out] == [3, 3, 3]
    for hyps in out:  # distinct hypotheses
        assert len({tuple(h.flatten().tolist()) for h in hyps}) == 3


@pytest.mark.parametrize("use_cache", [True, False])
def test_length_budget_is_clamped_to_the_model_context(vocab, use_cache):
    from espnet2.speechlm.models import build_speechlm
    from decode_testkit import TINY_BODY

    torch.manual_seed(0)
    model = build_speechlm("delay", "builtin", {**TINY_BODY, "max_len": 40}, vocab.size, vocab.max_streams).eval()
    prefix, lengths = prompts(vocab)  # longest prompt: 11 rows
    table = ModalityTable.from_vocab(vocab)
    D = max(model.pattern.shifts)
    room = 40 - 11 - D - 2
    # eos masked (min > max): every output runs to the limit, far beyond the context without the clamp
    cfg = SearchConfig(method="top_k", temperature=2.0, min_len_ratio=100, max_len_ratio=100, max_new_tokens=1000)
    out = model.generate(prefix, lengths, cfg, table, use_cache=use_cache)
    assert [h[0].shape[0] for h in out] == [room] * len(out)


def test_a_prompt_longer_than_the_context_is_a_clear_error(vocab):
    from espnet2.speechlm.models import build_speechlm
    from decode_testkit import TINY_BODY

    model = build_speechlm("delay", "builtin", {**TINY_BODY, "max_len": 12}, vocab.size, vocab.max_streams).eval()
    prefix, lengths = prompts(vocab)
    with pytest.raises(ValueError, match="no room to generate in the model's context of 12 positions"):
        model.generate(prefix, lengths, SearchConfig(method="greedy"), ModalityTable.from_vocab(vocab))
