"""Shared fixtures: tiny data dirs, and a tokenizer config with a toy audio tokenizer (toy_tokenizers.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pytest
import soundfile as sf
import torch


@pytest.fixture
def one_thread():
    """Tiny models are faster single-threaded (and the CI box has 2 busy cores)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def write_wav(path: Path, seconds: float, freq: float, sr: int = 16000) -> None:
    t = np.arange(int(seconds * sr)) / sr
    sf.write(path, 0.3 * np.sin(2 * np.pi * freq * t).astype(np.float32), sr)


@pytest.fixture
def tiny_data_dir(tmp_path: Path) -> Path:
    """8 utterances of 2 speakers with wav.scp, text, utt2spk (all valid)."""
    d = tmp_path / "data"
    (d / "wav").mkdir(parents=True)
    words = ["hello world", "good morning", "see you", "the cat", "a dog runs", "blue sky", "red car", "big house"]
    wav_scp, text, utt2spk = [], [], []
    for i, sentence in enumerate(words):
        spk = f"spk{i % 2}"
        utt = f"{spk}_utt{i:02d}"
        write_wav(d / "wav" / f"{utt}.wav", 0.2 + 0.05 * i, 200 + 50 * i)
        wav_scp.append(f"{utt} {d / 'wav' / (utt + '.wav')}")
        text.append(f"{utt} {sentence}")
        utt2spk.append(f"{utt} {spk}")
    for name, rows in [("wav.scp", wav_scp), ("text", text), ("utt2spk", utt2spk)]:
        (d / name).write_text("\n".join(sorted(rows)) + "\n")
    return d


@pytest.fixture
def tokenizer_config(tmp_path: Path) -> Path:
    p = tmp_path / "tokenizers.yaml"
    p.write_text("text: {type: char}\ncodec: {type: 'toy_tokenizers:ToyAudioTokenizer', conf: {codebook_size: 16}}\nspk_id: {type: label}\n")
    return p
