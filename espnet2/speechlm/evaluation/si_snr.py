"""Scale-invariant SNR in dB (zero-mean signals, projection onto the reference).

An eps keeps identical signals finite (they score ~+100 dB or more rather than inf).
"""

from __future__ import annotations

import numpy as np

from espnet2.speechlm.evaluation.base import METRICS, Audio, UttResult
from espnet2.speechlm.evaluation.signal_base import AudioPairMetric


def si_snr(est: np.ndarray, ref: np.ndarray, eps: float = 1e-10) -> float:
    est = est.astype(np.float64) - est.mean()
    ref = ref.astype(np.float64) - ref.mean()
    target = (np.dot(est, ref) / (np.dot(ref, ref) + eps)) * ref
    noise = est - target
    return float(10 * np.log10((np.dot(target, target) + eps) / (np.dot(noise, noise) + eps)))


@METRICS.register("si_snr")
class SISNR(AudioPairMetric):
    name = "si_snr"

    def score(self, hyp: Audio, ref: Audio) -> UttResult:
        h, r, _ = self.pair(hyp, ref)
        return {"si_snr": si_snr(h, r)}
