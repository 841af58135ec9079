import numpy as np
import pytest

from espnet2.speechlm.vocab import KNOWN_INDICATORS, KNOWN_TASKS, N_SPECIAL, PAD, SOS_EOS, JointVocabulary


def make_vocab() -> JointVocabulary:
    v = JointVocabulary()
    v.add_task("asr")
    v.add_tokenizer("codec", "toy", 16, 4)
    v.add_tokenizer("text", "char", 30, 1)
    return v


def test_fixed_special_slots():
    v = make_vocab()
    assert (PAD, SOS_EOS) == (0, 2)
    assert v.task("asr") == KNOWN_TASKS["asr"]
    assert v.indicator("text") == KNOWN_INDICATORS["text"]
    assert v.range("codec").offset == N_SPECIAL
    assert v.range("text").offset == N_SPECIAL + 64
    assert v.size == N_SPECIAL + 64 + 30
    assert v.max_streams == 4


def test_global_ids_per_stream_and_back():
    v = make_vocab()
    local = np.array([[0, 1, 2, 15], [3, 3, 3, 3]])
    glob = v.to_global("codec", local)
    assert glob[0].tolist() == [256, 256 + 16 + 1, 256 + 32 + 2, 256 + 48 + 15]
    np.testing.assert_array_equal(v.to_local("codec", glob), local)
    with pytest.raises(ValueError, match="outside"):
        v.to_global("codec", np.array([[16, 0, 0, 0]]))
    with pytest.raises(ValueError, match=r"expected \[T, 4\]"):
        v.to_global("codec", np.zeros((3, 1)))


def test_extending_keeps_every_id(tmp_path):
    v = make_vocab()
    v.save(tmp_path)
    before = (tmp_path / "vocab.txt").read_text().splitlines()
    w = JointVocabulary.load(tmp_path)
    w.add_task("my_new_task")
    w.add_tokenizer("my_units", "kmeans", 10, 1)
    w.add_tokenizer("text", "char", 30, 1)  # same shape: no-op
    w.save(tmp_path)
    after = (tmp_path / "vocab.txt").read_text().splitlines()
    changed = [(a, b) for a, b in zip(before, after) if a != b]
    # only reserved slots may gain a name (the new task and indicator)
    assert all(a.split()[1].startswith("<reserved_") for a, _ in changed), changed
    assert after[: len(before)][N_SPECIAL:] == before[N_SPECIAL:]
    for name in ("codec", "text"):
        assert w.range(name) == v.range(name)
    assert w.indicators["text"] == v.indicators["text"] and w.tasks["asr"] == v.tasks["asr"]
    # the new task and tokenizer take free slots, not a known one
    assert w.tasks["my_new_task"] not in KNOWN_TASKS.values()
    assert w.indicators["my_units"] not in KNOWN_INDICATORS.values()
    assert w.range("my_units").offset == v.size


def test_shape_change_is_refused():
    v = make_vocab()
    with pytest.raises(ValueError, match="changed shape"):
        v.add_tokenizer("text", "char", 31, 1)


def test_vocab_txt_lists_every_id(tmp_path):
    v = make_vocab()
    v.save(tmp_path, {"text": [chr(97 + i) for i in range(30)]})
    lines = (tmp_path / "vocab.txt").read_text().splitlines()
    assert len(lines) == v.size
    assert [int(l.split()[0]) for l in lines] == list(range(v.size))
    assert lines[v.indicator("text")].endswith("<text_start>")
    assert lines[v.range("text").offset].endswith("text:0:a")
