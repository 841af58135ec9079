#!/usr/bin/env python3
"""Write Kaldi-style data dirs for LibriSpeech subsets (no download).

Why: the corpus must be obtained by the user; this script only indexes an
existing copy laid out as ``<subset>/<spk>/<chapter>/<spk>-<chapter>.trans.txt``
with ``<spk>-<chapter>-<utt>.flac`` next to it.

For each subset (e.g. ``train-clean-100``) it writes ``<out>/train_clean_100/``
with ``wav.scp`` (absolute flac path; soundfile reads flac directly), ``text``,
``utt2spk`` (speaker = ``<spk>``) and ``spk2utt``, all sorted by id.

Transcripts are lowercased by default so that every recipe in this toolkit
shares one text convention (mini_en is lowercase); ``--keep_case`` keeps the
corpus' original uppercase.

A malformed transcript line stops with ``path:line: reason``. Transcribed
utterances whose flac is missing stop with a list of them, unless
``--skip_missing`` is given; then they are left out and listed in
``<out>/<subset>/missing_audio.txt``.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

UTT_ID = re.compile(r"(\d+)-(\d+)-(\d+)")


class TranscriptError(ValueError):
    """A transcript line that does not follow the LibriSpeech format."""


def parse_transcript(path: Path, spk: str, chapter: str, lowercase: bool) -> List[Tuple[str, str]]:
    """(utt_id, text) pairs of one ``*.trans.txt``; strict about the format."""
    rows = []
    seen = set()
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            parts = line.split(maxsplit=1)
            where = f"{path}:{lineno}"
            match = UTT_ID.fullmatch(parts[0])
            if match is None:
                raise TranscriptError(f"{where}: bad utterance id {parts[0]!r} "
                                      "(expected <spk>-<chapter>-<utt>)")
            if match.group(1) != spk or match.group(2) != chapter:
                raise TranscriptError(f"{where}: id {parts[0]!r} does not belong to "
                                      f"speaker {spk} chapter {chapter}")
            if len(parts) < 2 or not parts[1].strip():
                raise TranscriptError(f"{where}: empty transcript for {parts[0]}")
            if parts[0] in seen:
                raise TranscriptError(f"{where}: duplicate id {parts[0]}")
            seen.add(parts[0])
            text = " ".join(parts[1].split())
            rows.append((parts[0], text.lower() if lowercase else text))
    return rows


def scan_subset(subset_dir: Path, lowercase: bool) -> Tuple[Dict[str, Tuple[str, Path]], List[str]]:
    """Map utt_id -> (text, flac) and list utterances whose flac is missing."""
    utts: Dict[str, Tuple[str, Path]] = {}
    missing: List[str] = []
    transcripts = sorted(subset_dir.glob("*/*/*.trans.txt"))
    if not transcripts:
        raise FileNotFoundError(f"{subset_dir}: no <spk>/<chapter>/*.trans.txt found")
    for trans in transcripts:
        chapter_dir = trans.parent
        spk, chapter = chapter_dir.parent.name, chapter_dir.name
        if trans.name != f"{spk}-{chapter}.trans.txt":
            raise TranscriptError(f"{trans}: expected name {spk}-{chapter}.trans.txt")
        for utt, text in parse_transcript(trans, spk, chapter, lowercase):
            flac = chapter_dir / f"{utt}.flac"
            if flac.is_file():
                utts[utt] = (text, flac.resolve())
            else:
                missing.append(f"{trans}: {utt} -> {flac} not found")
    return utts, missing


def write_kaldi_dir(out: Path, utts: Dict[str, Tuple[str, Path]]) -> None:
    """Sorted wav.scp, text, utt2spk and spk2utt."""
    out.mkdir(parents=True, exist_ok=True)
    spk2utt: Dict[str, List[str]] = {}
    with open(out / "wav.scp", "w") as scp, open(out / "text", "w", encoding="utf-8") as txt, \
            open(out / "utt2spk", "w") as u2s:
        for utt in sorted(utts):
            text, flac = utts[utt]
            spk = utt.split("-", 1)[0]
            scp.write(f"{utt} {flac}\n")
            txt.write(f"{utt} {text}\n")
            u2s.write(f"{utt} {spk}\n")
            spk2utt.setdefault(spk, []).append(utt)
    with open(out / "spk2utt", "w") as s2u:
        for spk in sorted(spk2utt):
            s2u.write(f"{spk} {' '.join(spk2utt[spk])}\n")


def prepare_subset(corpus: Path, subset: str, out_root: Path, lowercase: bool,
                   skip_missing: bool) -> Path:
    """Index one subset; returns the written data dir."""
    subset_dir = corpus / subset
    if not subset_dir.is_dir():
        raise FileNotFoundError(f"{subset_dir}: subset not found (is --librispeech_dir right?)")
    utts, missing = scan_subset(subset_dir, lowercase)
    out = out_root / subset.replace("-", "_")
    if missing and not skip_missing:
        shown = "\n  ".join(missing[:10])
        more = f"\n  ... and {len(missing) - 10} more" if len(missing) > 10 else ""
        raise FileNotFoundError(f"{subset}: {len(missing)} transcribed utterances have no "
                                f"audio (use --skip_missing to leave them out):\n  {shown}{more}")
    write_kaldi_dir(out, utts)
    (out / "missing_audio.txt").unlink(missing_ok=True)
    if missing:
        (out / "missing_audio.txt").write_text("".join(f"{m}\n" for m in missing))
        print(f"[data_prep] WARNING {subset}: skipped {len(missing)} utterances without "
              f"audio; see {out}/missing_audio.txt", file=sys.stderr)
    print(f"[data_prep] {subset}: {len(utts)} utterances -> {out}")
    return out


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--librispeech_dir", type=Path, required=True,
                   help="directory holding the subsets (…/LibriSpeech)")
    p.add_argument("--subsets", nargs="+",
                   default=["train-clean-100", "dev-clean", "test-clean"])
    p.add_argument("--out", type=Path, default=Path("data"))
    p.add_argument("--keep_case", action="store_true", help="keep uppercase transcripts")
    p.add_argument("--skip_missing", action="store_true",
                   help="leave out (and list) utterances whose flac is missing")
    return p


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = get_parser().parse_args(argv)
    try:
        for subset in args.subsets:
            prepare_subset(args.librispeech_dir, subset, args.out,
                           lowercase=not args.keep_case, skip_missing=args.skip_missing)
    except (TranscriptError, FileNotFoundError) as e:
        sys.exit(f"[data_prep] ERROR {e}")


if __name__ == "__main__":
    main()
