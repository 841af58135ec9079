"""Activation checkpointing and torch.compile: same loss and gradients as the plain model."""

import sys
import time
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from toy import NQ, VOCAB, ToyDataset, collate  # noqa: E402

from espnet2.speechlm.models import build_speechlm  # noqa: E402
from espnet2.speechlm.train.apply import apply_activation_checkpointing, apply_compile  # noqa: E402
from espnet2.speechlm.train.config import ConfigError  # noqa: E402

BODY = dict(d_model=32, n_layer=2, n_head=2, n_kv_head=2, d_ff=64, max_len=128, dropout=0.1)
HF_BODY = dict(model_type="llama", overrides=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                                   num_attention_heads=4, num_key_value_heads=2, vocab_size=8))


def toy_batch(n=4):
    ds = ToyDataset(n, 0)
    return collate([ds[i] for i in range(n)])


def loss_and_grads(model, batch, seed=0):
    torch.manual_seed(seed)  # the same dropout masks in both runs
    loss, _, _ = model(batch["seqs"], batch["weights"], batch["lengths"])
    grads = torch.autograd.grad(loss, [p for p in model.parameters()], allow_unused=True)
    return loss.detach(), grads


def assert_same(a, b, exact=True):
    (la, ga), (lb, gb) = a, b
    close = torch.equal if exact else (lambda x, y: torch.allclose(x, y, rtol=1e-4, atol=1e-6))
    assert close(la, lb), (la, lb)
    for x, y in zip(ga, gb):
        assert (x is None and y is None) or close(x, y)


@pytest.mark.parametrize("arch, body, conf", [("delay", "builtin", BODY), ("multiscale", "builtin", BODY),
                                              ("valle", "builtin", BODY), ("delay", "hf", HF_BODY)])
def test_activation_checkpointing_gives_identical_loss_and_grads(arch, body, conf):
    extra = {"local_heads": 2} if arch == "multiscale" else {}
    torch.manual_seed(0)
    model = build_speechlm(arch, body, conf, VOCAB, NQ, **extra).train()
    batch = toy_batch()
    plain = loss_and_grads(model, batch)
    done = apply_activation_checkpointing(model)
    n_bodies = {"multiscale": 2, "valle": 2}.get(arch, 1)  # + the local / NAR body
    assert len(done) == n_bodies and all(body in d for d in done)
    if body == "builtin":
        assert all(m.grad_checkpointing for m in model.modules() if hasattr(m, "grad_checkpointing"))
    else:
        hf = model.body.model
        assert getattr(hf, "is_activation_checkpointing", None) or hf.is_gradient_checkpointing
    names = [n for n, _ in model.named_parameters()]
    assert_same(plain, loss_and_grads(model, batch))  # dropout included: the RNG state is replayed
    assert [n for n, _ in model.named_parameters()] == names


def test_apply_without_a_body_is_a_config_error():
    with pytest.raises(ConfigError, match="run.activation_checkpointing: Linear has no builtin or hf body"):
        apply_activation_checkpointing(torch.nn.Linear(2, 2))
    with pytest.raises(ConfigError, match="run.compile: Linear has no builtin or hf body"):
        apply_compile(torch.nn.Linear(2, 2))


def compile_matches_eager(backend: str):
    torch.manual_seed(0)
    body = dict(BODY, dropout=0.0)
    model = build_speechlm("delay", "builtin", body, VOCAB, NQ).train()
    batch = toy_batch()
    eager = loss_and_grads(model, batch)
    keys = list(model.state_dict())
    done = apply_compile(model, backend)
    assert done == [f"body: 2 blocks ({backend})"] and list(model.state_dict()) == keys
    assert_same(eager, loss_and_grads(model, batch), exact=False)
    short = {k: v[:2, :12] if k in ("seqs", "weights") else v for k, v in batch.items()}  # another length
    short["lengths"] = torch.full((2,), 12)
    model.zero_grad()
    loss, _, _ = model(short["seqs"], short["weights"], short["lengths"])
    loss.backward()
    assert torch.isfinite(loss)


def test_compile_eager_backend_matches_eager():
    """run.compile through dynamo graph capture with the eager backend (no code generation: fast on CPU)."""
    compile_matches_eager("eager")


@pytest.mark.slow
def test_compile_inductor_matches_eager():
    """The default inductor backend; CPU code generation takes minutes on a loaded 2-core machine."""
    import shutil

    if shutil.which("g++") is None and shutil.which("c++") is None:
        pytest.skip("the CPU inductor backend needs a C++ compiler (g++) and none is installed")
    t0 = time.time()
    compile_matches_eager("inductor")
    print(f"inductor compile + 2 steps: {time.time() - t0:.0f} s")
