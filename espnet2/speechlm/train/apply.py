"""Activation checkpointing and torch.compile, applied to a built model from outside.

Both act on the *bodies* found in the model (the main body, and e.g. the multiscale local
body or the Vall-E NAR body), never on its state_dict keys, so checkpoints and exported
models are the same with them on or off.

- ``run.activation_checkpointing``: builtin bodies recompute each decoder block in backward
  (``torch.utils.checkpoint``, non-reentrant, RNG-preserving: same loss and gradients);
  hf bodies use ``activation_checkpointing_enable`` (``gradient_checkpointing_enable`` on
  older transformers) with ``use_reentrant=False``.
- ``run.compile``: builtin bodies compile each decoder block (one graph reused by every
  block, dynamic shapes, so a new batch length does not recompile); other bodies compile as
  a whole. ``nn.Module.compile`` compiles in place: parameter names do not change. Must run
  before DeepSpeed wraps the model.
"""

from __future__ import annotations

import logging
from typing import List

from torch import nn

from espnet2.speechlm.train.config import ConfigError

log = logging.getLogger(__name__)


def _bodies(model: nn.Module):
    from espnet2.speechlm.models.bodies.builtin import BuiltinBody
    from espnet2.speechlm.models.bodies.hf import HFBody

    for name, m in model.named_modules():
        if isinstance(m, BuiltinBody):
            yield name or "model", "builtin", m
        elif isinstance(m, HFBody):
            yield name or "model", "hf", m


def apply_activation_checkpointing(model: nn.Module) -> List[str]:
    done = []
    for name, kind, body in _bodies(model):
        if kind == "builtin":
            body.grad_checkpointing = True
        else:
            hf = body.model
            if hasattr(hf, "activation_checkpointing_enable"):
                hf.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
            else:
                hf.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        done.append(f"{name} ({kind})")
    if not done:
        raise ConfigError(f"run.activation_checkpointing: {type(model).__name__} has no builtin or hf body")
    return done


def apply_compile(model: nn.Module, backend: str = "inductor") -> List[str]:
    done = []
    for name, kind, body in _bodies(model):
        if kind == "builtin":
            for layer in body.layers:
                layer.compile(backend=backend, dynamic=True)
            done.append(f"{name}: {len(body.layers)} blocks ({backend})")
        else:
            body.model.compile(backend=backend, dynamic=True)
            done.append(f"{name}: hf model ({backend})")
    if not done:
        raise ConfigError(f"run.compile: {type(model).__name__} has no builtin or hf body")
    return done
