"""Readers turn one index line's content into the raw item a tokenizer takes."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Any, Callable, Dict, Optional

import numpy as np
import soundfile as sf

from espnet2.speechlm.data.index import Entry
from espnet2.speechlm.registry import Registry


class ItemError(ValueError):
    """One example's item cannot be read; the example is skipped with this reason."""


READERS: Registry = Registry("reader")


# A streamed WAV's data size: 0, or a huge placeholder (0xFFFFFFFF, sox's 0x7ffff000, ...),
# written when the length was not known; such a header promises nothing.
_OPEN_LENGTH_MIN = 0x7FFF0000


def declared_wav_frames(path: str) -> Optional[int]:
    """Frames a RIFF/WAVE header promises (data chunk size / block align).

    libsndfile quietly shortens a truncated WAV to what the file holds, so the promise
    must be read from the header itself. None for a non-WAV file or an open length.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:] != b"WAVE":
                return None
            block_align = None
            while True:
                chunk = f.read(8)
                if len(chunk) < 8:
                    return None
                cid, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
                if cid == b"fmt ":
                    body = f.read(size + (size & 1))
                    if len(body) < 14:
                        return None
                    block_align = struct.unpack("<H", body[12:14])[0]
                elif cid == b"data":
                    if not block_align or size == 0 or size >= _OPEN_LENGTH_MIN:
                        return None
                    return size // block_align
                else:
                    f.seek(size + (size & 1), 1)
    except OSError:
        return None


def truncation_reason(path: str, frames_read: int) -> Optional[str]:
    """Why `frames_read` frames are not the whole file (a truncated WAV), or None when they are."""
    declared = declared_wav_frames(path)
    if declared is not None and frames_read < declared:
        return f"the header promises {declared} frames, the file holds {frames_read}"
    return None


def read_audio(path: str, sample_rate: Optional[int], max_seconds: Optional[float] = None) -> np.ndarray:
    """Mono float32 waveform. The sample rate must already match (stage 2 resamples)."""
    if "|" in path or path.endswith("-"):
        raise ItemError(f"pipe commands are not supported in wav.scp ({path!r}); run stage 2 first")
    try:
        wav, sr = sf.read(path, dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises several types
        raise ItemError(f"unreadable audio {path}: {e}") from None
    if sample_rate is not None and sr != sample_rate:
        raise ItemError(f"sample rate {sr} != {sample_rate} expected by the tokenizer ({path})")
    truncated = truncation_reason(path, wav.shape[0])
    if truncated:  # a shorter utterance would silently lose the end of its transcript
        raise ItemError(f"truncated audio {path}: {truncated}")
    wav = wav.mean(axis=1)
    if wav.size == 0:
        raise ItemError(f"empty audio {path}")
    if max_seconds is not None and wav.size > max_seconds * sr:
        raise ItemError(f"audio longer than {max_seconds} s ({wav.size / sr:.1f} s)")
    return wav


class ReadContext:
    """What readers may need beyond the line itself (the data dir, other tables)."""

    def __init__(self, data_dir: Path, sample_rate: Optional[int] = None, max_seconds: Optional[float] = None,
                 prompt_seconds: float = 3.0):
        self.data_dir = Path(data_dir)
        self.sample_rate = sample_rate
        self.max_seconds = max_seconds
        self.prompt_seconds = prompt_seconds
        self._spk2utt: Optional[Dict[str, list]] = None
        self._wav: Optional[Dict[str, Entry]] = None

    def speaker_utterances(self) -> tuple[Dict[str, list], Dict[str, Entry]]:
        if self._spk2utt is None:
            from espnet2.speechlm.data.index import read_index

            utt2spk, _ = read_index(self.data_dir / "utt2spk")
            self._wav, _ = read_index(self.data_dir / "wav.scp")
            spk2utt: Dict[str, list] = {}
            for utt in sorted(utt2spk):
                if utt in self._wav:
                    spk2utt.setdefault(utt2spk[utt].content, []).append(utt)
            self._spk2utt = spk2utt
        return self._spk2utt, self._wav


@READERS.register("text")
def _text(example_id: str, content: str, ctx: ReadContext) -> str:
    return content


@READERS.register("label")
def _label(example_id: str, content: str, ctx: ReadContext) -> str:
    return content


@READERS.register("audio")
def _audio(example_id: str, content: str, ctx: ReadContext) -> np.ndarray:
    return read_audio(content, ctx.sample_rate, ctx.max_seconds)


@READERS.register("spk_prompt")
def _speaker_prompt(example_id: str, content: str, ctx: ReadContext) -> np.ndarray:
    """Audio of *another* utterance of the same speaker, chosen by a stable hash of the id."""
    spk2utt, wav = ctx.speaker_utterances()
    others = [u for u in spk2utt.get(content, []) if u != example_id]
    if not others:
        raise ItemError(f"speaker {content!r} has no other utterance for a prompt")
    pick = others[zlib.crc32(example_id.encode()) % len(others)]
    audio = read_audio(wav[pick].content, ctx.sample_rate)
    n = int(ctx.prompt_seconds * (ctx.sample_rate or 16000))
    return audio[:n]


@READERS.register("npy")
def _npy(example_id: str, content: str, ctx: ReadContext) -> np.ndarray:
    try:
        return np.load(content, allow_pickle=False)
    except Exception as e:
        raise ItemError(f"unreadable npy {content}: {e}") from None


def get_reader(name: str) -> Callable[[str, str, ReadContext], Any]:
    return READERS.get(name)
