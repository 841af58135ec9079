"""Text normalisation shared by WER/CER/BLEU-style metrics.

Punctuation is removed by Unicode category so it works beyond ASCII; dashes become
spaces ("well-known" -> "well known") while other marks, incl. apostrophes, are
dropped ("don't" -> "dont") so both sides are treated identically.
"""

from __future__ import annotations

import unicodedata


def normalize_text(text: str, lowercase: bool = False, remove_punctuation: bool = False) -> str:
    if lowercase:
        text = text.lower()
    if remove_punctuation:
        out = []
        for ch in text:
            cat = unicodedata.category(ch)
            if cat == "Pd":
                out.append(" ")
            elif cat.startswith("P") or cat in ("Sk",):
                continue
            else:
                out.append(ch)
        text = "".join(out)
    return " ".join(text.split())


def whisper_english_normalizer():
    """Whisper's ``EnglishTextNormalizer`` (the one Whisper WERs are reported with: lowercase,
    no punctuation, contractions and British spellings expanded, spelled-out numbers as
    digits, fillers dropped), from PyPI ``whisper-normalizer`` (a copy of openai-whisper's
    normalizers without its torch/tiktoken dependencies)."""
    try:
        from whisper_normalizer.english import EnglishTextNormalizer
    except ImportError:
        raise ModuleNotFoundError(
            "normalizer whisper_en needs whisper-normalizer: `pip install -c tools/constraints.txt whisper-normalizer` "
            "(part of the package's eval extra), or use normalizer: basic"
        ) from None
    return EnglishTextNormalizer()


def whisper_normalizer_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("whisper_normalizer") is not None
