"""Start from a pretrained text LLM: its token ids become one range of the joint vocabulary.

With the LLM's own tokenizer as our text tokenizer (local id i = LLM id i, global id
`offset + i`), the builder copies

    embed.weight[offset + i]      <- the LLM's input embedding of token i
    head_0 row of id offset + i   <- the LLM's output-layer row i     (tied or untied)

so a text-only sequence gives exactly the LLM's logits on the text range. Everything
else (special slots, other tokenizers, streams >= 1) keeps its fresh initialisation.

`text_init = {"offset": o, "n_tokens": N}` (the text tokenizer's range; N may be smaller
than the LLM's embedding table, which is often padded) is recorded in the build config.
The copy happens only when the body was loaded from pretrained weights; a model rebuilt
from our own checkpoint takes these rows from the checkpoint, and nothing is fetched.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn

from espnet2.speechlm.vocab import N_SPECIAL

_CHUNK = 8192  # embedding rows computed at a time (bounds the temporary memory)


def check_text_init(text_init: dict, vocab_size: int) -> tuple[int, int]:
    """Validate {"offset", "n_tokens"} against the joint vocabulary; return (offset, n)."""
    if not isinstance(text_init, dict) or set(text_init) != {"offset", "n_tokens"}:
        raise ValueError(f"text_init must be {{'offset': int, 'n_tokens': int}}, got {text_init!r}")
    offset, n = int(text_init["offset"]), int(text_init["n_tokens"])
    if n <= 0 or offset < N_SPECIAL or offset + n > vocab_size:
        raise ValueError(f"text_init: range [{offset}, {offset + n}) must lie in the tokenizer ids "
                         f"[{N_SPECIAL}, {vocab_size}) of the joint vocabulary")
    return offset, n


def init_text_rows(model: nn.Module, text_init: Optional[dict]) -> bool:
    """Graft the body's pretrained LLM rows into `model` (see module docstring).

    Returns True when rows were copied, False when the body brought no pretrained
    weights. The body's held rows are released either way.
    """
    pop = getattr(model.body, "pop_text_weights", None)
    text = pop() if pop is not None else None
    if text_init is None:
        return False
    offset, n = check_text_init(text_init, model.vocab_size)
    if pop is None:
        raise ValueError(f"text_init needs a body that brings a pretrained LLM (e.g. 'hf'); "
                         f"{type(model.body).__name__} has none")
    if text is None:
        return False
    if text.problem:
        raise NotImplementedError(f"text_init: {text.problem}; its logits cannot be reproduced by our heads")
    n_llm, D = text.out_weight.shape
    if n > n_llm:
        raise ValueError(f"text_init: the text range has {n} tokens but the LLM has only {n_llm}; "
                         f"use the LLM's own tokenizer for the text range")
    if D != model.embed.weight.shape[1]:
        raise ValueError(f"text_init: LLM rows have {D} dims, the model embeds in {model.embed.weight.shape[1]}")
    ids = torch.arange(offset, offset + n, device=model.embed.weight.device)
    cols = model.to_head_index(0, ids)
    if bool((cols < 0).any()):
        raise ValueError("text_init: head 0 does not score the whole text range (head_ranges)")
    with torch.no_grad():
        for start in range(0, n, _CHUNK):
            local = torch.arange(start, min(n, start + _CHUNK), device=text.out_weight.device)
            model.embed.weight[offset + start: offset + start + local.numel()] = text.embed(local).to(model.embed.weight)
        out = text.out_weight[:n].to(model.embed.weight)
        if model.shared_head:  # the per-stream offsets start at 0, so stream 0 gives the LLM's logits
            model.head.weight[offset: offset + n] = out
        else:
            model.heads[0].weight[cols] = out
    return True
