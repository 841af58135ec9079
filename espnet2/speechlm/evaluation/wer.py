"""Word and character error rates (jiwer).

Per utterance we keep the edit counts, so the corpus value is
sum(errors) / sum(reference length), not an average of sentence rates.
"""

from __future__ import annotations

from typing import Dict, Mapping, Tuple

from espnet2.speechlm.evaluation.base import METRICS, Metric, UttResult
from espnet2.speechlm.evaluation.text_norm import normalize_text


def word_errors(ref: str, hyp: str) -> Tuple[int, int]:
    """(substitutions + deletions + insertions, reference words)."""
    import jiwer

    ref_words, hyp_words = ref.split(), hyp.split()
    if not ref_words:
        return len(hyp_words), 0
    out = jiwer.process_words(" ".join(ref_words), " ".join(hyp_words))
    return out.substitutions + out.deletions + out.insertions, out.substitutions + out.deletions + out.hits


def char_errors(ref: str, hyp: str) -> Tuple[int, int]:
    import jiwer

    if not ref:
        return len(hyp), 0
    out = jiwer.process_characters(ref, hyp)
    return out.substitutions + out.deletions + out.insertions, out.substitutions + out.deletions + out.hits


class _ErrorRate(Metric):
    default_hyp = "text"
    default_ref = "text"
    higher_is_better = False

    def __init__(self, lowercase: bool = False, remove_punctuation: bool = False):
        self.lowercase = lowercase
        self.remove_punctuation = remove_punctuation

    def norm(self, text: str) -> str:
        return normalize_text(text, self.lowercase, self.remove_punctuation)

    def _counts(self, ref: str, hyp: str) -> Tuple[int, int]:
        raise NotImplementedError

    def score(self, hyp: str, ref: str) -> UttResult:
        errors, n = self._counts(self.norm(ref), self.norm(hyp))
        return {self.name: errors / max(n, 1), "_errors": errors, "_ref_len": n}

    def summarize(self, per_utt: Mapping[str, UttResult], pairs) -> Dict[str, float]:
        errors = sum(r["_errors"] for r in per_utt.values())
        n = sum(r["_ref_len"] for r in per_utt.values())
        return {self.name: errors / max(n, 1)} if per_utt else {}

    def info(self) -> Dict[str, object]:
        return {"lowercase": self.lowercase, "remove_punctuation": self.remove_punctuation}


@METRICS.register("wer")
class WER(_ErrorRate):
    name = "wer"

    def _counts(self, ref: str, hyp: str) -> Tuple[int, int]:
        return word_errors(ref, hyp)


@METRICS.register("cer")
class CER(_ErrorRate):
    name = "cer"

    def __init__(self, lowercase: bool = False, remove_punctuation: bool = False, ignore_spaces: bool = False):
        super().__init__(lowercase, remove_punctuation)
        self.ignore_spaces = ignore_spaces

    def _counts(self, ref: str, hyp: str) -> Tuple[int, int]:
        if self.ignore_spaces:
            ref, hyp = ref.replace(" ", ""), hyp.replace(" ", "")
        return char_errors(ref, hyp)
