"""Per-example views of the model loss's per-row sums, and the hook for a fused loss.

Every multi-stream architecture ends its forward with ``self.weighted_loss(h, target,
weight)`` (``models/multistream/abs_lm.py``, the one loss definition), whose stats carry
per-row sums ``rows_logp`` / ``rows_hit`` / ``rows_weight``. Here they become per-example
log-probs (DPO) and per-task curves; ``use_token_ce`` swaps in a fused per-token
cross-entropy (Liger) that never materialises the [n, V] logits.
"""

from __future__ import annotations

from typing import Callable, Dict, Optional, Tuple

import torch
from torch import nn

# (model, h [n, D], stream k, target [n]) -> (ce [n] float32, hit [n] float32)
TokenCE = Callable[[nn.Module, torch.Tensor, int, torch.Tensor], Tuple[torch.Tensor, torch.Tensor]]


def use_token_ce(model: nn.Module, token_ce: Optional[TokenCE]) -> None:
    """Route the model's per-token loss through `token_ce` (None restores the plain one)."""
    if not callable(getattr(model, "weighted_loss", None)) or not hasattr(model, "head_logits"):
        raise TypeError(f"{type(model).__name__} is not a multi-stream LM (no weighted_loss / head_logits)")
    model.token_ce = token_ce  # plain attribute: nn.Module keeps non-module values in __dict__


def per_example(stats: Dict[str, torch.Tensor], weight: torch.Tensor
                ) -> Optional[Tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(logp, hit, weight) [B] per example of the input ``weight [B, T, nq]``, or None when the
    rows of the architecture's loss are not its examples (multiscale: one row per frame)."""
    if "rows_logp" not in stats:
        return None
    B = weight.shape[0]
    logp, hit, w = stats["rows_logp"], stats["rows_hit"], stats["rows_weight"]
    if B == 1:  # every row belongs to the only example
        return logp.sum().reshape(1), hit.sum().reshape(1), w.sum().reshape(1)
    if logp.shape[0] != B:
        return None
    return logp, hit, w
