"""PESQ (ITU-T P.862, via the ``pesq`` package); signals are resampled to 16 kHz
(wide-band) or 8 kHz (narrow-band) and trimmed to the shorter length, so PESQ is
only meaningful for time-aligned outputs (SE/TSE, codec resynthesis)."""

from __future__ import annotations

from typing import Dict

from espnet2.speechlm.evaluation.base import METRICS, Audio, UttResult
from espnet2.speechlm.evaluation.signal_base import AudioPairMetric


@METRICS.register("pesq")
class PESQ(AudioPairMetric):
    name = "pesq"

    def __init__(self, mode: str = "wb"):
        if mode not in ("wb", "nb"):
            raise ValueError("pesq mode must be 'wb' or 'nb'")
        self.mode = mode

    def score(self, hyp: Audio, ref: Audio) -> UttResult:
        from pesq import pesq

        h, r, sr = self.pair(hyp, ref, sr=16000 if self.mode == "wb" else 8000)
        return {"pesq": float(pesq(sr, r, h, self.mode))}

    def info(self) -> Dict[str, object]:
        return {"mode": self.mode}
