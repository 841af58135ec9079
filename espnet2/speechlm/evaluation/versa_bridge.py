"""Delegate metrics to VERSA when it is installed.

VERSA (``versa.scorer_shared``) is the reference implementation of many speech
metrics; when importable we route the metrics it covers through it so numbers
match published VERSA results. Our native implementations remain the fallback.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from typing import Any, Dict, Tuple

import numpy as np

from espnet2.speechlm.evaluation.base import Audio, Metric, UttResult
from espnet2.speechlm.evaluation.data_io import resample

# our metric name -> (VERSA config name, {VERSA output key: our key})
VERSA_METRICS: Dict[str, Tuple[str, Dict[str, str]]] = {
    "pesq": ("pesq", {"pesq": "pesq"}),
    "stoi": ("stoi", {"stoi": "stoi"}),
    "mcd": ("mcd_f0", {"mcd": "mcd"}),
    "f0": ("mcd_f0", {"f0rmse": "f0_rmse", "f0corr": "f0_corr"}),
    "spk_sim": ("speaker", {"spk_similarity": "spk_sim"}),
    "si_snr": ("signal_metric", {"si_snr": "si_snr"}),
}


def versa_available() -> bool:
    if "versa" in sys.modules:
        return sys.modules["versa"] is not None
    return importlib.util.find_spec("versa") is not None


class VersaMetric(Metric):
    """Wraps one VERSA score module behind our Metric interface."""

    default_hyp = "wav.scp"
    default_ref = "wav.scp"

    def __init__(self, name: str, options: Dict[str, Any], use_gpu: bool = False):
        self.name = name
        versa_name, self.key_map = VERSA_METRICS[name]
        self.shared = importlib.import_module("versa.scorer_shared")
        self.modules = self.shared.load_score_modules(
            [{"name": versa_name, **options}], use_gt=True, use_gpu=use_gpu
        )
        if not self.modules:
            raise RuntimeError(f"VERSA did not load metric {versa_name!r}")
        self.versa_name = versa_name

    def score(self, hyp: Audio, ref: Audio) -> UttResult:
        ref = resample(ref, hyp.sr)
        raw = self.shared.use_score_modules(self.modules, hyp.wav.astype(np.float64), ref.wav.astype(np.float64), hyp.sr)
        out = {ours: float(raw[theirs]) for theirs, ours in self.key_map.items() if theirs in raw}
        if not out:
            raise RuntimeError(f"VERSA returned none of {sorted(self.key_map)}: got {sorted(raw)}")
        return out

    def info(self) -> Dict[str, object]:
        return {"backend": f"versa:{self.versa_name}"}
