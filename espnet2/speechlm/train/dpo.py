"""Direct preference optimisation (DPO) of a speech LM against a frozen reference.

For a pair (chosen c, rejected r) sharing one condition x::

    loss = -log sigmoid(beta * ((log p(c|x) - log p_ref(c|x)) - (log p(r|x) - log p_ref(r|x))))

with ``log p(y|x) = sum_{t,k} w[t,k] * log p(y[t,k] | ...)`` over the target tokens of the
assembled sequence, weighted by the same loss weights as LM training (so a codec stream
weighted 1/16 counts 1/16 here too). ``beta * (log p - log p_ref)`` is the implicit reward.

Sequence log-probs come from the architecture's own forward: the model's weighted loss returns
``sum w * log p`` per example, so every architecture (delay, parallel, valle, multiscale) is
scored exactly as it is trained. Both models score in eval mode (no dropout; Vall-E scores
every stream): at the start, with policy == reference, every reward is exactly 0 and the
loss is log 2. The hf body keeps its activation checkpointing in that mode.

Batches hold P pairs as 2P rows: rows [:P] chosen, rows [P:] rejected (``data/pairs.py``).
``DPOModel`` follows the trainer's model contract, ``forward(seq, weight, lengths) ->
(loss, stats, weight_sum)``, so the DeepSpeed engine, ZeRO stages, bf16, gradient
accumulation, checkpoints and resume work unchanged. Only the policy is a submodule: the
reference is neither trained, saved nor partitioned.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from typing import Dict, Iterator, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from espnet2.speechlm.train.losses import per_example

log = logging.getLogger(__name__)


@contextlib.contextmanager
def scoring_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode for the duration (dropout off, every stream scored), except the flag HF
    layers read to recompute activations, which only acts in training mode."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    for m in model.modules():
        if getattr(m, "gradient_checkpointing", False) is True and hasattr(m, "_gradient_checkpointing_func"):
            m.training = True  # only this module's flag; its children (dropout, attention) stay in eval
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode


def sequence_logprob(model: nn.Module, seq: torch.Tensor, weight: torch.Tensor, lengths: torch.Tensor,
                     feats: Optional[Dict[str, torch.Tensor]] = None) -> torch.Tensor:
    """seq [B, T, nq], weight [B, T, nq], lengths [B] -> sum_{t,k} w * log p(seq[t, k]) [B].

    feats: side features of continuous items (example by example), as the model takes them.
    Architectures whose loss rows are not examples (multiscale: one row per frame) are scored one example at a time.
    """
    _, stats, _ = model(seq, weight, lengths, **({"feats": feats} if feats else {}))
    got = per_example(stats, weight)
    if got is None:
        if not getattr(model, "_dpo_warned_loop", False):
            log.warning("%s: loss rows are not examples; sequence log-probs are computed one example at a time",
                        type(model).__name__)
            model._dpo_warned_loop = True
        per_row = model.split_features(seq, lengths, feats) if feats else [None] * seq.shape[0]
        return torch.cat([sequence_logprob(model, seq[b:b + 1, :int(lengths[b])], weight[b:b + 1, :int(lengths[b])],
                                           lengths[b:b + 1], per_row[b]) for b in range(seq.shape[0])])
    logp, _, scored = got
    expected = weight.float().reshape(weight.shape[0], -1).sum(1)
    if not torch.allclose(scored.float(), expected, rtol=1e-4, atol=1e-4):
        raise RuntimeError(f"{type(model).__name__} did not score every target token (weights {scored.tolist()} "
                           f"of {expected.tolist()}); DPO needs whole-sequence log-probabilities")
    return logp


def dpo_loss(policy_c: torch.Tensor, policy_r: torch.Tensor, ref_c: torch.Tensor, ref_r: torch.Tensor,
             beta: float) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
    """Sequence log-probs [P] each -> (per-pair loss [P], rewards [P] each, detached)."""
    chosen = beta * (policy_c - ref_c)  # implicit rewards
    rejected = beta * (policy_r - ref_r)
    margin = chosen - rejected
    losses = -F.logsigmoid(margin)
    return losses, {"chosen_reward": chosen.detach(), "rejected_reward": rejected.detach(),
                    "margin": margin.detach()}


class DPOModel(nn.Module):
    """forward(seq [2P, T, nq], weight, lengths [2P]) -> (mean DPO loss, stats, P)."""

    def __init__(self, policy: nn.Module, reference: nn.Module, beta: float):
        super().__init__()
        self.policy = policy
        self.beta = beta
        reference.eval()
        reference.requires_grad_(False)
        self._reference = [reference]  # a list: not a submodule (not trained, saved, moved or partitioned)

    @property
    def reference(self) -> nn.Module:
        return self._reference[0]

    def reference_to(self, device: torch.device, dtype: Optional[torch.dtype] = None) -> None:
        self._reference[0] = self.reference.to(device=device, dtype=dtype)

    def forward(self, seq: torch.Tensor, weight: torch.Tensor, lengths: torch.Tensor,
                feats: Optional[Dict[str, torch.Tensor]] = None) -> Tuple[torch.Tensor, Dict[str, torch.Tensor], torch.Tensor]:
        B = seq.shape[0]
        if B % 2:
            raise ValueError(f"a DPO batch holds chosen rows then rejected rows; got an odd batch of {B}")
        P = B // 2
        with scoring_mode(self.policy):
            logp = sequence_logprob(self.policy, seq, weight, lengths, feats)  # [2P]
        with torch.no_grad():
            ref = sequence_logprob(self.reference, seq, weight, lengths, feats)  # [2P]
        losses, rewards = dpo_loss(logp[:P], logp[P:], ref[:P], ref[P:], self.beta)
        loss = losses.mean()
        correct = (rewards["margin"] > 0).float()
        stats = {"loss": loss.detach(), "acc": correct.mean(),
                 **{k: v.mean() for k, v in rewards.items()},
                 # per pair, for per-task curves: "log-prob" -loss, "hits" = correct, weight 1
                 "rows_logp": -losses.detach(), "rows_hit": correct, "rows_weight": torch.ones_like(correct)}
        return loss, stats, torch.tensor(float(P), device=loss.device)


def build_reference(policy: nn.Module, ref_model: Optional[str]) -> nn.Module:
    """A frozen copy of ``policy``'s architecture, with the weights of ``ref_model`` (an exported
    model dir, a checkpoint dir or a .safetensors file), or the policy's current weights."""
    from espnet2.speechlm.train.checkpoint import load_weights

    reference = copy.deepcopy(policy)
    if ref_model:
        load_weights(reference, ref_model)
    reference.eval()
    reference.requires_grad_(False)
    return reference
