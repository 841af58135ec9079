"""Shared base for metrics that compare a generated waveform to a reference one."""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from espnet2.speechlm.evaluation.base import Audio, Metric
from espnet2.speechlm.evaluation.data_io import resample, trim_to_common


class AudioPairMetric(Metric):
    default_hyp = "wav.scp"
    default_ref = "wav.scp"

    def pair(self, hyp: Audio, ref: Audio, sr: Optional[int] = None, trim: bool = True) -> Tuple[np.ndarray, np.ndarray, int]:
        """Bring both signals to one rate (``sr`` or the reference's) and length."""
        target = sr or ref.sr
        h, r = resample(hyp, target).wav, resample(ref, target).wav
        if trim:
            h, r = trim_to_common(h, r)
        return h, r, target
