"""run.liger selection (auto / on / off) and the real patching code, against a fake liger_kernel
whose functions are PyTorch reference implementations (Liger's Triton kernels need a GPU)."""

import copy
import sys
import types
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))

from toy import NQ, VOCAB, ToyDataset, collate  # noqa: E402

from espnet2.speechlm.models import build_speechlm  # noqa: E402
from espnet2.speechlm.train import liger  # noqa: E402

BODY = dict(d_model=32, n_layer=2, n_head=2, n_kv_head=2, d_ff=64, max_len=128, dropout=0.0)


class CEOutput:
    def __init__(self, loss, token_accuracy):
        self.loss, self.token_accuracy = loss, token_accuracy


def fake_liger(calls):
    """liger_kernel.transformers(.functional) with the documented signatures, in plain PyTorch."""

    def liger_rms_norm(X, W, eps, offset=0.0, casting_mode="llama", in_place=True):
        calls.append("rms_norm")
        xf = X.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).type_as(X) * (W + offset)

    def liger_swiglu(a, b):
        calls.append("swiglu")
        return F.silu(a) * b

    def liger_fused_linear_cross_entropy(input, weight, target, bias=None, ce_weight=None, ignore_index=-100,
                                         lse_square_scale=0.0, label_smoothing=0.0, reduction="mean", softcap=None,
                                         return_z_loss=False, accum_dtype=None, use_token_scaling=False,
                                         return_token_accuracy=False, return_predicted_tokens=False):
        calls.append("flce")
        assert reduction == "none" and return_token_accuracy
        logits = F.linear(input, weight).float()
        return CEOutput(F.cross_entropy(logits, target, reduction="none"), (logits.argmax(-1) == target).float())

    def apply_to_instance(model, **kwargs):
        calls.append(("instance", type(model).__name__, kwargs))

    functional = types.ModuleType("liger_kernel.transformers.functional")
    functional.liger_rms_norm, functional.liger_swiglu = liger_rms_norm, liger_swiglu
    functional.liger_fused_linear_cross_entropy = liger_fused_linear_cross_entropy
    transformers = types.ModuleType("liger_kernel.transformers")
    transformers.functional = functional
    transformers._apply_liger_kernel_to_instance = apply_to_instance
    root = types.ModuleType("liger_kernel")
    root.transformers = transformers
    return {"liger_kernel": root, "liger_kernel.transformers": transformers,
            "liger_kernel.transformers.functional": functional}


@pytest.fixture
def fake(monkeypatch):
    calls = []
    for name, mod in fake_liger(calls).items():
        monkeypatch.setitem(sys.modules, name, mod)
    return calls


@pytest.fixture
def missing(monkeypatch):
    for name in ("liger_kernel", "liger_kernel.transformers", "liger_kernel.transformers.functional"):
        monkeypatch.setitem(sys.modules, name, None)  # import raises ImportError


def test_selection_when_liger_is_missing(missing):
    assert liger.use_liger("off", use_cuda=True) is False
    assert liger.use_liger("auto", use_cuda=True) is False  # silent fallback
    with pytest.raises(liger.LigerUnavailableError, match="run.liger=on: liger-kernel is not importable"):
        liger.use_liger("on", use_cuda=True)
    with pytest.raises(ValueError, match="auto, on or off"):
        liger.use_liger("yes", use_cuda=True)


def test_selection_when_liger_is_installed(fake):
    assert liger.use_liger("auto", use_cuda=True) is True
    assert liger.use_liger("on", use_cuda=True) is True
    assert liger.use_liger("auto", use_cuda=False) is False  # CPU: silent fallback
    with pytest.raises(liger.LigerUnavailableError, match="training runs on CPU"):
        liger.use_liger("on", use_cuda=False)
    assert liger.maybe_apply_liger(torch.nn.Linear(2, 2), "off", use_cuda=True) is None


@pytest.mark.parametrize("conf", [{}, {"shared_head": True}])
def test_patched_builtin_model_matches_the_original(fake, conf):
    torch.manual_seed(0)
    model = build_speechlm("delay", "builtin", BODY, VOCAB, NQ, **conf).train()
    patched = copy.deepcopy(model)
    done = liger.apply_liger(patched)
    assert done == ["body: 7 RMSNorm/SwiGLU modules", "heads: fused linear cross-entropy"]  # 2 x (2 norms + MLP) + norm
    assert list(patched.state_dict()) == list(model.state_dict())  # same keys: checkpoints do not change
    assert isinstance(patched.body.layers[0].mlp, liger.LigerSwiGLU)
    ds = ToyDataset(4, 0)
    b = collate([ds[i] for i in range(4)])
    loss, stats, w = model(b["seqs"], b["weights"], b["lengths"])
    loss.backward()
    calls_before = len(fake)
    loss2, stats2, w2 = patched(b["seqs"], b["weights"], b["lengths"])
    loss2.backward()
    assert {"rms_norm", "swiglu", "flce"} <= set(fake[calls_before:])
    assert torch.allclose(loss, loss2, rtol=1e-5) and torch.equal(w, w2)
    assert torch.allclose(stats["acc"], stats2["acc"])
    for (n, p), p2 in zip(model.named_parameters(), patched.parameters()):
        assert torch.allclose(p.grad, p2.grad, rtol=1e-4, atol=1e-7), n


def test_hf_body_goes_through_liger_instance_patching(fake):
    pytest.importorskip("transformers")
    conf = dict(model_type="llama", overrides=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                                   num_attention_heads=4, num_key_value_heads=2, vocab_size=8))
    model = build_speechlm("delay", "hf", conf, VOCAB, NQ)
    done = liger.apply_liger(model)
    assert done[0] == "body: hf llama blocks"
    (_, cls, kwargs), = [c for c in fake if isinstance(c, tuple)]
    assert cls == "LlamaModel" and kwargs["fused_linear_cross_entropy"] is False and kwargs["rms_norm"]
