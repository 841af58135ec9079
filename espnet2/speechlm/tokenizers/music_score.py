"""Music-score tokenizer for singing voice synthesis (the `svs` template's `score` item).

Score format (one score per index line, e.g. data/<split>/score):

    C4:0.50:la D#4:0.25:la Eb4:0.25 rest:0.50 62:1.00:lu

Notes are separated by whitespace; a note is `PITCH:DURATION[:LYRIC]`:
    PITCH     a note name in scientific pitch notation, letter A-G (any case),
              optional accidental `#` or `b`, octave (may be negative): C4 = MIDI 60,
              A4 = MIDI 69, C-1 = MIDI 0; or a MIDI number 0-127; or `rest`.
    DURATION  seconds, > 0 and at most `max_duration`.
    LYRIC     optional syllable (or phone) sung on the note: no whitespace, no `:`, not
              `<nolyric>`. A note without one (a rest, a melisma) gets `<nolyric>`;
              `<unk>` stands for a lyric outside the trained inventory.

Tokens: one stream (so a score never widens the sequence), three tokens per note
in a fixed order `pitch, duration, lyric`, so position alone says what a token is
and decoding needs no search. Local ids:

    0                  <unk>        lyric not in the trained inventory
    1                  <nolyric>    note sung without a lyric
    2 .. 130           pitch        MIDI 0..127, then `rest`
    131 .. 130+D       duration     k * resolution seconds, k = 1..D, D = round(max_duration / resolution)
    131+D ..           lyric        the syllables seen in training, sorted

Durations are quantised to the nearest multiple of `resolution` (half-up; default
0.01 s), and a note shorter than half a step still gets one step, so every note
keeps a positive length. `detokenize` writes the score back in canonical form:
sharps for accidentals (`Eb4` comes back as `D#4`), durations with as many decimals
as the resolution needs, lyrics as they were (or `<unk>`). Re-tokenizing that text
gives the same tokens.

The lyric inventory is trained (`train`), like the `label` tokenizer; pitches and
durations are fixed by the config, so adding lyrics never moves them.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, List, Optional, Sequence

import numpy as np

from espnet2.speechlm.tokenizers.abs_tokenizer import AbsTokenizer, register_tokenizer
from espnet2.speechlm.tokenizers.label import UNK, Inventory, check_str

NOLYRIC = "<nolyric>"
REST = "rest"
N_MIDI = 128
PITCH_OFFSET = 2
N_PITCH = N_MIDI + 1  # + rest
DURATION_OFFSET = PITCH_OFFSET + N_PITCH  # 131
FILE = "music_score.json"

_NAME = re.compile(r"^([A-Ga-g])([#b]?)(-?\d+)$")
_STEP = {"c": 0, "d": 2, "e": 4, "f": 5, "g": 7, "a": 9, "b": 11}
_SHARP_NAMES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]


@dataclass(frozen=True)
class Note:
    pitch: Optional[int]  # MIDI number, None for a rest
    duration: float  # seconds
    lyric: Optional[str] = None


def midi_to_name(midi: int) -> str:
    return f"{_SHARP_NAMES[midi % 12]}{midi // 12 - 1}"


def parse_pitch(text: str) -> Optional[int]:
    """`C4` / `D#4` / `Eb3` / `60` / `rest` -> MIDI number (None for rest). ValueError if not a pitch."""
    if text.lower() == REST:
        return None
    if text.isdigit():
        midi = int(text)
    else:
        m = _NAME.match(text)
        if m is None:
            raise ValueError(f"unknown pitch {text!r} (use a name like C4, D#4, Eb3, a MIDI number 0-127, or rest)")
        letter, acc, octave = m.groups()
        midi = 12 * (int(octave) + 1) + _STEP[letter.lower()] + {"": 0, "#": 1, "b": -1}[acc]
    if not 0 <= midi < N_MIDI:
        raise ValueError(f"pitch {text!r} is MIDI {midi}, outside 0-127")
    return midi


def parse_note(text: str) -> Note:
    fields = text.split(":")
    if len(fields) not in (2, 3):
        raise ValueError("a note is PITCH:DURATION or PITCH:DURATION:LYRIC")
    pitch = parse_pitch(fields[0])
    try:
        duration = float(fields[1])
    except ValueError:
        raise ValueError(f"duration {fields[1]!r} is not a number of seconds") from None
    if not (duration > 0 and math.isfinite(duration)):
        raise ValueError(f"duration {fields[1]!r} must be a positive number of seconds")
    lyric = fields[2] if len(fields) == 3 else None
    if lyric is not None and (not lyric or lyric == NOLYRIC):
        raise ValueError(f"lyric {lyric!r} is empty or reserved (leave the field out for no lyric)")
    return Note(pitch, duration, lyric)


def parse_score(score: str, who: str = "music_score") -> List[Note]:
    """A score line -> notes; errors name the note's position (0-based) and text."""
    notes = []
    for j, text in enumerate(score.split()):
        try:
            notes.append(parse_note(text))
        except ValueError as e:
            raise ValueError(f"{who}: note {j} {text!r}: {e}") from None
    return notes


