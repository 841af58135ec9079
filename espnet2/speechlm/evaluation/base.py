"""Metric base class and registry.

Every metric is a small class registered by name in ``METRICS``; the scorer only
knows this interface, so adding a metric means adding one module.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Dict, Mapping, Optional, Tuple

import numpy as np

from espnet2.speechlm.registry import Registry


@dataclass
class Audio:
    """A mono float32 waveform with its sampling rate."""

    wav: np.ndarray
    sr: int

    @property
    def duration(self) -> float:
        return len(self.wav) / float(self.sr)


# Per-utterance result: numeric values are scores; keys starting with "_" are
# auxiliary numbers used only by `summarize` (e.g. error counts for corpus WER);
# string values are side outputs (e.g. ASR transcripts) written but not averaged.
UttResult = Dict[str, Any]


class Metric:
    """One evaluation metric.

    Subclasses set ``name``, the default index files they read (``default_hyp``:
    file in the hypothesis dir, ``default_ref``: file in the reference dir or
    ``None``) and implement :meth:`score`. Options come from the YAML entry as
    keyword arguments, so a misspelt option fails loudly in ``__init__``.
    """

    name: ClassVar[str] = ""
    default_hyp: ClassVar[str] = "text"
    default_ref: ClassVar[Optional[str]] = "text"
    higher_is_better: ClassVar[bool] = True

    def score(self, hyp: Any, ref: Any) -> UttResult:
        raise NotImplementedError

    def summarize(
        self, per_utt: Mapping[str, UttResult], pairs: Mapping[str, Tuple[Any, Any]]
    ) -> Dict[str, float]:
        """Corpus-level numbers; the default is the mean of each public numeric key.

        ``pairs`` maps utt id -> (hyp, ref) *specs* (text or paths), for metrics
        such as BLEU whose corpus value is not a mean of sentence values.
        """
        return mean_of_keys(per_utt)

    def info(self) -> Dict[str, Any]:
        """Human-readable facts recorded in summary.json (backend, model, ...)."""
        return {}

    def note(self) -> Optional[str]:
        """What the numbers were measured with, when it matters for comparing them (the
        recognizer behind a WER, the speaker model behind a similarity): shown below the
        RESULTS.md table. None: nothing to say."""
        return None


def mean_of_keys(per_utt: Mapping[str, UttResult]) -> Dict[str, float]:
    sums: Dict[str, float] = {}
    counts: Dict[str, int] = {}
    for res in per_utt.values():
        for key, val in res.items():
            if key.startswith("_") or not is_number(val):
                continue
            if not math.isfinite(float(val)):
                continue
            sums[key] = sums.get(key, 0.0) + float(val)
            counts[key] = counts.get(key, 0) + 1
    return {k: sums[k] / counts[k] for k in sums}


def is_number(val: Any) -> bool:
    return isinstance(val, (int, float, np.integer, np.floating)) and not isinstance(
        val, bool
    )


METRICS: Registry[type] = Registry("metric")
