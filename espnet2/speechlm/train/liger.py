"""Liger kernels (Triton, CUDA only), applied to a built model from outside: ``run.liger``.

    auto  use them when ``liger-kernel`` is importable and training runs on CUDA, else nothing
    on    the same, but a missing package or a CPU run is an error
    off   never

What is swapped (numerically equivalent, less memory / fewer kernel launches):

- output heads: the weighted target loss uses Liger's fused linear cross-entropy per stream
  (``liger_fused_linear_cross_entropy``, reduction "none", with per-token accuracy), so the
  [n, V] logits are never materialised (see ``losses.use_token_ce``);
- builtin body: RMSNorm -> ``liger_rms_norm`` (Llama casting), SwiGLU MLP -> ``liger_swiglu``.
  RoPE stays PyTorch: the builtin attention has no hook for another rotary function;
- hf body: ``liger_kernel.transformers._apply_liger_kernel_to_instance`` (RoPE, RMSNorm,
  SwiGLU of supported model types, e.g. Llama); its loss patches are not used (the body has
  no LM head; ours are above).

The swapped modules keep their parameters (same objects, same state_dict keys), so
checkpoints and exported models do not depend on Liger.
"""

from __future__ import annotations

import importlib
import logging
from typing import List, Optional, Tuple

import torch
from torch import nn

log = logging.getLogger(__name__)


class LigerUnavailableError(RuntimeError):
    """run.liger: on, but Liger kernels cannot run here."""


def liger_available() -> Tuple[bool, str]:
    """(importable, reason when not)."""
    try:
        importlib.import_module("liger_kernel.transformers.functional")
    except Exception as e:  # ImportError, or a broken triton install
        return False, f"liger-kernel is not importable ({type(e).__name__}: {e}); install the gpu extra"
    return True, ""


def use_liger(mode: str, use_cuda: bool) -> bool:
    """Decide from ``run.liger`` whether to apply the kernels; ``on`` raises when it cannot."""
    if mode == "off":
        return False
    if mode not in ("auto", "on"):
        raise ValueError(f"run.liger must be auto, on or off, got {mode!r}")
    if not use_cuda:  # checked first: importing triton on a CPU machine is slow and pointless
        ok, why = False, "Liger kernels are Triton GPU kernels and training runs on CPU (--ngpu 0)"
    else:
        ok, why = liger_available()
    if not ok and mode == "on":
        raise LigerUnavailableError(f"run.liger=on: {why}; use run.liger=auto to fall back silently")
    return ok


# --- builtin body -------------------------------------------------------------------------


class LigerRMSNorm(nn.Module):
    """Liger RMSNorm holding the original module's gain (same parameter, same key)."""

    def __init__(self, norm: nn.Module):
        super().__init__()
        self.weight = norm.weight
        self.eps = norm.eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from liger_kernel.transformers.functional import liger_rms_norm

        return liger_rms_norm(x, self.weight, self.eps, casting_mode="llama", in_place=False)


class LigerSwiGLU(nn.Module):
    """down(silu(gate(x)) * up(x)) with the fused Liger activation; the original Linear modules."""

    def __init__(self, mlp: nn.Module):
        super().__init__()
        self.gate_proj, self.up_proj, self.down_proj = mlp.gate_proj, mlp.up_proj, mlp.down_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from liger_kernel.transformers.functional import liger_swiglu

        return self.down_proj(liger_swiglu(self.gate_proj(x), self.up_proj(x)))


def _patch_builtin(body: nn.Module) -> int:
    from espnet2.speechlm.models.bodies.builtin import MLP, RMSNorm

    n = 0
    for parent in list(body.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, RMSNorm):
                setattr(parent, name, LigerRMSNorm(child))
                n += 1
            elif isinstance(child, MLP):
                setattr(parent, name, LigerSwiGLU(child))
                n += 1
    return n


def _patch_hf(body: nn.Module) -> None:
    from liger_kernel.transformers import _apply_liger_kernel_to_instance

    # the body is a base model (no LM head): only its blocks are patched
    _apply_liger_kernel_to_instance(model=body.model, rope=True, rms_norm=True, swiglu=True,
                                    cross_entropy=False, fused_linear_cross_entropy=False)


# --- heads --------------------------------------------------------------------------------


def liger_token_ce(model: nn.Module, h: torch.Tensor, k: int, target: torch.Tensor
                   ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-token CE and hit of stream k's head without materialising logits (``losses.TokenCE``)."""
    from liger_kernel.transformers.functional import liger_fused_linear_cross_entropy

    if getattr(model, "shared_head", False):
        ids = model.head_ids(k) if getattr(model, "restricted_heads", False) else None
        weight = model.head.weight if ids is None else model.head.weight[ids]  # [V_k, D]
        h = h + model.stream_offset[k]
    else:
        weight = model.heads[k].weight
    if h.shape[0] == 0:  # no target token of this stream in the batch
        zero = h.new_zeros(0, dtype=torch.float32)
        return zero, zero
    out = liger_fused_linear_cross_entropy(h.contiguous(), weight, target, reduction="none",
                                           return_token_accuracy=True)
    return out.loss.float(), out.token_accuracy.float()


def apply_liger(model: nn.Module) -> List[str]:
    """Swap in Liger kernels everywhere they apply; returns what was patched (for the log)."""
    from espnet2.speechlm.models.bodies.builtin import BuiltinBody
    from espnet2.speechlm.models.bodies.hf import HFBody
    from espnet2.speechlm.train.losses import use_token_ce

    done: List[str] = []
    for name, m in list(model.named_modules()):
        if isinstance(m, BuiltinBody):
            done.append(f"{name}: {_patch_builtin(m)} RMSNorm/SwiGLU modules")
        elif isinstance(m, HFBody):
            _patch_hf(m)
            done.append(f"{name}: hf {getattr(m.model.config, 'model_type', '?')} blocks")
    if hasattr(model, "head_logits"):
        use_token_ce(model, liger_token_ce)
        done.append("heads: fused linear cross-entropy")
    return done


def maybe_apply_liger(model: nn.Module, mode: str, use_cuda: bool) -> Optional[List[str]]:
    if not use_liger(mode, use_cuda):
        return None
    return apply_liger(model)
