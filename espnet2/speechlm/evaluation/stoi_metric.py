"""STOI / extended STOI (pystoi) on the time-overlapping part of the signals."""

from __future__ import annotations

from typing import Dict

from espnet2.speechlm.evaluation.base import METRICS, Audio, UttResult
from espnet2.speechlm.evaluation.signal_base import AudioPairMetric


@METRICS.register("stoi")
class STOI(AudioPairMetric):
    name = "stoi"

    def __init__(self, extended: bool = False):
        self.extended = extended

    def score(self, hyp: Audio, ref: Audio) -> UttResult:
        from pystoi import stoi

        h, r, sr = self.pair(hyp, ref)
        return {"stoi": float(stoi(r, h, sr, extended=self.extended))}

    def info(self) -> Dict[str, object]:
        return {"extended": self.extended}
