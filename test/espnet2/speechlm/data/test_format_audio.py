"""Stage 2 audio formatting: resampling, mono mix-down and the drop report."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Dict

import numpy as np
import pytest
import soundfile as sf
import yaml

from espnet2.bin.speechlm_format_audio import main, out_name

FS = 16000


def sine(rate: int, seconds: float, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def write_lines(path: Path, rows: Dict[str, str]) -> None:
    path.write_text("".join(f"{k} {v}".rstrip() + "\n" for k, v in rows.items()))


@pytest.fixture()
def messy_dir(tmp_path: Path) -> Path:
    """A data dir mixing good audio with every kind of broken example."""
    wav = tmp_path / "wav"
    wav.mkdir()
    stereo = np.stack([sine(22050, 0.5), sine(22050, 0.5, 880.0)], axis=1)
    sf.write(wav / "a.wav", stereo, 22050)
    sf.write(wav / "b.flac", sine(8000, 0.25), 8000)
    sf.write(wav / "c.wav", sine(FS, 0.3), FS)
    sf.write(wav / "empty.wav", np.zeros(0, dtype=np.float32), FS)
    (wav / "garbage.wav").write_bytes(b"not audio at all")
    sf.write(wav / "e.wav", sine(FS, 0.1), FS)
    d = tmp_path / "in"
    d.mkdir()
    (d / "wav.scp").write_text(
        f"spkA_a {wav / 'a.wav'}\n"           # 1 kept (stereo 22.05k)
        f"spkA_b {wav / 'b.flac'}\n"          # 2 kept (8k flac)
        f"spkB_c {wav / 'c.wav'}\n"           # 3 kept (already 16k)
        f"spkB_empty {wav / 'empty.wav'}\n"   # 4 zero-length
        f"spkB_bad {wav / 'garbage.wav'}\n"   # 5 unreadable
        f"spkB_gone {wav / 'missing.wav'}\n"  # 6 missing file
        f"spkC_e {wav / 'e.wav'}\n"           # 7 empty text
        f"spkC_notext {wav / 'c.wav'}\n"      # 8 no transcript
        "spkC_nopath\n"                       # 9 no path
        f"spkA_a {wav / 'c.wav'}\n"           # 10 duplicate id
    )
    texts = {"spkA_a": "hello there", "spkA_b": "a b c", "spkB_c": "three",
             "spkB_empty": "x", "spkB_bad": "y", "spkB_gone": "z", "spkC_e": "",
             "spkC_nopath": "w", "spkZ_orphan": "text without audio"}
    write_lines(d / "text", texts)
    write_lines(d / "utt2spk", {k: k.split("_")[0] for k in texts})
    write_lines(d / "spk2gender", {"spkA": "f", "spkB": "m", "spkC": "f", "spkZ": "m"})
    return d


def read_index(path: Path) -> Dict[str, str]:
    rows = [line.split(maxsplit=1) for line in path.read_text().splitlines()]
    return {r[0]: r[1] if len(r) > 1 else "" for r in rows}


@pytest.mark.parametrize("nj", [1, 2])
def test_kept_and_dropped(messy_dir: Path, tmp_path: Path, nj: int) -> None:
    out = tmp_path / f"out{nj}"
    main(["--in_dir", str(messy_dir), "--out_dir", str(out), "--fs", str(FS), "--nj", str(nj)])
    wavs = read_index(out / "wav.scp")
    assert list(wavs) == ["spkA_a", "spkA_b", "spkB_c"]
    dropped = [line.split(" ", 2) for line in (out / "dropped.txt").read_text().splitlines()]
    by_id = {key: (where, reason) for where, key, reason in dropped}
    scp = f"{messy_dir / 'wav.scp'}"
    assert by_id["spkB_empty"] == (f"{scp}:4", "zero-length audio")
    assert by_id["spkB_bad"][0] == f"{scp}:5" and "unreadable" in by_id["spkB_bad"][1]
    assert by_id["spkB_gone"][0] == f"{scp}:6" and "not found" in by_id["spkB_gone"][1]
    assert by_id["spkC_e"] == (f"{messy_dir / 'text'}:7", "empty text")
    assert by_id["spkC_notext"] == (f"{scp}:8", "no transcript in text")
    assert by_id["spkC_nopath"] == (f"{scp}:9", "no audio path")
    assert by_id["spkZ_orphan"] == (f"{messy_dir / 'text'}:9", "no audio in wav.scp")
    dup = [d for d in dropped if d[1] == "spkA_a"]
    assert dup and dup[0][0] == f"{scp}:10" and "duplicate" in dup[0][2]
    # Nothing lost silently: every input id is kept or reported.
    inputs = set(read_index(messy_dir / "wav.scp")) | set(read_index(messy_dir / "text"))
    assert inputs == set(wavs) | set(by_id)


def test_audio_is_resampled_mono_pcm16(messy_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    main(["--in_dir", str(messy_dir), "--out_dir", str(out), "--fs", str(FS), "--nj", "1"])
    wavs = read_index(out / "wav.scp")
    nsamp = read_index(out / "utt2num_samples")
    expected = {"spkA_a": 0.5 * FS, "spkA_b": 0.25 * FS, "spkB_c": 0.3 * FS}
    for key, path in wavs.items():
        assert Path(path).is_absolute() and Path(path).parent == (out / "data").resolve()
        info = sf.info(path)
        assert (info.samplerate, info.channels, info.subtype) == (FS, 1, "PCM_16")
        assert abs(info.frames - expected[key]) <= 1
        assert int(nsamp[key]) == info.frames
    # The 8 kHz 440 Hz tone keeps its pitch after upsampling.
    audio, _ = sf.read(wavs["spkA_b"])
    spectrum = np.abs(np.fft.rfft(audio))
    assert abs(np.argmax(spectrum) * FS / len(audio) - 440.0) < 10.0
    # Stereo is averaged: 0.5*(sin440 + sin880) peaks below either channel's 0.5.
    a, _ = sf.read(wavs["spkA_a"])
    assert 0.3 < np.max(np.abs(a)) < 0.5


def test_side_files_restricted(messy_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    main(["--in_dir", str(messy_dir), "--out_dir", str(out), "--nj", "1"])
    kept = ["spkA_a", "spkA_b", "spkB_c"]
    assert list(read_index(out / "text")) == kept
    assert read_index(out / "text")["spkA_a"] == "hello there"
    assert list(read_index(out / "utt2spk")) == kept
    assert read_index(out / "spk2utt") == {"spkA": "spkA_a spkA_b", "spkB": "spkB_c"}
    assert read_index(out / "spk2gender") == {"spkA": "f", "spkB": "m"}
    conf = yaml.safe_load((out / "format_audio.yaml").read_text())
    assert conf["fs"] == FS and Path(conf["out_dir"]).is_absolute()


def test_unsafe_ids_get_distinct_names() -> None:
    assert out_name("spk_1") == "spk_1.wav"
    a, b = out_name("a/b"), out_name("a_b/")
    assert "/" not in a and a != b and a != out_name("a_b")


def test_cli_help() -> None:
    proc = subprocess.run([sys.executable, "-m", "espnet2.bin.speechlm_format_audio", "--help"],
                          capture_output=True, text=True, cwd=Path(__file__).parents[4])
    assert proc.returncode == 0 and "--fs" in proc.stdout


def test_truncated_wav_is_dropped_not_shortened(tmp_path: Path) -> None:
    wav = tmp_path / "wav"
    wav.mkdir()
    sf.write(wav / "ok.wav", sine(FS, 0.2), FS)
    sf.write(wav / "full.wav", sine(FS, 0.2), FS)
    data = (wav / "full.wav").read_bytes()
    (wav / "cut.wav").write_bytes(data[: len(data) - 2000])  # header still promises 3200 frames
    d = tmp_path / "in"
    d.mkdir()
    write_lines(d / "wav.scp", {"u_ok": str(wav / "ok.wav"), "u_cut": str(wav / "cut.wav")})
    write_lines(d / "text", {"u_ok": "hello", "u_cut": "a transcript longer than the audio"})
    out = tmp_path / "out"
    main(["--in_dir", str(d), "--out_dir", str(out), "--nj", "1"])
    assert list(read_index(out / "wav.scp")) == ["u_ok"]
    (where, key, reason), = [line.split(" ", 2) for line in (out / "dropped.txt").read_text().splitlines()]
    assert (where, key) == (f"{d / 'wav.scp'}:2", "u_cut")
    assert reason.startswith("truncated audio (the header promises 3200 frames, the file holds 2200")


def test_latin1_byte_in_text_is_one_clear_error(messy_dir: Path, tmp_path: Path, capsys) -> None:
    """It used to crash stage 2 with a raw UnicodeDecodeError; stage 5's message, from the same reader."""
    text = messy_dir / "text"
    text.write_bytes(text.read_bytes() + "spkA_b caf\u00e9\n".encode("latin-1"))
    with pytest.raises(SystemExit) as e:
        main(["--in_dir", str(messy_dir), "--out_dir", str(tmp_path / "out"), "--fs", str(FS), "--nj", "1"])
    assert e.value.code == 1
    err = capsys.readouterr().err
    assert f"{text}:10: not valid UTF-8" in err and "Traceback" not in err
