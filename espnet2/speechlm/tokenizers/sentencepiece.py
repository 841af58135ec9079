"""Subword text tokenizer backed by Google's sentencepiece (bpe / unigram / char).

Trained in the recipe from an iterator of strings into out_dir/sp.model.
bos/eos/pad are disabled inside sentencepiece (the joint vocabulary owns those
specials), so local id 0 is sentencepiece's `<unk>` and every other id is a piece.

Decoding is exact for text that is already in sentencepiece's normal form
(default rule `nmt_nfkc`: NFKC + whitespace squeezed/stripped) and uses only
characters seen in training; pass `byte_fallback: true` to cover unseen ones.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np

from espnet2.speechlm.tokenizers.abs_tokenizer import AbsTokenizer, register_tokenizer
from espnet2.speechlm.tokenizers.label import check_str

MODEL_FILE = "sp.model"


@register_tokenizer("sentencepiece")
class SentencePieceTokenizer(AbsTokenizer):
    def __init__(self, model_file: Path):
        import sentencepiece as spm

        self.model_dir = Path(model_file).parent
        self.sp = spm.SentencePieceProcessor(model_file=str(model_file))
        self.codebook_size = self.sp.get_piece_size()
        self.n_streams = 1

    def tokenize(self, items: Sequence[str]) -> list[np.ndarray]:
        """texts -> list of [n_pieces, 1] int64 (one batched sentencepiece call)."""
        if isinstance(items, str):
            raise TypeError("sentencepiece.tokenize takes a list of strings; wrap a single one as [text]")
        texts = [check_str(t, i, "sentencepiece") for i, t in enumerate(items)]
        ids = self.sp.encode(texts, out_type=int)
        return [np.asarray(x, dtype=np.int64).reshape(-1, 1) for x in ids]

    def detokenize(self, tokens: np.ndarray) -> str:
        ids = np.asarray(tokens).reshape(-1)
        if ids.size and (ids.min() < 0 or ids.max() >= self.codebook_size):
            raise ValueError(f"sentencepiece: token ids must lie in [0, {self.codebook_size})")
        return self.sp.decode(ids.tolist())

    def token_strings(self) -> list[str]:
        return [self.sp.id_to_piece(i) for i in range(self.codebook_size)]

    @classmethod
    def needs_training(cls) -> bool:
        return True

    @classmethod
    def train(
        cls,
        items: Iterable[str],
        out_dir: Path,
        vocab_size: int = 1000,
        model_type: str = "bpe",
        character_coverage: float = 1.0,
        hard_vocab_limit: bool = False,
        num_threads: int = 2,
        **extra,
    ) -> "SentencePieceTokenizer":
        """Train sp.model. `extra` goes straight to SentencePieceTrainer (e.g. byte_fallback).

        hard_vocab_limit=False lets a small corpus yield fewer than vocab_size pieces
        instead of failing; the real size is `codebook_size` after loading.
        """
        import sentencepiece as spm

        if model_type not in ("bpe", "unigram", "char", "word"):
            raise ValueError(f"sentencepiece: unknown model_type {model_type!r}")
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        # spool to a file: sentence_iterator cannot be retried and a file keeps memory flat
        with tempfile.NamedTemporaryFile("w", suffix=".txt", dir=out_dir, delete=False, encoding="utf-8") as f:
            n = 0
            for i, t in enumerate(items):
                t = check_str(t, i, "sentencepiece").replace("\n", " ").strip()
                if t:
                    f.write(t + "\n")
                    n += 1
            corpus = Path(f.name)
        try:
            if n == 0:
                raise ValueError("sentencepiece.train: got no non-empty text")
            spm.SentencePieceTrainer.train(
                input=str(corpus),
                model_prefix=str(out_dir / "sp"),
                vocab_size=vocab_size,
                model_type=model_type,
                character_coverage=character_coverage,
                hard_vocab_limit=hard_vocab_limit,
                unk_id=0,
                bos_id=-1,
                eos_id=-1,
                pad_id=-1,
                num_threads=num_threads,
                minloglevel=2,
                **extra,
            )
        finally:
            corpus.unlink(missing_ok=True)
        conf = dict(vocab_size=vocab_size, model_type=model_type, character_coverage=character_coverage, **extra)
        (out_dir / "sp.json").write_text(json.dumps(conf, indent=2))
        return cls(out_dir / MODEL_FILE)

    @classmethod
    def load(cls, model_dir: Optional[Path], **conf) -> "SentencePieceTokenizer":
        if model_dir is None:
            raise ValueError("sentencepiece needs a trained model_dir containing sp.model")
        path = Path(model_dir) / MODEL_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found (train the tokenizer first)")
        return cls(path)
