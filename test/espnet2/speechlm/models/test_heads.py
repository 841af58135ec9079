"""Restricted per-stream heads: same loss (softmax over the ids a stream can hold), same decoding."""

import pytest
import torch
from lm_testkit import TINY_BODY, tiny_model, toy_tts_batch

from espnet2.speechlm.inference import ModalityTable, SearchConfig
from espnet2.speechlm.models import build_speechlm, load_pretrained, save_pretrained, vocab_build_args
from espnet2.speechlm.models.heads import merge_ranges, vocab_head_ranges
from espnet2.speechlm.vocab import N_SPECIAL, PAD, JointVocabulary

ARCHS = ["delay", "parallel", "multiscale", "valle"]


def _restricted_copy(full, arch, vocab, **arch_conf):
    """A restricted-head model holding exactly `full`'s weights (head rows gathered)."""
    model = tiny_model(arch, vocab, head_ranges=vocab_head_ranges(vocab), **arch_conf)
    state = dict(full.state_dict())
    if not full.shared_head:
        for k in range(full.n_streams):
            state[f"heads.{k}.weight"] = state[f"heads.{k}.weight"][model.head_ids(k)]
    model.load_state_dict(state)
    return model


def _mask_outside_heads(full, restricted):
    """Make `full` score -inf outside each stream's head ids: the restricted model's softmax."""
    orig = full.head_logits
    outside = []
    for k in range(full.n_streams):
        o = torch.ones(full.vocab_size, dtype=torch.bool)
        o[restricted.head_ids(k)] = False
        outside.append(o)
    full.head_logits = lambda h, k: orig(h, k).masked_fill(outside[k], float("-inf"))


def test_vocab_head_ranges(vocab):
    text, codec = vocab.range("text"), vocab.range("codec")
    ranges = vocab_head_ranges(vocab)
    assert ranges[0] == [[0, codec.stream_range(0)[1]]]  # specials + text + codec stream 0, contiguous
    assert text.stream_range(0)[0] == N_SPECIAL
    for k in range(1, 4):
        assert ranges[k] == [[PAD, PAD + 1], list(codec.stream_range(k))]
    assert merge_ranges([[5, 9], [0, 2], [2, 3], [8, 12], [4, 4]]) == [[0, 3], [5, 12]]


@pytest.mark.parametrize("arch", ARCHS)
def test_same_loss_and_decoding_as_full_heads(arch, vocab):
    full = tiny_model(arch, vocab, seed=3).eval()
    model = _restricted_copy(full, arch, vocab).eval()
    sizes = [h.weight.shape[0] for h in model.heads]
    assert sizes == [vocab.range("codec").stream_range(0)[1]] + [33] * 3 and vocab.size == sizes[0] + 96
    seq, weight, lengths, prefix_lengths, _ = toy_tts_batch(vocab, n=3)
    weight = weight * torch.rand(weight.shape, generator=torch.Generator().manual_seed(0))
    table = ModalityTable.from_vocab(vocab)
    for method in ["greedy", "beam"]:  # masks keep both inside the head ids, so nothing can differ
        cfg = SearchConfig(method=method, beam_size=3, nbest=2, max_len_ratio=2.0)
        a, b = full.generate(seq, prefix_lengths, cfg, table), model.generate(seq, prefix_lengths, cfg, table)
        assert all(torch.equal(x, y) for hx, hy in zip(a, b) for x, y in zip(hx, hy))
    with torch.no_grad():
        loss, stats, wsum = model(seq, weight, lengths)
        _mask_outside_heads(full, model)
        loss_full, stats_full, wsum_full = full(seq, weight, lengths)
    assert torch.allclose(loss, loss_full, atol=1e-6) and float(wsum) == float(wsum_full)
    assert float(stats["acc"]) == float(stats_full["acc"])


def test_shared_head_restricted_equals_masked_full(vocab):
    full = tiny_model("delay", vocab, shared_head=True).eval()
    model = _restricted_copy(full, "delay", vocab, shared_head=True).eval()
    seq, weight, lengths, _, _ = toy_tts_batch(vocab, n=2)
    with torch.no_grad():
        loss = model(seq, weight, lengths)[0]
        _mask_outside_heads(full, model)
        assert torch.allclose(loss, full(seq, weight, lengths)[0], atol=1e-6)


def test_save_load_keeps_head_ranges(vocab, tmp_path):
    model = tiny_model("delay", vocab, head_ranges=vocab_head_ranges(vocab)).eval()
    save_pretrained(model, tmp_path / "m")
    loaded = load_pretrained(tmp_path / "m").eval()
    assert loaded.build_config["arch_conf"]["head_ranges"] == vocab_head_ranges(vocab)
    seq, weight, lengths, _, _ = toy_tts_batch(vocab, n=2)
    assert torch.equal(model(seq, weight, lengths)[0], loaded(seq, weight, lengths)[0])
    for k in range(4):
        assert torch.equal(model.head_ids(k), loaded.head_ids(k))
    assert not any("head_ids" in n or "head_index" in n for n in loaded.state_dict())  # derived, not saved


def test_vocab_build_args_defaults(vocab):
    assert vocab_build_args(vocab) == {"head_ranges": vocab_head_ranges(vocab)}
    assert vocab_build_args(vocab, restrict_heads=False) == {}


