"""Transformer bodies: `x [B, T, D] -> h [B, T, D]`, causal, with an optional KV cache.

A body never sees token ids; the multi-stream LM wrapper owns the embedding and the
output heads, so any body (built-in or HuggingFace) can sit under any architecture.

Every body implements:
    d_model: int
    forward(x, pos=None, key_valid=None, cache=None) -> h
    new_cache(batch, max_len) -> a cache object with `select(idx)` (reorder/shrink rows)
"""

from espnet2.speechlm.registry import Registry

BODIES: Registry = Registry("body")

from espnet2.speechlm.models.bodies import builtin, hf  # noqa: E402,F401  (registers)
