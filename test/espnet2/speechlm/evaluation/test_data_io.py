import shutil

import numpy as np
import pytest

from espnet2.speechlm.evaluation.data_io import load_audio, parse_logprob, read_index


def test_read_index_keeps_empty_hypotheses(tmp_path):
    p = tmp_path / "text"
    p.write_text("a hello  world\nb\n\nc x\n")
    assert read_index(p) == {"a": "hello  world", "b": "", "c": "x"}


def test_parse_logprob():
    assert parse_logprob("-12.5 7") == (-12.5, 7)
    with pytest.raises(ValueError):
        parse_logprob("-12.5")


def test_pipe_entry_matches_file(speech_path):
    if shutil.which("sox") is None:
        pytest.skip("sox not installed")
    direct = load_audio(str(speech_path))
    piped = load_audio(f"sox {speech_path} -t wav - |")
    assert piped.sr == direct.sr
    np.testing.assert_allclose(piped.wav, direct.wav, atol=1e-4)
