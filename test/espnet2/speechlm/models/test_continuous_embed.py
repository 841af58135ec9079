"""Continuous items in the model: projection of side features at placeholder frames, every
architecture, save / load, generation with a prompt's features, and the errors."""

from __future__ import annotations

import inspect

import pytest
import torch
from lm_testkit import TINY_BODY

from espnet2.speechlm.inference import ModalityTable, SearchConfig
from espnet2.speechlm.models import build_speechlm, load_pretrained, save_pretrained, vocab_build_args
from espnet2.speechlm.vocab import PAD, SOS_EOS, JointVocabulary

ARCHS = ["delay", "parallel", "multiscale", "valle"]
DIM = 6  # speaker embedding size


def spk_vocab() -> JointVocabulary:
    v = JointVocabulary()
    v.add_task("tts")
    v.add_tokenizer("text", "char", 20, 1)
    v.add_tokenizer("spk_embedding", "spk_embedding", 1, 1)  # one placeholder id
    v.add_tokenizer("codec", "mel_rvq", 16, 3)
    return v


def spk_model(arch: str, vocab: JointVocabulary, seed: int = 0, **conf):
    torch.manual_seed(seed)
    return build_speechlm(arch, "builtin", TINY_BODY, vocab.size, vocab.max_streams,
                          continuous={"spk_embedding": DIM}, **vocab_build_args(vocab), **conf)


def batch(vocab: JointVocabulary, with_spk=(True, False, True), n_frames: int = 3, seed: int = 0):
    """`<task> <text_start> x.. [<spk_start> P] <codec_start> y.. <eos>` per example (ragged).

    Returns seq, weight, lengths, prefix lengths (through <codec_start>), feats {spk: [M, DIM]},
    and the frame of each example's placeholder (-1 without one).
    """
    g = torch.Generator().manual_seed(seed)
    nq, text, codec = vocab.max_streams, vocab.range("text"), vocab.range("codec")
    P = vocab.range("spk_embedding").offset
    items, frames = [], []
    for b, spk in enumerate(with_spk):
        n_text = 2 + b
        col0 = [vocab.task("tts"), vocab.indicator("text")]
        col0 += torch.randint(0, text.codebook_size, (n_text,), generator=g).add(text.offset).tolist()
        frames.append(len(col0) + 1 if spk else -1)
        col0 += [vocab.indicator("spk_embedding"), P] if spk else []
        col0 += [vocab.indicator("codec")]
        y = torch.as_tensor(vocab.to_global("codec", torch.randint(0, codec.codebook_size, (n_frames, nq),
                                                                    generator=g)))
        seq = torch.full((len(col0) + n_frames + 1, nq), PAD)
        seq[: len(col0), 0] = torch.tensor(col0)
        seq[len(col0): len(col0) + n_frames] = y
        seq[-1, 0] = SOS_EOS
        w = torch.zeros(seq.shape)
        w[len(col0) - 1, 0] = 1.0
        w[len(col0):, :] = 1.0
        w[-1, 1:] = 0.0
        items.append((seq, w, len(col0)))
    T = max(len(s) for s, _, _ in items)
    seq, weight = torch.full((len(items), T, nq), PAD), torch.zeros(len(items), T, nq)
    for b, (s, w, _) in enumerate(items):
        seq[b, : len(s)], weight[b, : len(s)] = s, w
    lengths = torch.tensor([len(s) for s, _, _ in items])
    prefix_lengths = torch.tensor([p for _, _, p in items])
    feats = {"spk_embedding": torch.randn(sum(with_spk), DIM, generator=g)}
    return seq, weight, lengths, prefix_lengths, feats, frames


def forward(model, seq, weight, lengths, feats):
    """multiscale's forward takes no `feats` yet: its embed_rows reads them from side_features."""
    if "feats" in inspect.signature(model.forward).parameters:
        return model(seq, weight, lengths, feats=feats)
    with model.side_features(feats):
        return model(seq, weight, lengths)


