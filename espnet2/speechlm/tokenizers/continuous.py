"""Continuous items (a speaker embedding, LLM hidden states): registered, not implemented yet.

Why a stub: the templates and the registry should know the names, and a recipe that asks
for one should stop at once with a clear message rather than fail deep in training.
The planned design: the item is a placeholder token per frame in the joint vocabulary plus
a float side tensor [T, D_e] stored next to the token shards; the model replaces the
placeholder rows of its input embedding with a learned projection of the side tensor.
Until then, use discrete items: `label` for a speaker id token, or a speaker prompt
(`spk_prompt` reader, codec tokens of another utterance of the same speaker).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from espnet2.speechlm.tokenizers.abs_tokenizer import AbsTokenizer, register_tokenizer


class _NotYet(AbsTokenizer):
    kind = "continuous item"

    def tokenize(self, items):  # pragma: no cover - load() never returns an instance
        raise NotImplementedError

    @classmethod
    def load(cls, model_dir: Optional[Path], **conf) -> "AbsTokenizer":
        raise NotImplementedError(
            f"{cls.kind}: continuous items (placeholder token + side tensor) are not implemented yet; "
            "use a `label` speaker-id token or a `spk_prompt` speaker prompt instead")


@register_tokenizer("spk_embedding")
class SpeakerEmbedding(_NotYet):
    kind = "spk_embedding (continuous speaker embedding)"


@register_tokenizer("llm_embedding")
class LLMEmbedding(_NotYet):
    kind = "llm_embedding (continuous LLM hidden states)"
