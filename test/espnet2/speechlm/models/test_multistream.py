import pytest
import torch
import torch.nn.functional as F
from lm_testkit import TINY_BODY, tiny_model, toy_tts_batch, train_until_memorised

from espnet2.speechlm.inference import ModalityTable, SearchConfig
from espnet2.speechlm.models import build_speechlm, load_pretrained, save_pretrained
from espnet2.speechlm.models.multistream import MULTISTREAM_LMS


@pytest.mark.parametrize("arch", ["delay", "parallel"])
def test_loss_matches_hand_computation(arch, vocab):
    model = tiny_model(arch, vocab).eval()
    seq, weight, lengths, _, _ = toy_tts_batch(vocab, n=2)
    weight = weight * torch.rand(weight.shape)  # non-uniform weights
    loss, stats, wsum = model(seq, weight, lengths)
    # hand version: full logits for every row, explicit loops over (b, t, k)
    rows = model.pattern.build(seq, fill=0)
    wrows = model.pattern.build(weight, fill=0.0)
    with torch.no_grad():
        h = model.body(model.embed_rows(rows[:, :-1]))
    num, den, hits = 0.0, 0.0, 0.0
    for b in range(rows.shape[0]):
        for t in range(rows.shape[1] - 1):
            for k in range(rows.shape[2]):
                w = float(wrows[b, t + 1, k])
                if w > 0:
                    logits = model.head_logits(h[b, t], k).detach()
                    num += w * float(F.cross_entropy(logits[None], rows[b, t + 1, k][None]))
                    hits += w * float(logits.argmax() == rows[b, t + 1, k])
                    den += w
    assert abs(float(wsum) - float(weight.sum())) < 1e-4  # frame 0 (task) has weight 0
    assert abs(den - float(wsum)) < 1e-4
    assert abs(float(loss.detach()) - num / den) < 1e-5
    assert abs(float(stats["acc"]) - hits / den) < 1e-6
    assert int(stats["n_tokens"]) == int((weight > 0).sum())


@pytest.mark.parametrize("arch", ["delay", "parallel", "multiscale", "valle"])
def test_memorises_toy_tts(arch, vocab):
    """A tiny model learns 4 text->codec pairs, then greedy decoding reproduces them."""
    model = tiny_model(arch, vocab)
    batch = toy_tts_batch(vocab)
    stats = train_until_memorised(model, batch)
    assert stats["acc"] == 1.0
    seq, _, _, prefix_lengths, targets = batch
    out = model.generate(seq, prefix_lengths, SearchConfig(method="greedy", max_len_ratio=3),
                         ModalityTable.from_vocab(vocab))
    for hyps, target in zip(out, targets):
        assert torch.equal(hyps[0], target)


def test_shared_head_trains(vocab):
    model = tiny_model("delay", vocab, shared_head=True)
    assert not hasattr(model, "heads")
    stats = train_until_memorised(model, toy_tts_batch(vocab, n=2), max_steps=150)
    assert stats["acc"] > 0.9


def test_all_architectures_registered():
    for name in ["delay", "parallel", "multiscale", "valle"]:
        assert name in MULTISTREAM_LMS


def test_unknown_names_list_known(vocab):
    with pytest.raises(KeyError, match="delay"):
        build_speechlm("nope", "builtin", TINY_BODY, vocab.size, 4)


def test_save_load_round_trip(tmp_path, vocab):
    model = tiny_model("delay", vocab, shared_head=False).eval()
    save_pretrained(model, tmp_path / "ckpt", {"vocab": vocab.to_dict()})
    assert not list((tmp_path / "ckpt").glob("*.pt")) and not list((tmp_path / "ckpt").glob("*.bin"))
    loaded = load_pretrained(tmp_path / "ckpt").eval()
    seq, weight, lengths, _, _ = toy_tts_batch(vocab, n=2)
    assert torch.allclose(model(seq, weight, lengths)[0], loaded(seq, weight, lengths)[0])
    assert loaded.extra_config["vocab"]["size"] == vocab.size
    assert loaded.build_config == model.build_config


def test_multiscale_local_cache_matches_recompute(vocab):
    """The local Transformer's per-frame KV cache gives the same stream logits, also after a reorder."""
    from espnet2.speechlm.models.multistream.multiscale import LocalFrame

    model = tiny_model("multiscale", vocab).eval()
    h = torch.randn(3, TINY_BODY["d_model"])
    prev = torch.randint(300, 400, (3, model.n_streams))
    fast, slow = LocalFrame(model, h, use_cache=True), LocalFrame(model, h)
    idx = torch.tensor([2, 2, 0])  # beam-style reorder with a duplicate, after stream 0
    with torch.no_grad():
        for k in range(model.n_streams):
            assert torch.allclose(fast.stream_logits(k, prev), slow.stream_logits(k, prev), atol=1e-5)
            if k == 0:
                fast, slow, prev = fast.select(idx), slow.select(idx), prev[idx]
        with pytest.raises(RuntimeError):
            fast.stream_logits(1, prev)  # already in the cache
        skip = LocalFrame(model, h, use_cache=True)  # stream 3 first: positions 0..3 fed in one chunk
        assert torch.allclose(skip.stream_logits(3, prev), LocalFrame(model, h).stream_logits(3, prev), atol=1e-5)