def body_inputs(model, fn):
    """Inputs of every body (AR and, for valle, NAR) during fn()."""
    seen = []
    bodies = [model.body] + ([model.nar_body] if hasattr(model, "nar_body") else [])
    hooks = [b.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone())) for b in bodies]
    try:
        fn()
    finally:
        for h in hooks:
            h.remove()
    return seen


# --- building -----------------------------------------------------------------------------
def test_vocab_gives_placeholder_ids_and_config_gives_sizes():
    vocab = spk_vocab()
    args = vocab_build_args(vocab)
    assert args["continuous_ids"] == {"spk_embedding": vocab.range("spk_embedding").offset}
    model = spk_model("delay", vocab)
    proj = model.continuous_proj["spk_embedding"]
    assert (proj.in_features, proj.out_features) == (DIM, TINY_BODY["d_model"])
    assert abs(float(proj.weight.detach().std()) - 0.02) < 0.01 and float(proj.bias.detach().abs().max()) == 0.0
    assert model.build_config["continuous"] == {"spk_embedding": DIM}
    with pytest.raises(ValueError, match=r"continuous item\(s\) \['spk_embedding'\].*continuous: \{spk_embedding: "):
        build_speechlm("delay", "builtin", TINY_BODY, vocab.size, vocab.max_streams, **args)
    with pytest.raises(ValueError, match=r"\['llm'\] are not continuous items of the vocabulary"):
        build_speechlm("delay", "builtin", TINY_BODY, vocab.size, vocab.max_streams, continuous={"llm": 8})


def test_without_continuous_items_nothing_changes():
    v = JointVocabulary()
    v.add_task("tts")
    v.add_tokenizer("text", "char", 20, 1)
    v.add_tokenizer("codec", "mel_rvq", 16, 3)
    assert "continuous_ids" not in vocab_build_args(v)
    torch.manual_seed(0)
    model = build_speechlm("delay", "builtin", TINY_BODY, v.size, v.max_streams, **vocab_build_args(v))
    assert not any("continuous" in k for k in model.state_dict()) and "continuous" not in model.build_config
    rows = torch.randint(0, v.size, (2, 5, 3))
    assert torch.equal(model.embed_rows(rows), model.embed(rows).sum(2))
    with pytest.raises(ValueError, match="the model has no continuous items"):
        model.embed_rows(rows, {"spk_embedding": torch.zeros(1, DIM)})


def test_save_load_round_trip(tmp_path):
    vocab = spk_vocab()
    model = spk_model("delay", vocab).eval()
    seq, weight, lengths, _, feats, _ = batch(vocab)
    save_pretrained(model, tmp_path / "m")
    again = load_pretrained(tmp_path / "m").eval()
    assert torch.equal(again.continuous_proj["spk_embedding"].weight, model.continuous_proj["spk_embedding"].weight)
    assert again.continuous_ids == model.continuous_ids
    with torch.no_grad():
        assert float(again(seq, weight, lengths, feats)[0]) == float(model(seq, weight, lengths, feats)[0])


# --- where the features go ----------------------------------------------------------------------
def test_placeholder_row_becomes_the_projection():
    vocab = spk_vocab()
    model = spk_model("delay", vocab)
    seq, _, _, _, feats, frames = batch(vocab)
    rows = model.pattern.build(seq, fill=PAD)  # delay: stream k shifted by k rows, stream 0 unshifted
    x = model.embed_rows(rows, feats)
    plain = model.embed(rows).sum(2)
    proj = model.continuous_proj["spk_embedding"](feats["spk_embedding"])
    P = vocab.range("spk_embedding").offset
    m = 0
    for b, t in enumerate(frames):
        keep = torch.ones(rows.shape[1], dtype=torch.bool)
        if t >= 0:
            assert rows[b, t, 0] == P  # the placeholder frame is row t
            other = model.embed(rows[b, t, 1:]).sum(0)  # delayed streams of earlier frames stay
            torch.testing.assert_close(x[b, t], proj[m] + other)
            keep[t] = False
            m += 1
        torch.testing.assert_close(x[b, keep], plain[b, keep])


