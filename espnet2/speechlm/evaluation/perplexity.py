"""Perplexity from the ``logprob`` file inference writes (``utt sum_logprob n_tokens``).

Corpus perplexity is exp(-sum(logp) / sum(n)), i.e. token-weighted, which is not
the mean of per-utterance perplexities. Log-probs are natural-log.
"""

from __future__ import annotations

import math
from typing import Dict, Mapping, Tuple

from espnet2.speechlm.evaluation.base import METRICS, Metric, UttResult


@METRICS.register("perplexity")
class Perplexity(Metric):
    name = "perplexity"
    default_hyp = "logprob"
    default_ref = None
    higher_is_better = False

    def score(self, hyp: Tuple[float, int], ref: None = None) -> UttResult:
        logp, n = hyp
        if n <= 0:
            raise ValueError("n_tokens must be positive")
        return {"perplexity": math.exp(-logp / n), "_logp": logp, "_n": n}

    def summarize(self, per_utt: Mapping[str, UttResult], pairs) -> Dict[str, float]:
        n = sum(r["_n"] for r in per_utt.values())
        if n == 0:
            return {}
        logp = sum(r["_logp"] for r in per_utt.values())
        return {"perplexity": math.exp(-logp / n), "nll_per_token": -logp / n}
