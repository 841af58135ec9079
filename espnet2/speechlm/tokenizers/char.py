"""Character tokenizer: one token per Unicode code point.

The inventory is every character seen in the training text (saved as
chars.json). Characters not in it map to `<unk>` = local id 0, and decode back
to the string "<unk>", so the round trip is exact only for in-inventory text.
A space is an ordinary character.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np

from espnet2.speechlm.tokenizers.abs_tokenizer import AbsTokenizer, register_tokenizer
from espnet2.speechlm.tokenizers.label import Inventory, check_str


@register_tokenizer("char")
class CharTokenizer(AbsTokenizer):
    FILE = "chars.json"

    def __init__(self, inventory: Inventory):
        self.inventory = inventory
        self.codebook_size = len(inventory)
        self.n_streams = 1

    def tokenize(self, items: Sequence[str]) -> list[np.ndarray]:
        """texts -> list of [len(text), 1] int64."""
        if isinstance(items, str):
            raise TypeError("char.tokenize takes a list of strings; wrap a single one as [text]")
        return [self.inventory.encode(check_str(t, i, "char")) for i, t in enumerate(items)]

    def detokenize(self, tokens: np.ndarray) -> str:
        return "".join(self.inventory.decode(tokens))

    def token_strings(self) -> list[str]:
        # make whitespace visible in vocab.txt ("id token" lines must not break)
        return [{" ": "<space>", "\n": "<newline>", "\t": "<tab>"}.get(s, s) for s in self.inventory.symbols]

    @classmethod
    def needs_training(cls) -> bool:
        return True

    @classmethod
    def train(cls, items: Iterable[str], out_dir: Path, min_count: int = 1, **conf) -> "CharTokenizer":
        texts = [check_str(t, i, "char") for i, t in enumerate(items)]
        if not any(texts):
            raise ValueError("char.train: got no text")
        inv = Inventory.fit(texts, min_count=min_count)
        inv.save(Path(out_dir) / cls.FILE)
        return cls(inv)

    @classmethod
    def load(cls, model_dir: Optional[Path], **conf) -> "CharTokenizer":
        if model_dir is None:
            raise ValueError("char needs a trained model_dir (its inventory)")
        inv, _ = Inventory.read(Path(model_dir) / cls.FILE)
        return cls(inv)
