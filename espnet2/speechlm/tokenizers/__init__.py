"""Tokenizer families and the two entry points the recipe uses.

Importing this package imports every family module, which fills the registry
(`TOKENIZERS`). A recipe config entry such as

    codec: {type: mel_rvq, conf: {n_streams: 8, codebook_size: 256}}

becomes `train_tokenizer("mel_rvq", items, out_dir, **conf)` once, then
`build_tokenizer("mel_rvq", out_dir, **conf)` wherever tokens are needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Optional

from espnet2.speechlm.tokenizers.abs_tokenizer import TOKENIZERS, AbsTokenizer, register_tokenizer

# family modules: imported for their @register_tokenizer side effect
from espnet2.speechlm.tokenizers import (  # noqa: F401,E402
    char, codec_ssl, continuous, g2p, g2p_en, hf_codec, hf_text, label, mel_rvq, music_score, precomputed,
    sentencepiece, ssl_kmeans, timestamp,
)

__all__ = ["TOKENIZERS", "AbsTokenizer", "register_tokenizer", "build_tokenizer", "train_tokenizer"]


def build_tokenizer(type_: str, model_dir: Optional[Path] = None, **conf: Any) -> AbsTokenizer:
    """Load a (trained) tokenizer of family `type_` from model_dir."""
    cls = TOKENIZERS.get(type_)
    if cls.needs_training() and model_dir is not None and not Path(model_dir).is_dir():
        raise FileNotFoundError(f"{type_}: model_dir {model_dir} does not exist; train the tokenizer first")
    return cls.load(Path(model_dir) if model_dir is not None else None, **conf)


def train_tokenizer(type_: str, items: Iterable[Any], out_dir: Path, **conf: Any) -> AbsTokenizer:
    """Fit a trainable tokenizer on raw items and save it to out_dir.

    For a family that needs no training, this only builds it from conf (so a
    recipe can call train_tokenizer for every entry without special cases).
    """
    cls = TOKENIZERS.get(type_)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not cls.needs_training():
        return cls.load(out_dir, **conf)
    return cls.train(items, out_dir, **conf)
