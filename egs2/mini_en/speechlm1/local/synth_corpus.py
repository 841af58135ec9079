#!/usr/bin/env python3
"""Synthesize a small offline multi-speaker English corpus (mini_en).

Why: the toolkit needs an end-to-end recipe that runs without any network
access or downloaded corpus. Sentences come from a tiny hand-written grammar
over a fixed vocabulary; audio comes from the flite and espeak-ng engines.

Layout written (relative to ``--out``, default ``data``):

    <out>/{train,valid,test}/{wav.scp,text,utt2spk,spk2utt}

Waveforms are cached under ``--wav_dir`` (default ``<out>/../downloads/mini_en/wav``)
as ``<speaker>/<sha1(voice, text)>.wav``. The file name depends on the voice and
the sentence only, so a re-run (any seed or size) reuses what already exists and
a stale file can never be paired with a different sentence. Native sample rates
are kept (flite 16 kHz, espeak-ng 22.05 kHz); stage 2 resamples.

valid/test sentences never occur in train; they reuse the same vocabulary and,
whenever possible, only words that do occur in train.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from multiprocessing.pool import ThreadPool
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Set, Tuple

# --------------------------------------------------------------------------
# Vocabulary (all lowercase, regular, easy to pronounce)
# --------------------------------------------------------------------------
AGENTS = (
    "dog cat bird horse cow duck frog bear fox boy girl man woman baby king "
    "farmer teacher doctor friend mother father sister brother"
).split()
OBJECTS = (
    "ball box book cup hat bag car boat bike kite key lamp clock shoe coat "
    "cake apple bread letter chair table toy egg rope drum pen"
).split()
PLACES = (
    "house garden park river lake hill road farm school shop town tree "
    "bridge forest beach field kitchen station"
).split()
ADJECTIVES = (
    "small big red blue green old new happy sad little tall warm cold soft "
    "bright dark quiet brown white black yellow young fast slow clean long "
    "good nice"
).split()
DETERMINERS = "the a my your his her our their this that one".split()
PRONOUNS = "he she they we i".split()
# (past tense, base form) of transitive verbs.
TRANSITIVE = [
    ("saw", "see"), ("found", "find"), ("took", "take"), ("made", "make"),
    ("liked", "like"), ("wanted", "want"), ("held", "hold"), ("kept", "keep"),
    ("moved", "move"), ("pushed", "push"), ("pulled", "pull"),
    ("carried", "carry"), ("dropped", "drop"), ("painted", "paint"),
    ("washed", "wash"), ("opened", "open"), ("bought", "buy"), ("lost", "lose"),
    ("caught", "catch"), ("fixed", "fix"), ("cleaned", "clean"),
    ("watched", "watch"), ("needed", "need"), ("brought", "bring"),
]
INTRANSITIVE = (
    "ran sat slept walked jumped played sang danced waited stood laughed "
    "swam smiled stayed rested"
).split()
DITRANSITIVE = "gave showed sent handed".split()
ADVERBS = "quickly slowly quietly happily again today yesterday early late".split()
LOCATIVE = "near in on under behind by at beside over".split()
DIRECTIONAL = "to into from across".split()
TIME_PHRASES = [
    "in the morning", "in the evening", "at night", "after lunch",
    "every day", "last week", "on sunday",
]
FUNCTION_WORDS = "and but then will did where is an with".split()

MIN_WORDS, MAX_WORDS = 5, 12
SPLITS = ("train", "valid", "test")


def vocabulary() -> Set[str]:
    """Every word the grammar can emit (used by tests and for reporting)."""
    words: Set[str] = set()
    for group in (AGENTS, OBJECTS, PLACES, ADJECTIVES, DETERMINERS, PRONOUNS,
                  INTRANSITIVE, DITRANSITIVE, ADVERBS, LOCATIVE, DIRECTIONAL,
                  FUNCTION_WORDS):
        words.update(group)
    for past, base in TRANSITIVE:
        words.update((past, base))
    for phrase in TIME_PHRASES:
        words.update(phrase.split())
    return words


# --------------------------------------------------------------------------
# Grammar
# --------------------------------------------------------------------------
def noun_phrase(rng: random.Random, nouns: Sequence[str], max_adj: int = 2) -> List[str]:
    """DET ADJ* NOUN, with 'a' -> 'an' before a vowel."""
    n_adj = rng.choices(range(max_adj + 1), weights=[4, 4, 1][: max_adj + 1])[0]
    words = [rng.choice(DETERMINERS)]
    adjs = rng.sample(ADJECTIVES, n_adj)
    words += adjs + [rng.choice(nouns)]
    if words[0] == "a" and words[1][0] in "aeiou":
        words[0] = "an"
    return words


def place_phrase(rng: random.Random, directional: bool = True) -> List[str]:
    """Locative (or, if allowed, directional) prepositional phrase."""
    prep = rng.choice(LOCATIVE + DIRECTIONAL if directional else LOCATIVE)
    return [prep] + noun_phrase(rng, PLACES, max_adj=1)


def maybe(rng: random.Random, p: float, words: List[str]) -> List[str]:
    return words if rng.random() < p else []


def _t_transitive(rng: random.Random) -> List[str]:
    return (noun_phrase(rng, AGENTS) + [rng.choice(TRANSITIVE)[0]]
            + noun_phrase(rng, OBJECTS) + maybe(rng, 0.5, place_phrase(rng))
            + maybe(rng, 0.3, [rng.choice(ADVERBS)]))


def _t_intransitive(rng: random.Random) -> List[str]:
    return (noun_phrase(rng, AGENTS) + [rng.choice(INTRANSITIVE)]
            + maybe(rng, 0.5, [rng.choice(ADVERBS)]) + place_phrase(rng))


def _t_ditransitive(rng: random.Random) -> List[str]:
    return (noun_phrase(rng, AGENTS, 1) + [rng.choice(DITRANSITIVE)]
            + noun_phrase(rng, AGENTS, 1) + noun_phrase(rng, OBJECTS))


def _t_pronoun(rng: random.Random) -> List[str]:
    return ([rng.choice(PRONOUNS), rng.choice(TRANSITIVE)[0]]
            + noun_phrase(rng, OBJECTS) + place_phrase(rng))


def _t_and(rng: random.Random) -> List[str]:
    conj = rng.choice(["and", "but", "and then"]).split()
    return (noun_phrase(rng, AGENTS, 1) + [rng.choice(TRANSITIVE)[0]]
            + noun_phrase(rng, OBJECTS, 1) + conj + [rng.choice(INTRANSITIVE)]
            + maybe(rng, 0.5, [rng.choice(ADVERBS)]))


def _t_time(rng: random.Random) -> List[str]:
    return (rng.choice(TIME_PHRASES).split() + noun_phrase(rng, AGENTS)
            + [rng.choice(INTRANSITIVE)] + place_phrase(rng))


def _t_future(rng: random.Random) -> List[str]:
    return ([rng.choice(PRONOUNS), "will", rng.choice(TRANSITIVE)[1]]
            + noun_phrase(rng, OBJECTS) + maybe(rng, 0.7, place_phrase(rng)))


def _t_question(rng: random.Random) -> List[str]:
    return (["did"] + noun_phrase(rng, AGENTS, 1) + [rng.choice(TRANSITIVE)[1]]
            + noun_phrase(rng, OBJECTS) + maybe(rng, 0.4, place_phrase(rng)))


def _t_where(rng: random.Random) -> List[str]:
    return (["where", "is"] + noun_phrase(rng, OBJECTS + AGENTS)
            + place_phrase(rng, directional=False))


def _t_with(rng: random.Random) -> List[str]:
    return (noun_phrase(rng, AGENTS, 1) + [rng.choice(INTRANSITIVE), "with"]
            + noun_phrase(rng, AGENTS, 1) + maybe(rng, 0.5, place_phrase(rng)))


TEMPLATES = [_t_transitive, _t_intransitive, _t_ditransitive, _t_pronoun,
             _t_and, _t_time, _t_future, _t_question, _t_where, _t_with]
TEMPLATE_WEIGHTS = [5, 3, 2, 2, 2, 2, 2, 1, 1, 1]


def sample_sentence(rng: random.Random) -> str:
    """One sentence of MIN_WORDS..MAX_WORDS words (rejection sampling)."""
    while True:
        template = rng.choices(TEMPLATES, weights=TEMPLATE_WEIGHTS)[0]
        words = template(rng)
        if MIN_WORDS <= len(words) <= MAX_WORDS:
            return " ".join(words)


def sample_unique(rng: random.Random, n: int, exclude: Set[str],
                  known_words: Optional[Set[str]] = None,
                  tries_per_sentence: int = 200) -> List[str]:
    """n new sentences not in ``exclude``; prefer ones made of ``known_words``.

    The in-vocabulary preference is bounded so that tiny corpora (where train
    covers few words) still terminate deterministically.
    """
    out: List[str] = []
    seen = set(exclude)
    while len(out) < n:
        fallback = None
        for _ in range(tries_per_sentence):
            sent = sample_sentence(rng)
            if sent in seen:
                continue
            if known_words is None or set(sent.split()) <= known_words:
                break
            fallback = fallback or sent
        else:
            if fallback is None:
                raise RuntimeError("grammar exhausted: cannot find unseen sentences")
            sent = fallback
        seen.add(sent)
        out.append(sent)
    return out


def make_sentences(seed: int, sizes: Dict[str, int]) -> Dict[str, List[str]]:
    """Per-split sentences; train does not depend on the valid/test sizes."""
    train = sample_unique(random.Random(f"{seed}-train"), sizes["train"], set())
    train_words = {w for s in train for w in s.split()}
    taken = set(train)
    result = {"train": train}
    for split in ("valid", "test"):
        sents = sample_unique(random.Random(f"{seed}-{split}"), sizes[split],
                              taken, known_words=train_words)
        taken.update(sents)
        result[split] = sents
    return result


# --------------------------------------------------------------------------
# Speakers / TTS engines
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class Speaker:
    """A TTS voice; ``spk_id`` must not be a prefix of another speaker id."""

    spk_id: str
    engine: str  # "flite" or "espeak-ng"
    args: Tuple[str, ...]

    def command(self, text: str, wav: Path) -> List[str]:
        if self.engine == "flite":
            return ["flite", *self.args, "-t", text, "-o", str(wav)]
        return ["espeak-ng", *self.args, "-w", str(wav), text]


SPEAKERS = [
    Speaker("flite-slt", "flite", ("-voice", "slt")),
    Speaker("flite-rms", "flite", ("-voice", "rms")),
    Speaker("flite-awb", "flite", ("-voice", "awb")),
    Speaker("flite-kal16", "flite", ("-voice", "kal16")),
    Speaker("espeak-usa", "espeak-ng", ("-v", "en-us", "-s", "160")),
    Speaker("espeak-gbf3", "espeak-ng", ("-v", "en-gb+f3", "-s", "150", "-p", "60")),
    Speaker("espeak-usm3", "espeak-ng", ("-v", "en-us+m3", "-s", "140", "-p", "35")),
    Speaker("espeak-enf2", "espeak-ng", ("-v", "en+f2", "-s", "170")),
]


def synth_one(job: Tuple[Speaker, str, Path]) -> Optional[str]:
    """Synthesize one file atomically; return an error message or None."""
    spk, text, wav = job
    if wav.exists() and wav.stat().st_size > 44:
        return None
    tmp = wav.with_name(wav.stem + f".tmp{os.getpid()}.wav")
    try:
        proc = subprocess.run(spk.command(text, tmp), capture_output=True,
                              text=True, timeout=60)
        if proc.returncode != 0 or not tmp.exists() or tmp.stat().st_size <= 44:
            return f"{spk.spk_id}: {proc.stderr.strip() or 'no audio'}"
        os.replace(tmp, wav)
        return None
    finally:
        tmp.unlink(missing_ok=True)


def working_speakers(candidates: Iterable[Speaker], probe_dir: Path) -> List[Speaker]:
    """Keep voices whose engine is installed and produces audio here."""
    probe_dir.mkdir(parents=True, exist_ok=True)
    ok = []
    for spk in candidates:
        if shutil.which(spk.engine) is None:
            print(f"[synth] skip {spk.spk_id}: {spk.engine} not installed", file=sys.stderr)
            continue
        wav = probe_dir / f"probe_{spk.spk_id}.wav"
        wav.unlink(missing_ok=True)
        err = synth_one((spk, "hello there", wav))
        wav.unlink(missing_ok=True)
        if err:
            print(f"[synth] skip {spk.spk_id}: {err}", file=sys.stderr)
        else:
            ok.append(spk)
    return ok


# --------------------------------------------------------------------------
# Kaldi-style output
# --------------------------------------------------------------------------
def wav_key(spk: Speaker, text: str) -> str:
    payload = "\0".join([spk.engine, *spk.args, text]).encode()
    return hashlib.sha1(payload).hexdigest()[:16]


def plan_split(split: str, sentences: List[str], speakers: List[Speaker],
               wav_dir: Path) -> List[Tuple[str, Speaker, str, Path]]:
    """(utt_id, speaker, text, wav) rows; speakers assigned round-robin."""
    rows = []
    for i, text in enumerate(sentences):
        spk = speakers[i % len(speakers)]
        utt = f"{spk.spk_id}_{split}{i:05d}"
        rows.append((utt, spk, text, wav_dir / spk.spk_id / f"{wav_key(spk, text)}.wav"))
    return sorted(rows, key=lambda r: r[0])


def write_kaldi_dir(out: Path, rows: List[Tuple[str, Speaker, str, Path]]) -> None:
    """wav.scp, text, utt2spk, spk2utt, all sorted by key."""
    out.mkdir(parents=True, exist_ok=True)
    spk2utt: Dict[str, List[str]] = {}
    with open(out / "wav.scp", "w") as scp, open(out / "text", "w") as txt, \
            open(out / "utt2spk", "w") as u2s:
        for utt, spk, text, wav in rows:
            scp.write(f"{utt} {wav.resolve()}\n")
            txt.write(f"{utt} {text}\n")
            u2s.write(f"{utt} {spk.spk_id}\n")
            spk2utt.setdefault(spk.spk_id, []).append(utt)
    with open(out / "spk2utt", "w") as s2u:
        for spk_id in sorted(spk2utt):
            s2u.write(f"{spk_id} {' '.join(spk2utt[spk_id])}\n")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("data"), help="output data root")
    p.add_argument("--wav_dir", type=Path, default=None,
                   help="wav cache (default: <out>/../downloads/mini_en/wav)")
    p.add_argument("--num_train", type=int, default=6000)
    p.add_argument("--num_valid", type=int, default=100)
    p.add_argument("--num_test", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--nj", type=int, default=os.cpu_count() or 1,
                   help="parallel TTS processes")
    return p


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = get_parser().parse_args(argv)
    start = time.time()
    wav_dir = (args.wav_dir or args.out.resolve().parent / "downloads" / "mini_en" / "wav")
    speakers = working_speakers(SPEAKERS, wav_dir / ".probe")
    if not speakers:
        sys.exit("[synth] no working TTS voice: install flite and/or espeak-ng")
    sizes = {"train": args.num_train, "valid": args.num_valid, "test": args.num_test}
    sentences = make_sentences(args.seed, sizes)
    plans = {s: plan_split(s, sentences[s], speakers, wav_dir) for s in SPLITS}
    for spk in speakers:
        (wav_dir / spk.spk_id).mkdir(parents=True, exist_ok=True)

    jobs = [(spk, text, wav) for rows in plans.values() for _, spk, text, wav in rows]
    todo = [j for j in jobs if not (j[2].exists() and j[2].stat().st_size > 44)]
    print(f"[synth] {len(speakers)} speakers, {len(jobs)} utterances, "
          f"{len(todo)} to synthesize with nj={args.nj}")
    # Threads suffice: the heavy work happens in the TTS child processes.
    with ThreadPool(max(1, args.nj)) as pool:
        errors = [e for e in pool.imap_unordered(synth_one, todo, chunksize=8) if e]
    if errors:
        sys.exit(f"[synth] {len(errors)} synthesis failures, first: {errors[0]}")

    for split, rows in plans.items():
        write_kaldi_dir(args.out / split, rows)
    print(f"[synth] wrote {', '.join(f'{s}={sizes[s]}' for s in SPLITS)} under "
          f"{args.out} (wavs in {wav_dir}) in {time.time() - start:.1f}s")


if __name__ == "__main__":
    main()