def test_errors(vocab):
    ranges = vocab_head_ranges(vocab)
    with pytest.raises(ValueError, match="3 streams"):
        tiny_model("delay", vocab, head_ranges=ranges[:3])
    with pytest.raises(ValueError, match="outside"):
        tiny_model("delay", vocab, head_ranges=ranges[:3] + [[[0, vocab.size + 1]]])
    with pytest.raises(ValueError, match="no ids"):
        tiny_model("delay", vocab, head_ranges=ranges[:3] + [[]])
    # a target the head cannot emit (codec stream-2 ids put in stream 1) is an error, not a silent skip
    model = tiny_model("parallel", vocab, head_ranges=ranges)
    seq, weight, lengths, prefix_lengths, _ = toy_tts_batch(vocab, n=2)
    bad = seq.clone()
    t = int((weight[0, :, 1] > 0).nonzero()[0])
    bad[0, t, 1] = vocab.range("codec").stream_range(2)[0]
    with pytest.raises(ValueError, match="stream 1: target id"):
        model(bad, weight, lengths)
    # heads that cannot emit what the modality table allows (PAD on stream 1) are refused at decoding
    no_pad = tiny_model("delay", vocab, head_ranges=ranges[:1] + [[list(vocab.range("codec").stream_range(k))]
                                                                  for k in range(1, 4)])
    with pytest.raises(ValueError, match="stream 1 may emit ids \\[0\\]"):
        no_pad.generate(seq, prefix_lengths, SearchConfig(max_len_ratio=1.0), ModalityTable.from_vocab(vocab))


def test_mixed_stream_counts_restricted_decoding_stays_legal():
    """text (1 stream), ssl (2), codec (4): stream 2/3 heads hold only codec ids + PAD; sampling stays legal."""
    v = JointVocabulary()
    v.add_task("tts")
    v.add_tokenizer("text", "x", 20, 1)
    v.add_tokenizer("ssl", "s", 16, 2)
    v.add_tokenizer("codec", "y", 16, 4)
    ranges = vocab_head_ranges(v)
    assert ranges[1] == [[PAD, PAD + 1], list(v.range("ssl").stream_range(1)), list(v.range("codec").stream_range(1))]
    assert ranges[2] == [[PAD, PAD + 1], list(v.range("codec").stream_range(2))]
    torch.manual_seed(0)
    model = build_speechlm("delay", "builtin", dict(TINY_BODY, d_model=32, n_layer=1), v.size, 4,
                           head_ranges=ranges).eval()
    lo, hi = v.range("text").stream_range(0)
    prefix = torch.full((2, 6, 4), PAD)
    prefix[:, 0, 0], prefix[:, 1, 0] = v.task("tts"), v.indicator("text")
    prefix[:, 2:5, 0] = torch.randint(lo, hi, (2, 3))
    prefix[0, 5, 0], prefix[1, 5, 0] = v.indicator("ssl"), v.indicator("codec")
    cfg = SearchConfig(method="top_k", top_k=1000, temperature=3.0, max_len_ratio=3.0, nbest=2, seed=1)
    for hyps, target in zip(model.generate(prefix, torch.tensor([6, 6]), cfg, ModalityTable.from_vocab(v)),
                            ["ssl", "codec"]):
        for frames in hyps:
            current = v.range(target)
            for frame in frames.tolist():
                if frame[0] in v.indicators.values():
                    current = v.range_of_indicator(frame[0])
                    assert frame[1:] == [PAD] * 3
                    continue
                assert current.stream_range(0)[0] <= frame[0] < current.stream_range(0)[1]
                for k, tok in enumerate(frame[1:], start=1):
                    lo_k, hi_k = current.stream_range(k) if k < current.n_streams else (PAD, PAD + 1)
                    assert lo_k <= tok < hi_k


def test_speechlm_train_builds_restricted_heads_by_default(vocab):
    from espnet2.bin.speechlm_train import build_model
    from espnet2.speechlm.train.config import load_config

    model = build_model(load_config(None, {"model.body_conf": TINY_BODY}), vocab)
    assert model.restricted_heads and model.build_config["arch_conf"]["head_ranges"] == vocab_head_ranges(vocab)
    full = build_model(load_config(None, {"model.body_conf": TINY_BODY, "model.restrict_heads": False}), vocab)
    assert not full.restricted_heads and "head_ranges" not in full.build_config["arch_conf"]
    with pytest.raises(ValueError, match="text_init needs a body"):
        build_model(load_config(None, {"model.body_conf": TINY_BODY, "model.text_tokenizer": "text"}), vocab)


@pytest.mark.parametrize("conf", [dict(shared_head=True), dict(shared_head=True, restricted=True),
                                  dict(shared_head=False), dict(shared_head=False, restricted=True)])
def test_cpu_decoding_head_copies_match_the_heads(vocab, conf):
    """Under inference_mode on CPU the heads read an [in, out] copy (models.decode_weights);
    its logits must be the heads' own, and follow a weight update."""
    conf = dict(conf)
    if conf.pop("restricted", False):
        conf["head_ranges"] = vocab_head_ranges(vocab)
    model = tiny_model("delay", vocab, **conf).eval()
    h = torch.randn(3, model.body.d_model)
    for step in range(2):
        for k in range(model.n_streams):
            with torch.no_grad():
                ref = model.head_logits(h, k)
            with torch.inference_mode():
                got = model.head_logits(h, k)
            assert got.shape == ref.shape and torch.allclose(got, ref, atol=1e-5), (step, k)
        with torch.no_grad():  # e.g. a training step between two decodes
            for p in model.parameters_of_heads():
                p.add_(0.05)
