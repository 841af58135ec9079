#!/usr/bin/env python3
"""Stage 2 "audio formatting": resample a Kaldi-style data dir to mono 16-bit wav.

Why: corpora arrive at mixed rates/channels/containers (flite 16 kHz, espeak-ng
22.05 kHz, LibriSpeech flac). Later stages (tokenizers, training) assume one
sample rate and one container, so this step normalizes once and records every
example it had to drop in ``<out_dir>/dropped.txt`` (``file:line id reason``).

    python -m espnet2.bin.speechlm_format_audio \
        --in_dir data/train --out_dir dump/audio/train --fs 16000 --nj 2

Output: ``<out_dir>/data/<id>.wav``, ``wav.scp`` (absolute paths),
``utt2num_samples``, the other index files restricted to kept ids
(``spk2utt`` is rebuilt from ``utt2spk``), ``dropped.txt`` and
``format_audio.yaml`` (resolved arguments).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys
from collections import Counter
from dataclasses import dataclass
from multiprocessing import Pool
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Set, Tuple

import numpy as np
import soundfile as sf
import soxr
import yaml
from tqdm import tqdm

from espnet2.bin.cli import user_errors
from espnet2.speechlm.data.index import read_index as read_kaldi_index
from espnet2.speechlm.data.readers import truncation_reason

# Files copied as is (not keyed by utterance).
VERBATIM_FILES = {"feats_type", "audio_format"}
SAFE_ID = re.compile(r"[A-Za-z0-9._+-]+")


@dataclass
class Entry:
    """One line of an index file, remembered with its origin for reporting."""

    key: str
    value: str
    where: str  # "path:lineno"


@dataclass
class Drop:
    where: str
    key: str
    reason: str

    def __str__(self) -> str:
        return f"{self.where} {self.key} {self.reason}"


def read_index(path: Path, drops: List[Drop]) -> Dict[str, Entry]:
    """The toolkit's one index reader (`data.index.read_index`, empty values kept for the
    checks below); a repeated id keeps its first line and the others become drops."""
    rows, skips = read_kaldi_index(path, keep_empty=True)
    drops.extend(Drop(f"{s.file}:{s.line}", s.example_id, s.reason) for s in skips)
    return {k: Entry(k, e.content, f"{path}:{e.line}") for k, e in rows.items()}


def out_name(key: str) -> str:
    """File-system safe, collision-free file name for an utterance id."""
    if SAFE_ID.fullmatch(key) and not key.startswith("."):
        return f"{key}.wav"
    digest = hashlib.sha1(key.encode()).hexdigest()[:10]
    return f"{re.sub(r'[^A-Za-z0-9._+-]', '_', key).lstrip('.')}-{digest}.wav"


class TruncatedAudio(ValueError):
    """The file holds fewer frames than its header promises."""


def load_mono(path: str) -> Tuple[np.ndarray, int]:
    """Read any soundfile-supported file as float32 mono; a truncated WAV is an error."""
    audio, rate = sf.read(path, dtype="float32", always_2d=True)
    truncated = truncation_reason(path, audio.shape[0])
    if truncated:
        raise TruncatedAudio(f"truncated audio ({truncated}: {path})")
    return audio.mean(axis=1), int(rate)


def resample(audio: np.ndarray, rate: int, fs: int) -> np.ndarray:
    """Band-limited resampling with soxr (HQ).

    This is exactly what ``librosa.resample(res_type="soxr_hq")`` computes
    (librosa only pads one extra sample); calling soxr directly avoids
    librosa's multi-second numba import in every worker.
    """
    if rate == fs:
        return audio
    return soxr.resample(audio, rate, fs, quality="HQ").astype(np.float32, copy=False)


def convert_one(job: Tuple[str, str, str, int]) -> Tuple[str, Optional[int], str]:
    """(key, src, dst, fs) -> (key, num_samples or None, failure reason)."""
    key, src, dst, fs = job
    if src.rstrip().endswith("|"):
        return key, None, "unsupported pipe command in wav.scp"
    if not os.path.isfile(src):
        return key, None, f"audio file not found ({src})"
    try:
        audio, rate = load_mono(src)
    except TruncatedAudio as e:
        return key, None, str(e)
    except Exception as e:  # noqa: BLE001 - any decoder error means unreadable
        return key, None, f"unreadable audio ({type(e).__name__}: {str(e).strip()[:120]})"
    if audio.size == 0:
        return key, None, "zero-length audio"
    if not np.all(np.isfinite(audio)):
        return key, None, "non-finite samples"
    audio = resample(audio, rate, fs)
    if audio.size == 0:
        return key, None, "zero-length audio after resampling"
    sf.write(dst, np.clip(audio, -1.0, 1.0), fs, subtype="PCM_16")
    return key, int(audio.size), ""


def check_text(wavs: Dict[str, Entry], texts: Optional[Dict[str, Entry]],
               drops: List[Drop]) -> List[str]:
    """Ids that have audio and (if a text file exists) a non-empty transcript."""
    keep = []
    for key, entry in wavs.items():
        if not entry.value.strip():
            drops.append(Drop(entry.where, key, "no audio path"))
        elif texts is not None and key not in texts:
            drops.append(Drop(entry.where, key, "no transcript in text"))
        elif texts is not None and not texts[key].value.strip():
            drops.append(Drop(texts[key].where, key, "empty text"))
        else:
            keep.append(key)
    if texts is not None:
        for key, entry in texts.items():
            if key not in wavs:
                drops.append(Drop(entry.where, key, "no audio in wav.scp"))
    return keep


def convert_all(jobs: List[Tuple[str, str, str, int]], nj: int) -> List[Tuple[str, Optional[int], str]]:
    """Run conversion in a process pool with a progress bar, keeping order."""
    bar = dict(total=len(jobs), desc="format_audio", unit="utt", file=sys.stderr)
    if nj <= 1 or len(jobs) < 2:
        return [convert_one(j) for j in tqdm(jobs, **bar)]
    chunk = max(1, min(32, len(jobs) // (nj * 8)))
    with Pool(nj) as pool:
        return list(tqdm(pool.imap(convert_one, jobs, chunksize=chunk), **bar))


def write_index(path: Path, rows: Dict[str, str]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for key in sorted(rows):
            f.write(f"{key} {rows[key]}\n")


def copy_side_files(in_dir: Path, out_dir: Path, kept: Set[str]) -> List[str]:
    """Copy index files other than wav.scp, restricted to kept utterances."""
    copied = []
    spk_kept: Optional[Set[str]] = None
    utt2spk = in_dir / "utt2spk"
    if utt2spk.is_file():
        rows = {e.key: e.value for e in read_index(utt2spk, []).values() if e.key in kept}
        write_index(out_dir / "utt2spk", rows)
        spk2utt: Dict[str, List[str]] = {}
        for utt in sorted(rows):
            spk2utt.setdefault(rows[utt], []).append(utt)
        write_index(out_dir / "spk2utt", {s: " ".join(u) for s, u in spk2utt.items()})
        spk_kept = set(spk2utt)
        copied += ["utt2spk", "spk2utt"]
    for path in sorted(in_dir.iterdir()):
        name = path.name
        if not path.is_file() or name.startswith(".") or name in (
                "wav.scp", "utt2spk", "spk2utt", "dropped.txt"):
            continue
        if name in VERBATIM_FILES:
            (out_dir / name).write_bytes(path.read_bytes())
        elif name.startswith("spk2"):
            if spk_kept is None:
                continue  # cannot tell which speakers survive
            rows = {e.key: e.value for e in read_index(path, []).values() if e.key in spk_kept}
            write_index(out_dir / name, rows)
        else:
            rows = {e.key: e.value for e in read_index(path, []).values() if e.key in kept}
            write_index(out_dir / name, rows)
        copied.append(name)
    return copied


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--in_dir", type=Path, required=True, help="Kaldi-style dir with wav.scp")
    p.add_argument("--out_dir", type=Path, required=True, help="where to write the dump")
    p.add_argument("--fs", type=int, default=16000, help="target sample rate (Hz)")
    p.add_argument("--nj", type=int, default=os.cpu_count() or 1, help="parallel workers")
    return p


@user_errors("speechlm_format_audio")
def main(argv: Optional[Sequence[str]] = None) -> Dict[str, int]:
    args = get_parser().parse_args(argv)
    in_dir, out_dir = args.in_dir, args.out_dir
    if (in_dir / "segments").exists():
        sys.exit(f"{in_dir}/segments: segmented recordings are not supported")
    if not (in_dir / "wav.scp").is_file():
        sys.exit(f"{in_dir}/wav.scp: not found")
    (out_dir / "data").mkdir(parents=True, exist_ok=True)
    resolved = {k: str(v.resolve()) if isinstance(v, Path) else v for k, v in vars(args).items()}
    with open(out_dir / "format_audio.yaml", "w") as f:
        yaml.safe_dump(resolved, f, sort_keys=True)

    drops: List[Drop] = []
    wavs = read_index(in_dir / "wav.scp", drops)
    texts = read_index(in_dir / "text", drops) if (in_dir / "text").is_file() else None
    keys = check_text(wavs, texts, drops)
    data_dir = (out_dir / "data").resolve()
    jobs = [(k, wavs[k].value.strip(), str(data_dir / out_name(k)), args.fs) for k in keys]

    kept: Dict[str, int] = {}
    for key, n, reason in convert_all(jobs, args.nj):
        if n is None:
            drops.append(Drop(wavs[key].where, key, reason))
        else:
            kept[key] = n
    write_index(out_dir / "wav.scp", {k: str(data_dir / out_name(k)) for k in kept})
    write_index(out_dir / "utt2num_samples", {k: str(n) for k, n in kept.items()})
    copy_side_files(in_dir, out_dir, set(kept))
    drops.sort(key=lambda d: (d.where.rsplit(":", 1)[0], int(d.where.rsplit(":", 1)[1])))
    with open(out_dir / "dropped.txt", "w", encoding="utf-8") as f:
        f.writelines(f"{d}\n" for d in drops)
    summarize(in_dir, out_dir, len(wavs), kept, drops)
    return kept


def summarize(in_dir: Path, out_dir: Path, n_in: int, kept: Dict[str, int],
              drops: List[Drop]) -> None:
    reasons = Counter(re.sub(r" \(.*", "", d.reason) for d in drops)
    detail = ", ".join(f"{r}: {c}" for r, c in reasons.most_common()) or "none"
    print(f"[format_audio] {in_dir} -> {out_dir}: kept {len(kept)} of {n_in} wav.scp ids; "
          f"dropped {len(drops)} ({detail}); see {out_dir}/dropped.txt")


if __name__ == "__main__":
    main()
