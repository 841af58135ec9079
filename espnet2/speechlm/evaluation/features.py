"""Frame features for MCD / F0 metrics.

Backend "world": WORLD (pyworld: DIO+StoneMask F0, CheapTrick envelope) and
pysptk ``sp2mc`` mel-cepstrum with the all-pass constant for the sampling rate;
this is the usual MCD recipe. Backend "mfcc": librosa MFCCs (DCT of log-mel)
used as a stand-in mel-cepstrum when pyworld/pysptk are missing; its values are
*not* comparable with published MCD numbers. F0 falls back to librosa.pyin.
"""

from __future__ import annotations

import functools
from typing import Tuple

import numpy as np

from espnet2.speechlm.evaluation._compat import optional_import


def world_available() -> bool:
    return optional_import("pyworld") is not None and optional_import("pysptk") is not None


def pick_backend(backend: str) -> str:
    if backend == "auto":
        return "world" if world_available() else "mfcc"
    if backend == "world" and not world_available():
        raise RuntimeError("backend 'world' needs pyworld and pysptk (pip install pyworld pysptk)")
    if backend not in ("world", "mfcc"):
        raise ValueError(f"unknown feature backend {backend!r}; use auto, world or mfcc")
    return backend


def _world_f0(wav: np.ndarray, sr: int, frame_period: float, f0_floor: float, f0_ceil: float):
    pw = optional_import("pyworld")
    x = wav.astype(np.float64)
    f0, t = pw.dio(x, sr, f0_floor=f0_floor, f0_ceil=f0_ceil, frame_period=frame_period)
    f0 = pw.stonemask(x, f0, t, sr)
    return x, f0, t


def mel_cepstrum(
    wav: np.ndarray, sr: int, order: int = 24, frame_period: float = 5.0, backend: str = "world"
) -> np.ndarray:
    """[T, order+1] mel-cepstra (column 0 is energy-like)."""
    if backend == "world":
        pw, sptk = optional_import("pyworld"), optional_import("pysptk")
        x, f0, t = _world_f0(wav, sr, frame_period, 71.0, 800.0)
        sp = pw.cheaptrick(x, f0, t, sr)
        return sp2mc(sp, order, mcep_alpha(sr))
    import librosa

    hop = int(round(sr * frame_period / 1000))
    n_fft = 1 << int(np.ceil(np.log2(sr * 0.025)))
    return librosa.feature.mfcc(
        y=wav.astype(np.float32), sr=sr, n_mfcc=order + 1, n_fft=n_fft, hop_length=hop, n_mels=80
    ).T


@functools.lru_cache(maxsize=None)
def mcep_alpha(sr: int) -> float:
    """pysptk's all-pass constant for ``sr`` (a grid search: ~80 ms a call, so computed once)."""
    return optional_import("pysptk").util.mcepalpha(sr)


def sp2mc(sp: np.ndarray, order: int, alpha: float) -> np.ndarray:
    """``pysptk.sp2mc`` on a [T, F] power spectrogram, equal to it bit for bit but without its
    per-frame Python wrappers (``apply_along_axis`` + signature checks: ~2/3 of MCD's time):
    log power -> real cepstrum (one batched irfft) -> SPTK's C ``freqt`` frame by frame."""
    sptk = optional_import("pysptk")
    try:
        from pysptk import _sptk
    except ImportError:  # another pysptk layout: its public (slower) function
        return np.asarray(sptk.sp2mc(sp, order=order, alpha=alpha))
    c = np.fft.irfft(np.log(np.asarray(sp, dtype=np.float64)), axis=-1)
    c[:, 0] /= 2.0
    return np.stack([_sptk.freqt(row, order, alpha) for row in c]) if len(c) else np.zeros((0, order + 1))


def f0_contour(
    wav: np.ndarray, sr: int, frame_period: float = 5.0, f0_floor: float = 60.0, f0_ceil: float = 600.0, backend: str = "world"
) -> np.ndarray:
    """F0 in Hz per frame, 0 where unvoiced."""
    if backend == "world":
        _, f0, _ = _world_f0(wav, sr, frame_period, f0_floor, f0_ceil)
        return np.asarray(f0)
    import librosa

    hop = int(round(sr * frame_period / 1000))
    f0, voiced, _ = librosa.pyin(wav.astype(np.float32), fmin=f0_floor, fmax=f0_ceil, sr=sr, hop_length=hop, frame_length=4 * hop if 4 * hop >= 1024 else 1024)
    return np.where(voiced, np.nan_to_num(f0), 0.0)


def drop_silence(feats: np.ndarray, wav: np.ndarray, sr: int, frame_period: float, silence_db: float) -> Tuple[np.ndarray, np.ndarray]:
    """Keep frames whose energy is within ``silence_db`` of the loudest frame; returns (feats, kept index)."""
    hop = max(1, int(round(sr * frame_period / 1000)))
    n = len(feats)
    energy = np.array([np.sum(wav[i * hop : i * hop + 2 * hop] ** 2) + 1e-12 for i in range(n)])
    db = 10 * np.log10(energy)
    keep = np.nonzero(db >= db.max() - silence_db)[0]
    return feats[keep], keep
