"""Test audio: a flite sentence when flite is installed, else a synthetic vowel-like signal."""

from __future__ import annotations

from pathlib import Path

import pytest
import soundfile as sf
from speechlm_eval_audio import HAVE_FLITE, SENTENCE, flite_wav, synth_voice


@pytest.fixture(scope="session")
def speech_path(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("audio")
    if HAVE_FLITE:
        return flite_wav(SENTENCE, d / "speech.wav")
    path = d / "speech.wav"
    sf.write(path, synth_voice(), 16000)
    return path


@pytest.fixture(scope="session")
def speech(speech_path):
    from espnet2.speechlm.evaluation.data_io import load_audio

    return load_audio(str(speech_path))
