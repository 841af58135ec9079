"""Guided attention: which rows it aligns, that it trains the chosen head, and where it refuses."""

import pytest
import torch
from lm_testkit import TINY_BODY, tiny_model, toy_tts_batch

from espnet2.speechlm.models.guided_attention import GuidedAttention, GuidedAttentionConfig


def _guide(vocab, **kw):
    r = vocab.range("text")
    return {"source_ranges": [[r.offset, r.offset + r.size]], "layers": [1], "heads": [0], **kw}


def test_spans_are_the_text_rows_and_the_queries_after_them(vocab):
    model = tiny_model("delay", vocab, guided_attention=_guide(vocab))
    seq, weight, lengths = toy_tts_batch(vocab, n=2, n_text=3, n_frames=4)[:3]
    rows = model.pattern.build(seq, fill=0)
    wrows = model.pattern.build(weight, fill=0.0)
    spans = model.guide.spans(rows[:, :-1, 0], wrows[:, :-1, 0], wrows[:, 1:, 0])
    # example 0: <task> <text_start> x x x <codec_start> y y y y <eos>: text at rows 2..4, and
    # the rows that predict the codec indicator, the 4 frames and eos are rows 4..9
    src, qry = spans[0]
    assert src.tolist() == [2, 3, 4]
    assert qry.tolist() == [5, 6, 7, 8, 9]  # row 4 (the last phone) predicts the indicator: not after the text
    assert spans[1][0].tolist() == [2, 3, 4, 5]  # the ragged example has 4 text tokens


def test_examples_without_source_tokens_are_not_guided(vocab):
    codec = vocab.range("codec")
    model = tiny_model("delay", vocab, guided_attention={"source_ranges": [[codec.offset, codec.offset + 1]]})
    seq, weight, lengths = toy_tts_batch(vocab, n=2)[:3]
    seq[..., 0] = torch.where(seq[..., 0] == codec.offset, codec.offset + 1, seq[..., 0])  # no source id left
    model.train()
    loss, stats, _ = model(seq, weight, lengths)
    assert float(stats["guided_attn"]) == 0.0
    assert torch.allclose(loss, stats["loss"])


def test_the_loss_adds_to_training_only_and_eval_is_unchanged(vocab):
    plain = tiny_model("delay", vocab, seed=3)
    guided = tiny_model("delay", vocab, seed=3, guided_attention=_guide(vocab, weight=2.0))
    seq, weight, lengths = toy_tts_batch(vocab)[:3]
    plain.train(), guided.train()
    torch.manual_seed(0)
    loss_p, _, _ = plain(seq, weight, lengths)
    torch.manual_seed(0)
    loss_g, stats, _ = guided(seq, weight, lengths)
    g = float(stats["guided_attn"])
    assert 0.0 < g < 1.0
    assert float(loss_g.detach()) == pytest.approx(float(loss_p.detach()) + 2.0 * g, rel=1e-5)
    plain.eval(), guided.eval()
    with torch.no_grad():
        assert torch.equal(plain(seq, weight, lengths)[0], guided(seq, weight, lengths)[0])
    assert guided.state_dict().keys() == plain.state_dict().keys()  # no parameters of its own


def test_training_on_the_guided_loss_puts_the_head_on_the_diagonal(vocab):
    model = tiny_model("delay", vocab, guided_attention=_guide(vocab, weight=1.0, sigma=0.3))
    seq, weight, lengths = toy_tts_batch(vocab, n=4, n_text=6, n_frames=12)[:3]
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    first = None
    for _ in range(60):
        loss, stats, _ = model(seq, weight, lengths)
        first = float(stats["guided_attn"]) if first is None else first
        opt.zero_grad()
        (loss - stats["loss"]).backward()  # the guided term alone
        opt.step()
    assert first > 0.6  # an untrained head spreads over every earlier row
    assert float(stats["guided_attn"]) < 0.5 * first


def test_bad_settings_are_refused(vocab):
    with pytest.raises(ValueError, match="out of range"):
        tiny_model("delay", vocab, guided_attention=_guide(vocab, layers=[TINY_BODY["n_layer"]]))
    with pytest.raises(ValueError, match="sigma"):
        GuidedAttentionConfig(source_ranges=[[0, 4]], sigma=0.0)
    with pytest.raises(ValueError, match="source_ranges"):
        GuidedAttentionConfig(source_ranges=[])
    with pytest.raises(NotImplementedError, match="builtin body"):
        GuidedAttention(torch.nn.Linear(2, 2), GuidedAttentionConfig(source_ranges=[[0, 4]]))
    model = tiny_model("delay", vocab, guided_attention=_guide(vocab))
    model.body.grad_checkpointing = True
    model.train()
    with pytest.raises(ValueError, match="activation checkpointing"):
        model(*toy_tts_batch(vocab)[:3])
