import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from lm_testkit import TINY_BODY, tiny_model, toy_tts_batch, train_until_memorised

from espnet2.speechlm.inference import ModalityTable, SearchConfig
from espnet2.speechlm.models import build_speechlm, load_pretrained, save_pretrained
from espnet2.speechlm.models.multistream.valle import ValleLM
from espnet2.speechlm.vocab import PAD, SOS_EOS, JointVocabulary


def test_loss_matches_hand_computation(vocab):
    """Eval mode scores every stream: AR on stream 0 (shifted), NAR stage k on stream k (aligned)."""
    model = tiny_model("valle", vocab).eval()
    seq, weight, lengths, _, _ = toy_tts_batch(vocab, n=2)
    weight = weight * torch.rand(weight.shape)
    loss, stats, wsum = model(seq, weight, lengths)
    B, T, nq = seq.shape
    valid = torch.arange(T)[None] < lengths[:, None]
    with torch.no_grad():
        h_ar = model.body(model.embed(seq[:, :-1, 0]))  # [B, T-1, D]
        h_nar = {}
        for k in range(1, nq):  # explicit visibility: hide target tokens of streams >= k
            x = torch.zeros(B, T, model.body.d_model)
            for j in range(nq):
                hide = (weight[..., j] > 0) & (j >= k)
                x += model.embed(seq[..., j]) * (~hide)[..., None]
            h_nar[k] = model.nar_body(x + model.stream_embed.weight[k], key_valid=valid)
    num = den = 0.0
    for b in range(B):
        for t in range(1, T):
            for k in range(nq):
                w = float(weight[b, t, k])
                if w > 0:
                    h = h_ar[b, t - 1] if k == 0 else h_nar[k][b, t]
                    num += w * float(F.cross_entropy(model.head_logits(h, k).detach()[None], seq[b, t, k][None]))
                    den += w
    assert abs(float(wsum) - float(weight.sum())) < 1e-4  # every weighted token is scored once
    assert abs(den - float(wsum)) < 1e-4
    assert abs(float(loss.detach()) - num / den) < 1e-5


def test_sample_mode_trains_one_nar_stream_per_example(vocab):
    model = tiny_model("valle", vocab).train()
    seq, weight, lengths, _, _ = toy_tts_batch(vocab, n=3)
    _, stats, wsum = model(seq, weight, lengths)
    ar = float(weight[..., 0].sum())
    per_stream = float(weight[:, :, 1].sum(dim=1)[0])  # 4 codec frames per example, weight 1
    assert float(wsum) == ar + 3 * per_stream
    assert int(stats["n_tokens"]) == int(float(wsum))
    model.eval()
    assert float(model(seq, weight, lengths)[2]) == float(weight.sum())  # eval: all streams


def test_nar_hides_targets_and_is_bidirectional(vocab):
    model = tiny_model("valle", vocab).eval()
    seq, weight, lengths, _, _ = toy_tts_batch(vocab, n=1)
    T = seq.shape[1]
    is_target, valid = weight > 0, torch.ones(1, T, dtype=torch.bool)
    k = torch.tensor([2])
    base = model.nar_hidden(seq, is_target, k, valid)
    t_last = int(lengths[0]) - 2  # last codec frame
    cb = vocab.range("codec").codebook_size

    def bump(j: int) -> torch.Tensor:  # another token of the same stream
        out = seq.clone()
        lo = vocab.range("codec").stream_range(j)[0]
        out[0, t_last, j] = (out[0, t_last, j] - lo + 1) % cb + lo
        return out

    # streams >= k of a target frame are hidden from stage k
    assert torch.allclose(model.nar_hidden(bump(2), is_target, k, valid), base)
    assert torch.allclose(model.nar_hidden(bump(3), is_target, k, valid), base)
    changed = bump(1)  # a stream < k of the *last* frame changes the first frames too
    assert not torch.allclose(model.nar_hidden(changed, is_target, k, valid)[0, 0], base[0, 0])


def test_memorises_then_regenerates_after_save_load(vocab, tmp_path):
    """A tiny Vall-E learns 4 text->codec pairs; the reloaded checkpoint regenerates them exactly."""
    model = tiny_model("valle", vocab, nar_streams="all")
    batch = toy_tts_batch(vocab)
    assert train_until_memorised(model, batch, lr=5e-3)["acc"] == 1.0
    seq, weight, lengths, prefix_lengths, targets = batch
    save_pretrained(model, tmp_path / "valle", {"vocab": vocab.to_dict()})
    loaded = load_pretrained(tmp_path / "valle").eval()
    model.eval()
    assert torch.allclose(loaded(seq, weight, lengths)[0], model(seq, weight, lengths)[0], atol=1e-6)
    assert loaded.build_config["arch_conf"] == {"nar_streams": "all"}
    table = ModalityTable.from_vocab(vocab)
    cfg = SearchConfig(method="greedy", max_len_ratio=3)
    for m in (model, loaded):
        for hyps, target in zip(m.generate(seq, prefix_lengths, cfg, table), targets):
            assert torch.equal(hyps[0], target)


