"""Audio reading for preparation: a truncated WAV is an error, never a shorter utterance."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from espnet2.speechlm.data.readers import ItemError, declared_wav_frames, read_audio


def truncated_copy(src: Path, dst: Path, drop_bytes: int) -> Path:
    """`src` with its last bytes cut off, header untouched (an interrupted copy)."""
    data = src.read_bytes()
    dst.write_bytes(data[: len(data) - drop_bytes])
    return dst


@pytest.fixture
def wav(tmp_path: Path) -> Path:
    p = tmp_path / "full.wav"
    sf.write(p, np.full(1600, 0.1, dtype=np.float32), 16000, subtype="PCM_16")
    return p


def test_complete_wav_reads_whole(wav: Path) -> None:
    assert declared_wav_frames(str(wav)) == 1600
    assert read_audio(str(wav), 16000).shape == (1600,)


def test_truncated_wav_is_an_item_error(wav: Path, tmp_path: Path) -> None:
    cut = truncated_copy(wav, tmp_path / "cut.wav", 1000)  # 500 of 1600 frames lost
    assert sf.read(cut)[0].shape[0] == 1100  # soundfile alone would hide it
    with pytest.raises(ItemError, match=r"truncated audio .*cut\.wav.*1600 frames.*holds 1100"):
        read_audio(str(cut), 16000)


def test_streamed_header_promises_nothing(wav: Path, tmp_path: Path) -> None:
    """A WAV written to a pipe has 0xFFFFFFFF as data size: not a truncation."""
    data = bytearray(wav.read_bytes())
    at = data.index(b"data") + 4
    data[at : at + 4] = struct.pack("<I", 0xFFFFFFFF)
    p = tmp_path / "streamed.wav"
    p.write_bytes(bytes(data))
    assert declared_wav_frames(str(p)) is None


def test_non_wav_has_no_declared_length(tmp_path: Path) -> None:
    p = tmp_path / "a.flac"
    sf.write(p, np.zeros(160, dtype=np.float32), 16000)
    assert declared_wav_frames(str(p)) is None
