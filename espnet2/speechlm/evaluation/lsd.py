"""Log-spectral distance (dB): per frame the RMS over frequency of the difference
of log power spectra, averaged over frames. Used for bandwidth extension / codecs."""

from __future__ import annotations

from typing import Dict

import numpy as np

from espnet2.speechlm.evaluation.base import METRICS, Audio, UttResult
from espnet2.speechlm.evaluation.signal_base import AudioPairMetric


def log_power_spec(wav: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    from scipy.signal import stft

    _, _, spec = stft(wav, nperseg=n_fft, noverlap=n_fft - hop, boundary=None, padded=False)
    return np.log10(np.abs(spec) ** 2 + 1e-10)


def lsd(est: np.ndarray, ref: np.ndarray, n_fft: int = 512, hop: int = 128) -> float:
    a, b = log_power_spec(est, n_fft, hop), log_power_spec(ref, n_fft, hop)
    per_frame = np.sqrt(np.mean((10 * (a - b)) ** 2, axis=0))
    return float(per_frame.mean())


@METRICS.register("lsd")
class LSD(AudioPairMetric):
    name = "lsd"
    higher_is_better = False

    def __init__(self, n_fft: int = 512, hop_length: int = 128):
        self.n_fft = n_fft
        self.hop_length = hop_length

    def score(self, hyp: Audio, ref: Audio) -> UttResult:
        h, r, _ = self.pair(hyp, ref)
        if len(r) < self.n_fft:
            raise ValueError("signal shorter than one FFT frame")
        return {"lsd": lsd(h, r, self.n_fft, self.hop_length)}

    def info(self) -> Dict[str, object]:
        return {"n_fft": self.n_fft, "hop_length": self.hop_length}