def _same(a, b):
    return len(a) == len(b) and all(
        len(x) == len(y) and all(torch.equal(p, q) for p, q in zip(x, y)) for x, y in zip(a, b))


def _prompts(vocab: JointVocabulary, target: str, text_lens=(4, 1, 6), seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    lo, hi = vocab.range("text").stream_range(0)
    lengths = torch.tensor([n + 3 for n in text_lens])
    prefix = torch.full((len(text_lens), int(lengths.max()), vocab.max_streams), PAD)
    for b, n in enumerate(text_lens):
        prefix[b, 0, 0], prefix[b, 1, 0] = vocab.task("tts"), vocab.indicator("text")
        prefix[b, 2: 2 + n, 0] = torch.randint(lo, hi, (n,), generator=g)
        prefix[b, 2 + n, 0] = vocab.indicator(target)
    return prefix, lengths


@pytest.mark.parametrize("method", ["greedy", "top_p", "beam"])
def test_cached_equals_uncached(method, vocab):
    torch.manual_seed(0)
    model = build_speechlm("valle", "builtin", dict(TINY_BODY, d_model=32, n_layer=1), vocab.size, 4).eval()
    prefix, lengths = _prompts(vocab, "codec")
    cfg = SearchConfig(method=method, beam_size=3, nbest=2, max_len_ratio=2.0, temperature=1.5)
    table = ModalityTable.from_vocab(vocab)
    cached = model.generate(prefix, lengths, cfg, table)
    assert _same(cached, model.generate(prefix, lengths, cfg, table, use_cache=False))
    assert all(len(h) == 2 for h in cached)


def test_random_model_masking_with_mixed_stream_counts():
    """Hot sampling over text (1 stream), ssl (2) and codec (4): stream k of each frame stays in
    the range of its stream-0 tokenizer, and PAD where that tokenizer has <= k streams."""
    v = JointVocabulary()
    v.add_task("tts")
    v.add_tokenizer("text", "x", 20, 1)
    v.add_tokenizer("ssl", "s", 16, 2)
    v.add_tokenizer("codec", "y", 16, 4)
    torch.manual_seed(3)
    model = build_speechlm("valle", "builtin", dict(TINY_BODY, d_model=32, n_layer=1), v.size, 4).eval()
    table = ModalityTable.from_vocab(v)
    indicators = set(v.indicators.values())
    kinds = set()
    for target in ["codec", "ssl"]:
        prefix, lengths = _prompts(v, target)
        cfg = SearchConfig(method="top_k", top_k=10_000, temperature=3.0, nbest=3, max_len_ratio=3.0, seed=7)
        for hyps in model.generate(prefix, lengths, cfg, table):
            for frames in hyps:
                current = v.range(target)
                for frame in frames.tolist():
                    assert frame[0] != SOS_EOS
                    if frame[0] in indicators:
                        current = v.range_of_indicator(frame[0])
                        assert frame[1:] == [PAD] * 3
                        continue
                    kinds.add(current.name)
                    assert current.stream_range(0)[0] <= frame[0] < current.stream_range(0)[1]
                    for k, t in enumerate(frame[1:], start=1):
                        if k < current.n_streams:
                            lo, hi = current.stream_range(k)
                            assert lo <= t < hi
                        else:
                            assert t == PAD
    assert kinds == {"text", "ssl", "codec"}  # every kind of frame was exercised


def test_needs_a_body_with_bidirectional_mode(vocab):
    class CausalOnly(nn.Module):
        d_model, cfg = 8, object()

    with pytest.raises(ValueError, match="bidirectional"):
        ValleLM(CausalOnly(), vocab.size, 4)
    with pytest.raises(ValueError, match="nar_streams"):
        build_speechlm("valle", "builtin", TINY_BODY, vocab.size, 4, nar_streams="some")


def test_nar_body_conf_overrides(vocab):
    model = build_speechlm("valle", "builtin", TINY_BODY, vocab.size, 4, nar_body_conf={"n_layer": 1})
    assert len(model.nar_body.layers) == 1 and len(model.body.layers) == TINY_BODY["n_layer"]
    assert model.body.cfg.causal and not model.nar_body.cfg.causal
