"""Reading Kaldi-style index files and audio, and writing ``utt2<key>`` files."""

from __future__ import annotations

import io
import logging
import re
import subprocess
from pathlib import Path
from typing import Dict, Mapping, Tuple

import numpy as np

from espnet2.speechlm.data.index import read_index as read_kaldi_index
from espnet2.speechlm.evaluation.base import Audio

log = logging.getLogger(__name__)

_ARK_OFFSET = re.compile(r".+\.ark:\d+$")


def read_index(path: Path) -> Dict[str, str]:
    """``utt-id value`` lines -> ordered dict; an id with no value maps to '' (an empty hypothesis).

    The toolkit's one index reader (`data.index.read_index`): bad UTF-8 is an error naming the
    line, a repeated id keeps its first line and is logged.
    """
    entries, skips = read_kaldi_index(path, keep_empty=True)
    for s in skips:
        log.warning("%s", s)
    return {k: e.content for k, e in entries.items()}


def parse_logprob(value: str) -> Tuple[float, int]:
    """``sum_logprob n_tokens`` (the part after the utt id) -> (float, int)."""
    fields = value.split()
    if len(fields) != 2:
        raise ValueError(f"expected 'sum_logprob n_tokens', got {value!r}")
    return float(fields[0]), int(float(fields[1]))


def resolve_audio_spec(spec: str, index_dir: Path) -> str:
    """Relative wav paths are tried as given, then relative to the wav.scp folder."""
    if spec.endswith("|") or _ARK_OFFSET.match(spec):
        return spec
    p = Path(spec)
    if not p.is_absolute() and not p.exists() and (index_dir / p).exists():
        return str(index_dir / p)
    return spec


def load_audio(spec: str) -> Audio:
    """Load a wav.scp value: a file path, a ``cmd |`` pipe, or ``x.ark:offset``."""
    import soundfile as sf

    if spec.endswith("|"):
        out = subprocess.run(spec[:-1], shell=True, check=True, capture_output=True)
        wav, sr = sf.read(io.BytesIO(out.stdout), dtype="float32", always_2d=True)
    elif _ARK_OFFSET.match(spec):
        try:
            import kaldiio
        except ImportError as e:
            raise RuntimeError(f"reading {spec!r} needs the kaldiio package") from e
        sr, wav = kaldiio.load_mat(spec)
        wav = np.asarray(wav, dtype=np.float32)
        if np.issubdtype(np.asarray(wav).dtype, np.integer) or np.abs(wav).max() > 1.5:
            wav = wav / 32768.0
        wav = wav.reshape(len(wav), -1)
    else:
        wav, sr = sf.read(spec, dtype="float32", always_2d=True)
    mono = wav.mean(axis=1).astype(np.float32)
    if mono.size == 0:
        raise ValueError(f"empty audio: {spec}")
    return Audio(mono, int(sr))


def resample(audio: Audio, sr: int) -> Audio:
    """Polyphase resampling (scipy), cheap and good enough for scoring."""
    if audio.sr == sr:
        return audio
    from math import gcd

    from scipy.signal import resample_poly

    g = gcd(audio.sr, sr)
    wav = resample_poly(audio.wav, sr // g, audio.sr // g).astype(np.float32)
    return Audio(wav, sr)


def trim_to_common(a: np.ndarray, b: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Sample-aligned metrics compare the overlapping part of two signals."""
    n = min(len(a), len(b))
    return a[:n], b[:n]


def write_utt2(path: Path, values: Mapping[str, object]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for utt, val in values.items():
            if isinstance(val, float):
                val = f"{val:.6g}"
            f.write(f"{utt} {val}\n")
