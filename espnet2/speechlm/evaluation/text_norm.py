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
