"""LibriSpeech stage 1 on a tiny fake corpus tree."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest
import soundfile as sf

RECIPE = Path(__file__).resolve().parents[2] / "egs2" / "librispeech" / "speechlm1"
PREP = RECIPE / "local" / "data_prep.py"


def make_chapter(root: Path, subset: str, spk: str, chapter: str,
                 lines: List[str], n_audio: int) -> Path:
    """Write a transcript and ``n_audio`` short flac files for one chapter."""
    d = root / subset / spk / chapter
    d.mkdir(parents=True)
    (d / f"{spk}-{chapter}.trans.txt").write_text("".join(f"{x}\n" for x in lines))
    rng = np.random.default_rng(int(spk))
    for i in range(n_audio):
        t = np.arange(1600) / 16000
        audio = 0.3 * np.sin(2 * np.pi * 300 * t) + 0.01 * rng.standard_normal(t.size)
        sf.write(d / f"{spk}-{chapter}-{i:04d}.flac", audio, 16000)
    return d


@pytest.fixture()
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "LibriSpeech"
    make_chapter(root, "dev-clean", "84", "121123",
                 ["84-121123-0000 GO DO YOU HEAR", "84-121123-0001 BUT IN LESS THAN FIVE MINUTES"], 2)
    make_chapter(root, "dev-clean", "1034", "9", ["1034-9-0000 HELLO  WORLD"], 1)
    make_chapter(root, "test-clean", "103", "1240", ["103-1240-0000 CHAPTER ONE"], 1)
    return root


def run_prep(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(PREP), *args], capture_output=True, text=True)


def read_index(path: Path) -> Dict[str, str]:
    return dict(line.split(" ", 1) for line in path.read_text().splitlines())


def test_prep_writes_sorted_kaldi_dirs(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "data"
    proc = run_prep("--librispeech_dir", str(corpus), "--subsets", "dev-clean", "test-clean",
                    "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    dev = out / "dev_clean"
    wavs = read_index(dev / "wav.scp")
    assert list(wavs) == ["1034-9-0000", "84-121123-0000", "84-121123-0001"]
    assert all(Path(p).is_absolute() and sf.info(p).samplerate == 16000 for p in wavs.values())
    assert read_index(dev / "text") == {"1034-9-0000": "hello world",
                                        "84-121123-0000": "go do you hear",
                                        "84-121123-0001": "but in less than five minutes"}
    assert read_index(dev / "utt2spk") == {"1034-9-0000": "1034", "84-121123-0000": "84",
                                           "84-121123-0001": "84"}
    assert read_index(dev / "spk2utt") == {"1034": "1034-9-0000",
                                           "84": "84-121123-0000 84-121123-0001"}
    assert list(read_index(out / "test_clean" / "text")) == ["103-1240-0000"]


def test_keep_case_via_data_sh(corpus: Path, tmp_path: Path) -> None:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.run(["./local/data.sh", "--librispeech_dir", str(corpus), "--subsets",
                           "test-clean", "--out", str(tmp_path / "d"), "--keep_case", "true"],
                          cwd=RECIPE, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert read_index(tmp_path / "d" / "test_clean" / "text") == {"103-1240-0000": "CHAPTER ONE"}


@pytest.mark.parametrize("bad_line,message", [
    ("84-121123-0001", "empty transcript"),
    ("84-121123 HELLO", "bad utterance id"),
    ("85-121123-0001 HELLO", "does not belong"),
])
def test_malformed_line_names_file_and_line(tmp_path: Path, bad_line: str, message: str) -> None:
    root = tmp_path / "LibriSpeech"
    d = make_chapter(root, "dev-clean", "84", "121123", ["84-121123-0000 OK", bad_line], 2)
    proc = run_prep("--librispeech_dir", str(root), "--subsets", "dev-clean",
                    "--out", str(tmp_path / "data"))
    assert proc.returncode != 0
    assert f"{d / '84-121123.trans.txt'}:2" in proc.stderr and message in proc.stderr


def test_missing_audio_reported(tmp_path: Path) -> None:
    root = tmp_path / "LibriSpeech"
    make_chapter(root, "dev-clean", "84", "121123", ["84-121123-0000 A", "84-121123-0001 B"], 1)
    out = tmp_path / "data"
    proc = run_prep("--librispeech_dir", str(root), "--subsets", "dev-clean", "--out", str(out))
    assert proc.returncode != 0 and "84-121123-0001" in proc.stderr
    assert "84-121123-0001.flac not found" in proc.stderr
    proc = run_prep("--librispeech_dir", str(root), "--subsets", "dev-clean", "--out", str(out),
                    "--skip_missing")
    assert proc.returncode == 0, proc.stderr
    assert list(read_index(out / "dev_clean" / "wav.scp")) == ["84-121123-0000"]
    assert "84-121123-0001" in (out / "dev_clean" / "missing_audio.txt").read_text()


def test_missing_subset_is_clear(corpus: Path, tmp_path: Path) -> None:
    proc = run_prep("--librispeech_dir", str(corpus), "--subsets", "train-clean-100",
                    "--out", str(tmp_path / "data"))
    assert proc.returncode != 0 and "train-clean-100: subset not found" in proc.stderr
