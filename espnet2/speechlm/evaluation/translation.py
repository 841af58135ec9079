"""BLEU and chrF (sacrebleu); the summary uses sacrebleu's corpus statistics."""

from __future__ import annotations

from typing import Dict, List, Mapping

from espnet2.speechlm.evaluation.base import METRICS, Metric, UttResult
from espnet2.speechlm.evaluation.text_norm import normalize_text


class _SacreMetric(Metric):
    default_hyp = "text"
    default_ref = "text"
    higher_is_better = True

    def __init__(self, lowercase: bool = False, remove_punctuation: bool = False):
        self.lowercase = lowercase
        self.remove_punctuation = remove_punctuation

    def norm(self, text: str) -> str:
        return normalize_text(text, self.lowercase, self.remove_punctuation)

    def _scorer(self):
        raise NotImplementedError

    def score(self, hyp: str, ref: str) -> UttResult:
        return {self.name: self._scorer().sentence_score(self.norm(hyp), [self.norm(ref)]).score}

    def summarize(self, per_utt: Mapping[str, UttResult], pairs) -> Dict[str, float]:
        utts: List[str] = [u for u in per_utt if u in pairs]
        if not utts:
            return {}
        hyps = [self.norm(pairs[u][0]) for u in utts]
        refs = [self.norm(pairs[u][1]) for u in utts]
        return {self.name: self._scorer().corpus_score(hyps, [refs]).score}


@METRICS.register("bleu")
class BLEU(_SacreMetric):
    """Corpus BLEU; sentence BLEU per utterance uses exponential smoothing."""

    name = "bleu"

    def __init__(self, tokenize: str = "13a", lowercase: bool = False, remove_punctuation: bool = False):
        super().__init__(lowercase, remove_punctuation)
        self.tokenize = tokenize
        self._bleu = None

    def _scorer(self):
        if self._bleu is None:
            from sacrebleu.metrics import BLEU as _B

            self._bleu = _B(tokenize=self.tokenize, effective_order=True)
        return self._bleu

    def info(self) -> Dict[str, object]:
        return {"tokenize": self.tokenize, "lowercase": self.lowercase}


@METRICS.register("chrf")
class ChrF(_SacreMetric):
    """chrF (word_order=0) or chrF++ (word_order=2)."""

    name = "chrf"

    def __init__(self, word_order: int = 0, lowercase: bool = False, remove_punctuation: bool = False):
        super().__init__(lowercase, remove_punctuation)
        self.word_order = word_order
        self._chrf = None

    def _scorer(self):
        if self._chrf is None:
            from sacrebleu.metrics import CHRF

            self._chrf = CHRF(word_order=self.word_order)
        return self._chrf

    def info(self) -> Dict[str, object]:
        return {"word_order": self.word_order}