def grid_decimals(resolution: float) -> int:
    """Fewest decimals that print every multiple of `resolution` exactly (0.01 -> 2, 0.25 -> 2)."""
    for d in range(10):
        if abs(round(resolution, d) - resolution) < 1e-9:
            return d
    return 9


@register_tokenizer("music_score")
class MusicScoreTokenizer(AbsTokenizer):
    def __init__(self, lyrics: Inventory, resolution: float = 0.01, max_duration: float = 10.0):
        if not resolution > 0 or not max_duration >= resolution:
            raise ValueError(f"music_score: need 0 < resolution <= max_duration, got {resolution}, {max_duration}")
        self.lyrics = lyrics
        self.resolution = float(resolution)
        self.max_duration = float(max_duration)
        self.n_durations = int(round(max_duration / resolution))
        self.lyric_offset = DURATION_OFFSET + self.n_durations
        self.codebook_size = self.lyric_offset + len(lyrics) - 1  # lyrics' <unk> is local id 0
        self.n_streams = 1
        self._decimals = grid_decimals(self.resolution)

    # --- ids of the three token kinds ---------------------------------------------
    def pitch_id(self, pitch: Optional[int]) -> int:
        return PITCH_OFFSET + (N_MIDI if pitch is None else pitch)

    def duration_steps(self, seconds: float) -> int:
        """Seconds -> grid steps k >= 1 (half-up rounding); 0 if beyond max_duration."""
        k = max(1, math.floor(seconds / self.resolution + 0.5 + 1e-9))  # eps: 0.015/0.01 = 1.4999...
        return k if k <= self.n_durations else 0

    def lyric_id(self, lyric: Optional[str]) -> int:
        if lyric is None:
            return 1
        j = self.lyrics.index.get(lyric, 0)
        return 0 if j == 0 else self.lyric_offset + j - 1

    # --- interface -----------------------------------------------------------------
    def encode_notes(self, notes: Sequence[Note], who: str = "music_score") -> np.ndarray:
        ids = np.empty((len(notes), 3), dtype=np.int64)
        for j, n in enumerate(notes):
            k = self.duration_steps(n.duration)
            if k == 0:
                raise ValueError(f"{who}: note {j}: duration {n.duration} s is longer than max_duration "
                                 f"{self.max_duration} s (raise max_duration or split the note)")
            ids[j] = (self.pitch_id(n.pitch), DURATION_OFFSET + k - 1, self.lyric_id(n.lyric))
        return ids.reshape(-1, 1)  # [3 * n_notes, 1]

    def tokenize(self, items: Sequence[str]) -> list[np.ndarray]:
        """scores -> list of [3 * n_notes, 1] int64 (pitch, duration, lyric per note)."""
        if isinstance(items, str):
            raise TypeError("music_score.tokenize takes a list of scores; wrap a single one as [score]")
        out = []
        for i, s in enumerate(items):
            who = f"music_score: item {i}"
            out.append(self.encode_notes(parse_score(check_str(s, i, "music_score"), who), who))
        return out

    def decode_notes(self, tokens: np.ndarray) -> List[Note]:
        ids = np.asarray(tokens).reshape(-1)
        if ids.size % 3:
            raise ValueError(f"music_score: {ids.size} tokens is not a whole number of (pitch, duration, lyric) notes")
        notes = []
        for j, (p, d, l) in enumerate(ids.reshape(-1, 3).tolist()):
            if not PITCH_OFFSET <= p < DURATION_OFFSET:
                raise ValueError(f"music_score: note {j}: token {p} is not a pitch")
            if not DURATION_OFFSET <= d < self.lyric_offset:
                raise ValueError(f"music_score: note {j}: token {d} is not a duration")
            if not (l in (0, 1) or self.lyric_offset <= l < self.codebook_size):
                raise ValueError(f"music_score: note {j}: token {l} is not a lyric")
            pitch = None if p - PITCH_OFFSET == N_MIDI else p - PITCH_OFFSET
            lyric = None if l == 1 else UNK if l == 0 else self.lyrics.symbols[l - self.lyric_offset + 1]
            notes.append(Note(pitch, round((d - DURATION_OFFSET + 1) * self.resolution, self._decimals), lyric))
        return notes

    def format_note(self, n: Note) -> str:
        text = f"{REST if n.pitch is None else midi_to_name(n.pitch)}:{n.duration:.{self._decimals}f}"
        return text if n.lyric is None else f"{text}:{n.lyric}"

    def detokenize(self, tokens: np.ndarray) -> str:
        """[3 * n_notes, 1] -> canonical score text (see the module docstring)."""
        return " ".join(self.format_note(n) for n in self.decode_notes(tokens))

    def token_strings(self) -> list[str]:
        pitches = [f"pitch:{midi_to_name(m)}" for m in range(N_MIDI)] + [f"pitch:{REST}"]
        durs = [f"dur:{k * self.resolution:.{self._decimals}f}" for k in range(1, self.n_durations + 1)]
        return [UNK, NOLYRIC] + pitches + durs + [f"lyric:{s}" for s in self.lyrics.symbols[1:]]

    # --- training and persistence -------------------------------------------------------
    @classmethod
    def needs_training(cls) -> bool:
        return True

    @classmethod
    def train(cls, items: Iterable[str], out_dir: Path, resolution: float = 0.01, max_duration: float = 10.0,
              min_count: int = 1, **conf) -> "MusicScoreTokenizer":
        """Lyric inventory of the training scores (syllables seen >= min_count times)."""
        scores = [parse_score(check_str(s, i, "music_score"), f"music_score: item {i}") for i, s in enumerate(items)]
        if not any(scores):
            raise ValueError("music_score.train: got no notes")
        lyrics = Inventory.fit(([n.lyric for n in notes if n.lyric is not None] for notes in scores), min_count)
        lyrics.save(Path(out_dir) / FILE, resolution=resolution, max_duration=max_duration)
        return cls(lyrics, resolution, max_duration)

    @classmethod
    def load(cls, model_dir: Optional[Path], **conf) -> "MusicScoreTokenizer":
        if model_dir is None:
            raise ValueError("music_score needs a trained model_dir (its lyric inventory)")
        lyrics, meta = Inventory.read(Path(model_dir) / FILE)
        for key in ("resolution", "max_duration"):
            if key in conf and float(conf[key]) != float(meta[key]):
                raise ValueError(
                    f"music_score: {key}={conf[key]!r} in config but the tokenizer was trained with {meta[key]!r}"
                )
        return cls(lyrics, meta["resolution"], meta["max_duration"])
