"""F0 RMSE (Hz) and Pearson correlation over frames voiced in both signals,
after DTW alignment on mel-cepstra (or plain truncation with ``align: none``).
Also reports the voiced/unvoiced decision error rate on the aligned frames."""

from __future__ import annotations

from typing import Dict

import numpy as np

from espnet2.speechlm.evaluation.base import METRICS, Audio, UttResult
from espnet2.speechlm.evaluation.dtw import dtw_path
from espnet2.speechlm.evaluation.features import f0_contour, mel_cepstrum, pick_backend
from espnet2.speechlm.evaluation.signal_base import AudioPairMetric


@METRICS.register("f0")
class F0(AudioPairMetric):
    name = "f0"

    def __init__(
        self, f0_floor: float = 60.0, f0_ceil: float = 600.0, frame_period: float = 5.0,
        align: str = "dtw", backend: str = "auto", sr: int = 16000,
    ):
        if align not in ("dtw", "none"):
            raise ValueError("align must be 'dtw' or 'none'")
        self.f0_floor, self.f0_ceil, self.frame_period = f0_floor, f0_ceil, frame_period
        self.align, self.sr = align, sr
        self.backend = pick_backend(backend)

    def score(self, hyp: Audio, ref: Audio) -> UttResult:
        h, r, sr = self.pair(hyp, ref, sr=self.sr, trim=False)
        fh = f0_contour(h, sr, self.frame_period, self.f0_floor, self.f0_ceil, self.backend)
        fr = f0_contour(r, sr, self.frame_period, self.f0_floor, self.f0_ceil, self.backend)
        if self.align == "dtw":
            ch = mel_cepstrum(h, sr, 24, self.frame_period, self.backend)[: len(fh)]
            cr = mel_cepstrum(r, sr, 24, self.frame_period, self.backend)[: len(fr)]
            fh, fr = fh[: len(ch)], fr[: len(cr)]
            ih, ir = dtw_path(ch[:, 1:], cr[:, 1:])
            fh, fr = fh[ih], fr[ir]
        else:
            n = min(len(fh), len(fr))
            fh, fr = fh[:n], fr[:n]
        vh, vr = fh > 0, fr > 0
        both = vh & vr
        out: UttResult = {"f0_vuv_error": float(np.mean(vh != vr))}
        if both.sum() >= 2:
            a, b = fh[both], fr[both]
            out["f0_rmse"] = float(np.sqrt(np.mean((a - b) ** 2)))
            out["f0_corr"] = float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else float("nan")
        else:
            out["f0_rmse"] = float("nan")
            out["f0_corr"] = float("nan")
        return out

    def info(self) -> Dict[str, object]:
        return {"f0": "pyworld DIO+StoneMask" if self.backend == "world" else "librosa.pyin", "align": self.align}
