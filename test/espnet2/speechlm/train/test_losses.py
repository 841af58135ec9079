"""The model loss's per-row sums, their per-example / per-task views, and the token-CE hook."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from toy import NQ, VOCAB, ToyDataset, collate  # noqa: E402

from espnet2.speechlm.models import build_speechlm  # noqa: E402
from espnet2.speechlm.models.multistream.abs_lm import AbsMultiStreamLM  # noqa: E402
from espnet2.speechlm.train.losses import per_example, use_token_ce  # noqa: E402
from espnet2.speechlm.train.trainer import task_sums  # noqa: E402

BODY = dict(d_model=32, n_layer=1, n_head=2, n_kv_head=2, d_ff=64, max_len=128, dropout=0.0)
HEAD_RANGES = [[[0, VOCAB]], [[0, 1], [32, VOCAB]]]  # stream 1 holds PAD and the upper half (toy data)


def toy_batch(n=4, seed=0):
    ds = ToyDataset(n, seed)
    return collate([ds[i] for i in range(n)])


def build(arch, **arch_conf):
    torch.manual_seed(0)
    return build_speechlm(arch, "builtin", BODY, VOCAB, NQ, **arch_conf)


VARIANTS = [("delay", {}), ("parallel", {}), ("multiscale", {"local_heads": 2}), ("valle", {"nar_streams": "all"}),
            ("delay", {"shared_head": True}), ("delay", {"head_ranges": HEAD_RANGES}),
            ("parallel", {"head_ranges": HEAD_RANGES, "shared_head": True})]


@pytest.mark.parametrize("arch, conf", VARIANTS)
def test_row_sums_add_up_and_a_token_ce_hook_is_used(arch, conf):
    b = toy_batch()
    model = build(arch, **conf).eval()
    loss, stats, w = model(b["seqs"], b["weights"], b["lengths"])
    assert torch.allclose(-stats["rows_logp"].sum() / stats["rows_weight"].sum(), loss, rtol=1e-5)
    assert torch.allclose(stats["rows_hit"].sum() / stats["rows_weight"].sum(), stats["acc"], rtol=1e-5)
    grads = torch.autograd.grad(loss, list(model.parameters()), allow_unused=True)
    calls = []

    def spy(m, h, k, tgt):  # the plain CE, counted: a fused kernel plugs in the same way
        calls.append(k)
        return AbsMultiStreamLM.plain_token_ce(m, h, k, tgt)

    use_token_ce(model, spy)
    loss2, stats2, w2 = model(b["seqs"], b["weights"], b["lengths"])
    grads2 = torch.autograd.grad(loss2, list(model.parameters()), allow_unused=True)
    assert calls and torch.equal(loss, loss2) and torch.equal(w, w2)
    assert all((a is None and c is None) or torch.equal(a, c) for a, c in zip(grads, grads2))
    use_token_ce(model, lambda m, h, k, tgt: (torch.zeros(h.shape[0]), torch.zeros(h.shape[0])))
    assert float(model(b["seqs"], b["weights"], b["lengths"])[0]) == 0.0  # the hook really decides the loss


def test_per_example_rows_and_task_sums():
    b = toy_batch(4)
    model = build("delay").eval()
    _, stats, _ = model(b["seqs"], b["weights"], b["lengths"])
    logp, hit, w = per_example(stats, b["weights"])
    for i in range(4):  # each row is that example's own sum w * log p
        one_loss, _, one_w = model(b["seqs"][i:i + 1], b["weights"][i:i + 1], b["lengths"][i:i + 1])
        assert torch.allclose(logp[i].detach(), -one_loss.detach() * one_w, rtol=1e-5) and w[i] == one_w
    sums = task_sums(b["tasks"], stats)
    assert set(sums) == {"asr", "tts"}  # toy examples alternate asr / tts
    asr = [i for i, t in enumerate(b["tasks"]) if t == "asr"]
    assert sums["asr"][2] == pytest.approx(float(w[asr].sum()))
    assert sums["asr"][0] == pytest.approx(float(-logp[asr].detach().sum()), rel=1e-5)
    # multiscale rows are frames: attributable only when the batch holds one task
    ms = build("multiscale", local_heads=2).eval()
    _, stats, _ = ms(b["seqs"], b["weights"], b["lengths"])
    assert per_example(stats, b["weights"]) is None
    assert task_sums(b["tasks"], stats) == {}
    only = task_sums(["tts"] * 4, stats)
    assert list(only) == ["tts"] and only["tts"][2] == pytest.approx(float(b["weights"][:, 1:].sum()))
    assert task_sums(None, stats) == {} and task_sums(["asr"], {"loss": 1.0}) == {}


def test_hook_rejects_non_lm_and_bad_targets_are_an_error():
    with pytest.raises(TypeError, match="not a multi-stream LM"):
        use_token_ce(torch.nn.Linear(2, 2), None)
    b = toy_batch()
    model = build("delay", head_ranges=[[[0, VOCAB]], [[0, 1], [40, VOCAB]]])
    with pytest.raises(ValueError, match="stream 1: target id"):
        model(b["seqs"], b["weights"], b["lengths"])
