"""Mel-cepstral distortion (dB) with DTW alignment.

MCD = 10/ln(10) * sqrt(2 * sum_d (c_d - c'_d)^2) averaged over aligned frames,
excluding c0 (energy). Features: see ``features`` (WORLD+SPTK by default, a
librosa-MFCC stand-in otherwise; the backend used is recorded in the summary).
"""

from __future__ import annotations

from typing import Dict

import numpy as np

from espnet2.speechlm.evaluation.base import METRICS, Audio, UttResult
from espnet2.speechlm.evaluation.dtw import dtw_path
from espnet2.speechlm.evaluation.features import drop_silence, mel_cepstrum, pick_backend
from espnet2.speechlm.evaluation.signal_base import AudioPairMetric

_K = 10.0 / np.log(10.0) * np.sqrt(2.0)


def mcd_from_cepstra(hyp: np.ndarray, ref: np.ndarray, use_dtw: bool = True) -> float:
    h, r = hyp[:, 1:], ref[:, 1:]
    if use_dtw:
        ih, ir = dtw_path(h, r)
        h, r = h[ih], r[ir]
    else:
        n = min(len(h), len(r))
        h, r = h[:n], r[:n]
    return float(np.mean(_K * np.sqrt(((h - r) ** 2).sum(-1))))


@METRICS.register("mcd")
class MCD(AudioPairMetric):
    name = "mcd"
    higher_is_better = False

    def __init__(
        self, order: int = 24, frame_period: float = 5.0, backend: str = "auto",
        dtw: bool = True, silence_db: float = 40.0, sr: int = 16000,
    ):
        self.order, self.frame_period, self.dtw = order, frame_period, dtw
        self.silence_db, self.sr = silence_db, sr
        self.backend = pick_backend(backend)

    def score(self, hyp: Audio, ref: Audio) -> UttResult:
        h, r, sr = self.pair(hyp, ref, sr=self.sr, trim=False)
        ch = mel_cepstrum(h, sr, self.order, self.frame_period, self.backend)
        cr = mel_cepstrum(r, sr, self.order, self.frame_period, self.backend)
        if self.silence_db:
            ch, _ = drop_silence(ch, h, sr, self.frame_period, self.silence_db)
            cr, _ = drop_silence(cr, r, sr, self.frame_period, self.silence_db)
        return {"mcd": mcd_from_cepstra(ch, cr, self.dtw)}

    def info(self) -> Dict[str, object]:
        feats = "WORLD+pysptk mel-cepstrum" if self.backend == "world" else "librosa MFCC (approximate MCD)"
        return {"features": feats, "order": self.order, "dtw": self.dtw, "sr": self.sr}