def test_hidden_streams_drop_out_but_the_features_stay():
    """embed_rows(..., visible): hidden tokens add nothing, a placeholder's features always do."""
    vocab = spk_vocab()
    model = spk_model("valle", vocab)
    seq, _, _, _, feats, frames = batch(vocab)
    visible = torch.rand(seq.shape, generator=torch.Generator().manual_seed(1)) > 0.5  # [B, T, nq]
    b = [i for i, t in enumerate(frames) if t >= 0]
    t = [frames[i] for i in b]
    visible[b, t, 0] = False  # hiding the placeholder itself does not hide its features
    x = model.embed_rows(seq, feats, visible)
    plain = (model.embed(seq) * visible[..., None]).sum(2)
    proj = model.continuous_proj["spk_embedding"](feats["spk_embedding"])
    torch.testing.assert_close(x[b, t], proj + plain[b, t])
    keep = torch.ones(seq.shape[:2], dtype=torch.bool)
    keep[b, t] = False
    torch.testing.assert_close(x[keep], plain[keep])
    assert torch.equal(model.embed_rows(seq, feats, torch.ones_like(visible)), model.embed_rows(seq, feats))


@pytest.mark.parametrize("arch", ARCHS)
def test_features_reach_exactly_the_placeholder_frame(arch):
    """Changing one example's feature changes every body's input at that example's placeholder
    frame only, and changes the loss; the projection gets a gradient."""
    vocab = spk_vocab()
    model = spk_model(arch, vocab).eval()
    seq, weight, lengths, _, feats, frames = batch(vocab)
    other = {"spk_embedding": feats["spk_embedding"].clone()}
    other["spk_embedding"][1] += 1.0  # the second example with a speaker: batch row 2
    out = {}
    a = body_inputs(model, lambda: out.update(a=forward(model, seq, weight, lengths, feats)))
    b = body_inputs(model, lambda: out.update(b=forward(model, seq, weight, lengths, other)))
    assert len(a) == len(b) >= 1
    for xa, xb in zip(a, b):
        diff = (xa - xb).abs().sum(-1) > 0  # [B, T]
        assert diff.nonzero().tolist() == [[2, frames[2]]], arch
    assert float(out["a"][0].detach()) != float(out["b"][0].detach())
    model.train()
    loss = forward(model, seq, weight, lengths, feats)[0]
    loss.backward()
    assert float(model.continuous_proj["spk_embedding"].weight.grad.abs().sum()) > 0


@pytest.mark.parametrize("arch", ARCHS)
def test_mismatched_side_features_are_errors(arch):
    vocab = spk_vocab()
    model = spk_model(arch, vocab)
    seq, weight, lengths, _, feats, _ = batch(vocab)
    with pytest.raises(ValueError, match=r"'spk_embedding': 2 placeholder frame\(s\) in the input but 0 feature"):
        forward(model, seq, weight, lengths, None)
    with pytest.raises(ValueError, match=r"2 placeholder frame\(s\) in the input but 1 feature"):
        forward(model, seq, weight, lengths, {"spk_embedding": feats["spk_embedding"][:1]})
    with pytest.raises(ValueError, match=r"expects \[M, 6\]"):
        forward(model, seq, weight, lengths, {"spk_embedding": torch.zeros(2, DIM + 1)})
    with pytest.raises(ValueError, match=r"side features for \['llm'\]: not continuous items"):
        forward(model, seq, weight, lengths, {**feats, "llm": torch.zeros(1, 3)})


# --- generation ---------------------------------------------------------------------------------
def _same(a, b):
    return len(a) == len(b) and all(len(x) == len(y) and all(torch.equal(p, q) for p, q in zip(x, y))
                                    for x, y in zip(a, b))


