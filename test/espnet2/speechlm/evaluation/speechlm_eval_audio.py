"""Helpers that make test audio: flite speech, or a synthetic vowel-like signal."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf

SENTENCE = "the quick brown fox jumps over the lazy dog"


def synth_voice(sr: int = 16000, dur: float = 1.5, f0: float = 120.0, seed: int = 0) -> np.ndarray:
    """Pulse train with vibrato through two formant resonators, plus a little noise."""
    from scipy.signal import lfilter

    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * dur)) / sr
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.05 * np.sin(2 * np.pi * 3 * t))) / sr
    src = (np.sin(phase) > 0.95).astype(float)
    for fc, bw in ((700, 100), (1200, 120)):
        r = np.exp(-np.pi * bw / sr)
        src = lfilter([1], [1, -2 * r * np.cos(2 * np.pi * fc / sr), r * r], src)
    env = np.minimum(1, np.minimum(t, dur - t) * 10)
    x = src * env + 0.001 * rng.standard_normal(len(t))
    return (0.5 * x / np.abs(x).max()).astype(np.float32)


def flite_wav(text: str, out: Path, sr: int = 16000, voice: str | None = None) -> Path:
    raw = out.with_suffix(".raw.wav")
    subprocess.run(["flite", *(["-voice", voice] if voice else []), "-t", text, "-o", str(raw)], check=True, capture_output=True)
    wav, in_sr = sf.read(raw, dtype="float32")
    from scipy.signal import resample_poly

    sf.write(out, resample_poly(wav, sr, in_sr).astype(np.float32), sr)
    return out


HAVE_FLITE = shutil.which("flite") is not None
