"""Scoring of speech-LM inference outputs: a registry of small metric modules.

Importing this package registers every built-in metric in ``METRICS``; heavy
dependencies (jiwer, pesq, pocketsphinx, librosa, ...) are imported lazily by
each metric so a missing optional package only breaks the metric that needs it.
"""

from espnet2.speechlm.evaluation import (  # noqa: F401  (registration side effects)
    f0,
    lsd,
    mcd,
    perplexity,
    pesq_metric,
    si_snr,
    spk_sim,
    stoi_metric,
    translation,
    tts_wer,
    wer,
)
from espnet2.speechlm.evaluation.base import METRICS, Audio, Metric
from espnet2.speechlm.evaluation.factory import build_metric

__all__ = ["METRICS", "Audio", "Metric", "build_metric"]