@pytest.mark.parametrize("arch", ARCHS)
def test_generate_with_prompt_features(arch):
    vocab = spk_vocab()
    model = spk_model(arch, vocab, seed=1)
    seq, _, _, prefix_lengths, feats, frames = batch(vocab)
    prefix = seq[:, : int(prefix_lengths.max())].masked_fill(
        torch.arange(seq.shape[1])[: int(prefix_lengths.max())][None, :, None] >= prefix_lengths[:, None, None], PAD)
    table = ModalityTable.from_vocab(vocab).final_target(vocab, "codec")
    for cfg in (SearchConfig(method="greedy", max_len_ratio=1.0), SearchConfig(method="beam", beam_size=2, nbest=2,
                                                                               max_len_ratio=1.0)):
        cached = model.generate(prefix, prefix_lengths, cfg, table, feats=feats)
        assert _same(cached, model.generate(prefix, prefix_lengths, cfg, table, use_cache=False, feats=feats))
        assert all(len(h) == cfg.nbest for h in cached)
    with pytest.raises(ValueError, match="placeholder frame"):
        model.generate(prefix, prefix_lengths, SearchConfig(method="greedy"), table)
    with pytest.raises(ValueError, match=r"side features for \['llm'\]"):
        model.generate(prefix, prefix_lengths, SearchConfig(method="greedy"), table, use_cache=False,
                       feats={**feats, "llm": torch.zeros(1, 3)})
    # the features reach the prompt call (left-padded prompts), at the placeholder frames only
    def prompt_input(f):
        cfg = SearchConfig(method="greedy", max_len_ratio=0.2)
        return body_inputs(model, lambda: model.generate(prefix, prefix_lengths, cfg, table, feats=f))[0]

    a, b = prompt_input(feats), prompt_input({"spk_embedding": feats["spk_embedding"] + 1.0})
    pad = int(prefix_lengths.max()) - prefix_lengths  # left padding of each prompt
    diff = ((a - b).abs().sum(-1) > 0).nonzero().tolist()
    assert diff == [[e, int(pad[e]) + frames[e]] for e in (0, 2)]  # example 1 has no speaker item


@pytest.mark.parametrize("arch", ["delay", "valle"])
def test_placeholder_and_its_indicator_are_never_generated(arch):
    vocab = spk_vocab()
    model = spk_model(arch, vocab, seed=2)
    P, ind = vocab.range("spk_embedding").offset, vocab.indicator("spk_embedding")
    table = ModalityTable.from_vocab(vocab)
    forbidden = model.forbid_continuous(table)
    assert table.stream0[:, [P, ind]].any() and not forbidden.stream0[:, [P, ind]].any()
    changed = table.stream0 != forbidden.stream0
    changed[:, [P, ind]] = False
    assert not changed.any() and forbidden.streamk is table.streamk
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # make the placeholder and its indicator the favourites of head 0
        w0, ids0 = model.heads[0].weight, model.head_ids(0)
        for tok in (P, ind):
            col = int((ids0 == tok).nonzero()) if ids0 is not None else tok
            w0[col] = 5.0 * w0.abs().max() * torch.randn(w0.shape[1], generator=g).sign()
    seq, _, _, prefix_lengths, feats, _ = batch(vocab)
    prefix = seq[:, : int(prefix_lengths.max())].clone()
    for b, L in enumerate(prefix_lengths.tolist()):
        prefix[b, L:] = PAD
    cfg = SearchConfig(method="top_k", top_k=50, temperature=3.0, max_len_ratio=1.5, nbest=3, seed=0)
    for hyps in model.generate(prefix, prefix_lengths, cfg, table, feats=feats):  # no final_target: free switching
        for h in hyps:
            assert not torch.isin(h, torch.tensor([P, ind])).any()
