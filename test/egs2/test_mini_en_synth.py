"""mini_en stage 1: grammar properties and a tiny end-to-end synthesis."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest
import soundfile as sf

RECIPE = Path(__file__).resolve().parents[2] / "egs2" / "mini_en" / "speechlm1"


def load_synth():
    spec = importlib.util.spec_from_file_location("mini_en_synth_corpus",
                                                  RECIPE / "local" / "synth_corpus.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look the module up by name
    spec.loader.exec_module(module)
    return module


synth = load_synth()


def test_grammar_defaults_are_sane() -> None:
    sizes = {"train": 1500, "valid": 100, "test": 100}
    sents = synth.make_sentences(0, sizes)
    assert {k: len(v) for k, v in sents.items()} == sizes
    assert 150 <= len(synth.vocabulary()) <= 300
    train = set(sents["train"])
    assert len(train) == 1500
    for split, lines in sents.items():
        assert len(set(lines)) == len(lines)
        for s in lines:
            words = s.split()
            assert 5 <= len(words) <= 12 and s == s.lower()
            assert set(words) <= synth.vocabulary(), s
    assert not train & set(sents["valid"]) and not train & set(sents["test"])
    assert not set(sents["valid"]) & set(sents["test"])
    train_words = {w for s in train for w in s.split()}
    assert all(set(s.split()) <= train_words for s in sents["test"])


def test_grammar_is_deterministic() -> None:
    sizes = {"train": 50, "valid": 5, "test": 5}
    assert synth.make_sentences(3, sizes) == synth.make_sentences(3, sizes)
    assert synth.make_sentences(3, sizes) != synth.make_sentences(4, sizes)
    bigger = synth.make_sentences(3, {"train": 50, "valid": 9, "test": 9})
    assert bigger["train"] == synth.make_sentences(3, sizes)["train"]


def test_speaker_ids_sort_consistently() -> None:
    ids = [s.spk_id for s in synth.SPEAKERS]
    assert len(set(ids)) == len(ids) >= 8
    assert not any(a != b and b.startswith(a) for a in ids for b in ids)


def read_index(path: Path) -> Dict[str, str]:
    rows = [line.split(maxsplit=1) for line in path.read_text().splitlines()]
    return {r[0]: r[1] for r in rows}


def check_kaldi_dir(d: Path) -> List[str]:
    """Every index sorted, same ids everywhere, ids prefixed by speaker."""
    for name in ("wav.scp", "text", "utt2spk", "spk2utt"):
        keys = [line.split()[0] for line in (d / name).read_text().splitlines()]
        assert keys == sorted(keys) and len(set(keys)) == len(keys), name
    wavs, texts, u2s = (read_index(d / n) for n in ("wav.scp", "text", "utt2spk"))
    assert list(wavs) == list(texts) == list(u2s)
    assert list(u2s.values()) == sorted(u2s.values())  # Kaldi sort rule
    for utt, spk in u2s.items():
        assert utt.startswith(spk + "_")
    s2u = {spk: utts.split() for spk, utts in read_index(d / "spk2utt").items()}
    assert sorted(u for utts in s2u.values() for u in utts) == list(u2s)
    assert all(u2s[u] == spk for spk, utts in s2u.items() for u in utts)
    for path in wavs.values():
        assert Path(path).is_absolute() and sf.info(path).frames > 0
    return list(texts.values())


@pytest.mark.skipif(shutil.which("flite") is None and shutil.which("espeak-ng") is None,
                    reason="neither flite nor espeak-ng is installed (apt-get install flite espeak-ng)")
def test_tiny_corpus_via_data_sh(tmp_path: Path) -> None:
    recipe = tmp_path / "recipe"
    shutil.copytree(RECIPE / "local", recipe / "local")
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    cmd = ["./local/data.sh", "--num_train", "8", "--num_valid", "2", "--num_test", "2",
           "--seed", "1", "--nj", "2"]
    proc = subprocess.run(cmd, cwd=recipe, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    texts = {s: check_kaldi_dir(recipe / "data" / s) for s in ("train", "valid", "test")}
    assert [len(texts[s]) for s in ("train", "valid", "test")] == [8, 2, 2]
    assert not set(texts["train"]) & (set(texts["test"]) | set(texts["valid"]))
    wav_dir = recipe / "downloads" / "mini_en" / "wav"
    assert len(list(wav_dir.glob("*/*.wav"))) == 12
    # Re-run: everything cached, identical outputs.
    before = (recipe / "data" / "test" / "text").read_text()
    again = subprocess.run(cmd, cwd=recipe, env=env, capture_output=True, text=True)
    assert again.returncode == 0 and "0 to synthesize" in again.stdout
    assert (recipe / "data" / "test" / "text").read_text() == before
