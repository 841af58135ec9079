"""Class-label tokenizer: one token per item (speaker ids, emotion, sound class, ...).

Also home of `Inventory`, the symbol <-> id table shared by the `char` and
`g2p_espeak` tokenizers. Local id 0 is always `<unk>`: anything not seen in
training maps there, so a model never sees an id outside its range.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import numpy as np

from espnet2.speechlm.tokenizers.abs_tokenizer import AbsTokenizer, register_tokenizer

UNK = "<unk>"
UNK_ID = 0


class Inventory:
    """Ordered symbol table: id 0 = `<unk>`, then symbols in sorted order (deterministic)."""

    def __init__(self, symbols: Sequence[str]):
        if not symbols or symbols[0] != UNK:
            raise ValueError(f"inventory must start with {UNK!r}")
        if len(set(symbols)) != len(symbols):
            raise ValueError("inventory has duplicate symbols")
        self.symbols = list(symbols)
        self.index = {s: i for i, s in enumerate(self.symbols)}

    @classmethod
    def fit(cls, sequences: Iterable[Iterable[str]], min_count: int = 1) -> "Inventory":
        """Collect every symbol seen at least `min_count` times."""
        counts: Counter = Counter()
        for seq in sequences:
            counts.update(seq)
        kept = sorted(s for s, c in counts.items() if c >= min_count and s != UNK)
        return cls([UNK] + kept)

    def __len__(self) -> int:
        return len(self.symbols)

    def encode(self, seq: Iterable[str]) -> np.ndarray:
        """symbols -> local ids [T, 1] int64 (unknown -> 0)."""
        ids = [self.index.get(s, UNK_ID) for s in seq]
        return np.asarray(ids, dtype=np.int64).reshape(-1, 1)

    def decode(self, tokens: np.ndarray) -> list[str]:
        """[T, 1] or [T] ids -> symbols."""
        ids = np.asarray(tokens).reshape(-1)
        if ids.size and (ids.min() < 0 or ids.max() >= len(self)):
            raise ValueError(f"token ids must lie in [0, {len(self)})")
        return [self.symbols[i] for i in ids]

    def save(self, path: Path, **extra: Any) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"symbols": self.symbols, **extra}, ensure_ascii=False, indent=1))

    @staticmethod
    def read(path: Path) -> tuple["Inventory", dict]:
        """-> (inventory, the extra fields saved with it)."""
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found (train the tokenizer first)")
        data = json.loads(path.read_text())
        return Inventory(data.pop("symbols")), data


def check_str(item: Any, index: int, who: str) -> str:
    if not isinstance(item, str):
        raise TypeError(f"{who}: item {index} must be a str, got {type(item).__name__}")
    return item


@register_tokenizer("label")
class LabelTokenizer(AbsTokenizer):
    """Whole item -> a single token [1, 1]; unseen labels -> `<unk>` (local 0)."""

    FILE = "labels.json"

    def __init__(self, inventory: Inventory):
        self.inventory = inventory
        self.codebook_size = len(inventory)
        self.n_streams = 1

    def tokenize(self, items: Sequence[str]) -> list[np.ndarray]:
        if isinstance(items, str):
            raise TypeError("label.tokenize takes a list of labels; wrap a single one as [label]")
        return [self.inventory.encode([check_str(x, i, "label").strip()]) for i, x in enumerate(items)]

    def detokenize(self, tokens: np.ndarray) -> str:
        return " ".join(self.inventory.decode(tokens))

    def token_strings(self) -> list[str]:
        return list(self.inventory.symbols)

    @classmethod
    def needs_training(cls) -> bool:
        return True

    @classmethod
    def train(cls, items: Iterable[str], out_dir: Path, min_count: int = 1, **conf) -> "LabelTokenizer":
        """Inventory of every label seen >= min_count times (rare speakers can share <unk>)."""
        labels = [check_str(x, i, "label").strip() for i, x in enumerate(items)]
        if not labels:
            raise ValueError("label.train: got no labels")
        inv = Inventory.fit(([x] for x in labels), min_count=min_count)
        inv.save(Path(out_dir) / cls.FILE)
        return cls(inv)

    @classmethod
    def load(cls, model_dir: Optional[Path], **conf) -> "LabelTokenizer":
        if model_dir is None:
            raise ValueError("label needs a trained model_dir (its inventory)")
        inv, _ = Inventory.read(Path(model_dir) / cls.FILE)
        return cls(inv)
