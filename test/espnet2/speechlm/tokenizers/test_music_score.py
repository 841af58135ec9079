"""music_score: PITCH:DURATION[:LYRIC] notes -> (pitch, duration, lyric) token triples and back."""

from __future__ import annotations

import numpy as np
import pytest

from espnet2.speechlm.tokenizers import build_tokenizer, train_tokenizer
from espnet2.speechlm.tokenizers.music_score import DURATION_OFFSET, PITCH_OFFSET, parse_pitch

TRAIN = ["C4:0.50:la D#4:0.25:la rest:0.50", "A4:1.00:lu 60:0.30:li rest:0.20:SP"]


@pytest.fixture()
def tok(tmp_path):
    return train_tokenizer("music_score", TRAIN, tmp_path, resolution=0.01, max_duration=5.0)


def test_pitch_names():
    assert [parse_pitch(p) for p in ["C4", "c4", "A4", "C#4", "Db4", "Cb4", "B#3", "C-1", "G9", "60", "REST"]] == [
        60, 60, 69, 61, 61, 59, 60, 0, 127, 60, None]


def test_layout_and_values(tok):
    assert tok.codebook_size == 2 + 129 + 500 + 4  # <unk>, <nolyric>, pitches, durations, {SP, la, li, lu}
    ids = tok.tokenize(["C4:0.50:la rest:0.25 A4:1.00:zz"])[0]
    assert ids.shape == (9, 1) and ids.dtype == np.int64
    p, d, lyr = ids.reshape(-1, 3).T
    np.testing.assert_array_equal(p, [PITCH_OFFSET + 60, PITCH_OFFSET + 128, PITCH_OFFSET + 69])
    np.testing.assert_array_equal(d, [DURATION_OFFSET + 49, DURATION_OFFSET + 24, DURATION_OFFSET + 99])
    assert lyr[1] == 1 and lyr[2] == 0 and lyr[0] >= tok.lyric_offset  # no lyric, unseen lyric, known lyric
    strings = tok.token_strings()
    assert len(strings) == tok.codebook_size
    assert [strings[i] for i in ids[:3, 0]] == ["pitch:C4", "dur:0.50", "lyric:la"]
    assert strings[1] == "<nolyric>" and strings[PITCH_OFFSET + 128] == "pitch:rest"


def test_round_trip_and_quantisation(tok):
    canonical = "C4:0.50:la D#4:0.25:la rest:0.50 A4:1.00:lu C4:0.30:li rest:0.20:SP"
    ids = tok.tokenize([canonical])[0]
    assert tok.detokenize(ids) == canonical
    # other spellings of the same score come back canonical; durations snap to the 10 ms grid (half-up)
    rough = "c4:0.504:la Eb4:0.245:la 0:0.001 G9:0.015:xyz"
    text = tok.detokenize(tok.tokenize([rough])[0])
    assert text == "C4:0.50:la D#4:0.25:la C-1:0.01 G9:0.02:<unk>"
    np.testing.assert_array_equal(tok.tokenize([text])[0], tok.tokenize([rough])[0])


def test_batch_equals_one_by_one_and_deterministic(tok, tmp_path):
    items = TRAIN + ["", "E5:2.50:la"]
    batch = tok.tokenize(items)
    assert batch[2].shape == (0, 1)
    for x, y in zip(items, batch):
        np.testing.assert_array_equal(tok.tokenize([x])[0], y)
    again = train_tokenizer("music_score", TRAIN[::-1], tmp_path / "b", resolution=0.01, max_duration=5.0)
    assert again.token_strings() == tok.token_strings()
    loaded = build_tokenizer("music_score", tmp_path)
    for x, y in zip(items, loaded.tokenize(items)):
        np.testing.assert_array_equal(tok.tokenize([x])[0], y)


@pytest.mark.parametrize("score,match", [
    ("C4:0.5:la H4:0.5", r"item 0: note 1 'H4:0.5': unknown pitch 'H4'"),
    ("C4:0.5 C4", r"note 1 'C4': a note is PITCH:DURATION"),
    ("C4:0.5 D4:fast", r"note 1 'D4:fast': duration 'fast' is not a number"),
    ("C4:-0.5", r"note 0 'C4:-0.5': duration '-0.5' must be a positive"),
    ("C4:0.5 128:0.5", r"note 1 '128:0.5': pitch '128' is MIDI 128, outside 0-127"),
    ("C4:0.5 A4:6.0:la", r"note 1: duration 6.0 s is longer than max_duration 5.0 s"),
    ("C4:0.5:<nolyric>", r"note 0 .*reserved"),
])
def test_bad_notes_are_named(tok, score, match):
    with pytest.raises(ValueError, match=match):
        tok.tokenize(["C4:0.5", score][1:])


def test_decode_errors_and_api_errors(tok, tmp_path):
    good = tok.tokenize(["C4:0.50:la D4:0.25"])[0]
    with pytest.raises(ValueError, match="not a whole number"):
        tok.detokenize(good[:4])
    swapped = good.copy()
    swapped[3, 0], swapped[4, 0] = good[4, 0], good[3, 0]
    with pytest.raises(ValueError, match="note 1: token .* is not a pitch"):
        tok.detokenize(swapped)
    with pytest.raises(TypeError, match="list of scores"):
        tok.tokenize("C4:0.5")
    with pytest.raises(TypeError, match="must be a str"):
        tok.tokenize([None])
    with pytest.raises(ValueError, match="trained model_dir"):
        build_tokenizer("music_score", None)
    with pytest.raises(ValueError, match="resolution=0.02 in config but .* trained with 0.01"):
        build_tokenizer("music_score", tmp_path, resolution=0.02)
    with pytest.raises(ValueError, match="no notes"):
        train_tokenizer("music_score", ["", " "], tmp_path / "e")
