"""Preparation: Kaldi-style data dir + task template -> tokenized shards + data.json.

Layout written under `out_dir` (one task, one split):

    data.json                 manifest (task, template, tokenizers, shard list, counts)
    skipped.txt               `file:line id reason` for every example not in the output
    shards/shard_00000/       ids.txt, item<j>.npy [sum_T, n_streams] int32, item<j>.len.npy [N]
                              item<j>.feat.npy [sum_T, embed_dim] float (continuous items only)

A continuous item (`tokenizers.continuous`) has placeholder tokens plus float features
with the same row offsets; data.json gives its `embed_dim` in the tokenizer entry.
Tokens are *local* ids of each tokenizer; the joint vocabulary (stage 6) maps them
to global ids at load time, so adding a task later never re-tokenizes anything.
Shards are independent jobs: each is written to a temporary dir and renamed when
complete, so a killed run redoes only unfinished shards and ends identical.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing as mp
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import yaml
from tqdm import tqdm

from espnet2.speechlm.data.index import Entry, Skip, join_items, read_index
from espnet2.speechlm.data.readers import ItemError, ReadContext, get_reader
from espnet2.speechlm.tasks.template import TaskTemplate

DATA_FORMAT = "espnet-speechlm-data/1"
log = logging.getLogger(__name__)


# --- tokenizer config ------------------------------------------------------------------
@dataclass
class TokenizerSpec:
    """One entry of the recipe's tokenizer config: `name: {type: ..., conf: {...}}`."""

    name: str
    type: str
    conf: dict = field(default_factory=dict)


def load_tokenizer_config(path: Path) -> Dict[str, TokenizerSpec]:
    raw = yaml.safe_load(Path(path).read_text()) or {}
    specs = {}
    for name, entry in raw.items():
        if not isinstance(entry, dict) or "type" not in entry:
            raise ValueError(f"{path}: tokenizer {name!r} needs a `type` (and optional `conf`)")
        unknown = set(entry) - {"type", "conf"}
        if unknown:
            raise ValueError(f"{path}: tokenizer {name!r} has unknown keys {sorted(unknown)}")
        specs[name] = TokenizerSpec(name, entry["type"], dict(entry.get("conf") or {}))
    return specs


def load_tokenizer(spec: TokenizerSpec, tokenizer_dir: Optional[Path]):
    from espnet2.speechlm.tokenizers import build_tokenizer

    model_dir = Path(tokenizer_dir) / spec.name if tokenizer_dir else None
    if model_dir is not None and not model_dir.exists():
        model_dir = None
    return build_tokenizer(spec.type, model_dir, **spec.conf)


# --- stage 3: tokenizer training --------------------------------------------------------
def train_tokenizers(data_dir: Path, templates: Sequence[TaskTemplate], specs: Dict[str, TokenizerSpec],
                     out_dir: Path, max_items: int = 2000, seed: int = 0) -> List[str]:
    """Fit every trainable tokenizer the templates use on (a sample of) the training items.

    Skips tokenizers whose directory has a `done` marker written with the same type and
    conf (an empty one, from an earlier version, counts as the same); a changed config
    retrains. Returns the names trained.
    """
    from espnet2.speechlm.tokenizers import TOKENIZERS, train_tokenizer

    for t in templates:
        check_continuous_conditions(t, specs)
    names = sorted({it.tokenizer for t in templates for it in t.items})
    for name in names:  # every name and type checked before minutes of training, not after
        TOKENIZERS.get(_spec(specs, name).type)
    trained = []
    for name in names:
        spec = _spec(specs, name)
        cls = TOKENIZERS.get(spec.type)
        target = Path(out_dir) / name
        if not cls.needs_training():
            continue
        made_with = json.dumps({"type": spec.type, "conf": spec.conf}, sort_keys=True, default=str)
        if (target / "done").exists():
            before = (target / "done").read_text().strip()
            if before in ("", made_with):
                continue
            log.info("tokenizer %s: config changed (was %s, now %s); retraining", name, before, made_with)
        items = _training_items(data_dir, templates, name, cls, max_items, seed)
        log.info("training tokenizer %s (%s) on %d items", name, spec.type, len(items))
        if target.exists():
            shutil.rmtree(target)
        train_tokenizer(spec.type, items, target, **spec.conf)
        (target / "done").write_text(made_with + "\n")
        trained.append(name)
    return trained


def _training_items(data_dir, templates, name, cls, max_items, seed):
    ctx = ReadContext(data_dir, sample_rate=getattr(cls, "sample_rate", None))
    seen, items = set(), []
    rng = np.random.default_rng(seed)
    for t in templates:
        for it in t.items:
            if it.tokenizer != name or (it.name, it.reader) in seen or it.reader == "spk_prompt":
                continue
            seen.add((it.name, it.reader))
            table, _ = read_index(Path(data_dir) / it.name)
            ids = sorted(table)
            if len(ids) > max_items:
                ids = sorted(rng.choice(ids, size=max_items, replace=False).tolist())
            reader = get_reader(it.reader)
            for i in ids:
                try:
                    items.append(reader(i, table[i].content, ctx))
                except ItemError as e:
                    log.warning("tokenizer training skips %s: %s", i, e)
    if not items:
        raise ValueError(f"no training items found for tokenizer {name!r} in {data_dir}")
    return items


def check_continuous_conditions(template: TaskTemplate, specs: Dict[str, TokenizerSpec]) -> None:
    """Refuse a template whose target is a continuous item (placeholder + side features)."""
    from espnet2.speechlm.tokenizers.continuous import is_continuous

    template.check_conditions_only(n for n in template.tokenizers if n in specs and is_continuous(specs[n].type))


def _spec(specs: Dict[str, TokenizerSpec], name: str) -> TokenizerSpec:
    if name not in specs:
        raise KeyError(f"tokenizer {name!r} is used by a template but missing from the tokenizer config "
                       f"(has: {sorted(specs)})")
    return specs[name]


# --- stage 5: tokenization ------------------------------------------------------------
@dataclass
class PrepareJob:
    data_dir: Path
    template: TaskTemplate
    specs: Dict[str, TokenizerSpec]
    tokenizer_dir: Optional[Path]
    out_dir: Path
    shard_size: int = 1000
    batch_size: int = 16
    max_seconds: Optional[float] = None
    max_frames: Optional[int] = None


def shard_ids(ids: List[str], shard_size: int) -> List[List[str]]:
    return [ids[i : i + shard_size] for i in range(0, len(ids), shard_size)]


def shard_dir(out_dir: Path, index: int) -> Path:
    return Path(out_dir) / "shards" / f"shard_{index:05d}"


def shard_provenance(job: PrepareJob, ids: List[str], tables: Dict[str, Dict[str, Entry]]) -> str:
    """What a shard is made from, as one hash: its ids, their rows of every index file, each
    tokenizer's spec and trained files, and the length limits. A shard whose recorded hash
    differs (other shard size, changed inputs or tokenizers) is redone, never reused."""
    h = hashlib.sha1()
    h.update(json.dumps({"task": job.template.to_dict(), "max_seconds": job.max_seconds,
                         "max_frames": job.max_frames}, sort_keys=True, default=str).encode())
    for it in job.template.items:
        rows = tables[it.name]
        h.update(f"\0{it.name}\0".encode())
        h.update("".join(f"{i} {rows[i].content}\n" for i in ids).encode())
        if it.reader == "audio":  # the files behind the paths: rewritten audio (another --fs) changes them
            h.update("".join(f"{i} {_file_stamp(rows[i].content, job.data_dir)}\n" for i in ids).encode())
    for name in sorted(job.template.tokenizers):
        spec = job.specs[name]
        h.update(json.dumps({"name": name, "type": spec.type, "conf": spec.conf}, sort_keys=True, default=str).encode())
        trained = Path(job.tokenizer_dir) / name if job.tokenizer_dir else None
        if trained is not None and trained.is_dir():
            for f in sorted(p for p in trained.rglob("*") if p.is_file()):
                h.update(f"\0{f.relative_to(trained)}\0".encode())
                h.update(f.read_bytes())
    return h.hexdigest()


def _file_stamp(path: str, data_dir: Path) -> str:
    """Size and modification time of an audio file (a stat, not a read); '-' for a command or archive."""
    for p in (Path(path), Path(data_dir) / path):
        try:
            st = p.stat()
            return f"{st.st_size}:{st.st_mtime_ns}"
        except OSError:
            continue
    return "-"


def shard_is_current(job: PrepareJob, index: int, provenance: str) -> bool:
    d = shard_dir(job.out_dir, index)
    return (d / "done").exists() and (d / "provenance").exists() and (d / "provenance").read_text().strip() == provenance


def plan(job: PrepareJob) -> tuple[List[List[str]], List[Skip], dict]:
    """Validate the index files and split the kept ids into shards (plus the read tables)."""
    for it in job.template.items:
        _spec(job.specs, it.tokenizer)
    check_continuous_conditions(job.template, job.specs)
    kept, tables, skips = join_items(job.data_dir, [it.name for it in job.template.items])
    return shard_ids(kept, job.shard_size), skips, tables


_TOKENIZER_CACHE: dict = {}


def _tokenizers(job: PrepareJob) -> dict:
    # keyed by what builds them (dir, names, types, confs), so one process never reuses a
    # tokenizer built from another config
    key = (str(job.tokenizer_dir), json.dumps({n: [job.specs[n].type, job.specs[n].conf]
                                                for n in sorted(job.template.tokenizers)}, sort_keys=True, default=str))
    if key not in _TOKENIZER_CACHE:
        _TOKENIZER_CACHE[key] = {n: load_tokenizer(job.specs[n], job.tokenizer_dir) for n in job.template.tokenizers}
    return _TOKENIZER_CACHE[key]


def tokenize_shard(job: PrepareJob, index: int, ids: List[str], tables: Dict[str, Dict[str, Entry]]) -> int:
    """Tokenize one shard into a temp dir, then rename it into place. Returns #kept.

    `tables` holds at least this shard's rows of every item's index file.
    """
    final = shard_dir(job.out_dir, index)
    provenance = shard_provenance(job, ids, tables)
    if shard_is_current(job, index, provenance):
        return int((final / "num_examples").read_text())
    if (final / "done").exists():
        log.info("%s: made from other inputs (shard size, index files or tokenizers changed); redoing it", final)
    tokenizers = _tokenizers(job)
    items = job.template.items
    contexts = [ReadContext(job.data_dir, tokenizers[it.tokenizer].sample_rate, job.max_seconds) for it in items]
    tokens: Dict[str, List[np.ndarray]] = {}  # id -> per-item arrays
    feats: Dict[str, List[Optional[np.ndarray]]] = {}  # id -> per-item features (None: a discrete item)
    skips: List[Skip] = []
    for start in range(0, len(ids), job.batch_size):
        batch = ids[start : start + job.batch_size]
        per_item = []
        for it, ctx in zip(items, contexts):
            tok = tokenizers[it.tokenizer]
            raw, ok_ids = [], []
            for i in batch:
                entry = tables[it.name][i]
                try:
                    raw.append(get_reader(it.reader)(i, entry.content, ctx))
                    ok_ids.append(i)
                except ItemError as e:
                    skips.append(Skip(i, str(job.data_dir / it.name), entry.line, str(e)))
            per_item.append(_tokenize_batch(tok, it.tokenizer, raw, ok_ids, lambda i, msg, it=it: skips.append(
                Skip(i, str(job.data_dir / it.name), tables[it.name][i].line, msg))))
        bad = {s.example_id for s in skips}
        for i in batch:
            if i in bad:
                continue
            results = [d[i] for d in per_item]  # token array, or (tokens, features) of a continuous item
            arrays = [np.asarray(r[0] if isinstance(r, tuple) else r) for r in results]
            too_long = job.max_frames and max(a.shape[0] for a in arrays) > job.max_frames
            empty = next((it.name for it, a in zip(items, arrays) if a.shape[0] == 0), None)
            if too_long or empty:
                reason = f"item longer than {job.max_frames} frames" if too_long else f"{empty} gave no tokens"
                skips.append(Skip(i, str(job.data_dir / items[0].name), tables[items[0].name][i].line, reason))
                continue
            tokens[i] = arrays
            feats[i] = [r[1] if isinstance(r, tuple) else None for r in results]
    feat_dtypes = [getattr(tokenizers[it.tokenizer], "store_dtype", None) for it in items]
    _write_shard(final, [i for i in ids if i in tokens], tokens, len(items), skips, feats,
                 [_embed_dim(tokenizers[it.tokenizer]) for it in items], feat_dtypes, provenance)
    return len(tokens)


def _embed_dim(tok) -> Optional[int]:
    """Feature size of a continuous tokenizer, None for a discrete one."""
    from espnet2.speechlm.tokenizers.continuous import ContinuousTokenizer

    return int(tok.embed_dim) if isinstance(tok, ContinuousTokenizer) else None


def _tokenize_batch(tok, name: str, raw: list, ids: List[str], skip) -> Dict[str, np.ndarray]:
    """Tokenize a batch; if the tokenizer rejects it (ValueError), retry one by one so a bad
    item (an unknown note, NaN audio, ...) is skipped with its reason instead of failing the shard."""
    if not raw:
        return {}
    encode = _encoder(tok)
    try:
        return dict(zip(ids, encode(raw)))
    except ValueError:
        pass
    out = {}
    for i, item in zip(ids, raw):
        try:
            out[i] = encode([item])[0]
        except ValueError as e:
            skip(i, f"tokenizer {name}: {e}")
    return out


def _encoder(tok):
    """`tokenize`, or for a continuous tokenizer one pass giving (tokens, features) per item."""
    if _embed_dim(tok) is None:
        return tok.tokenize
    return lambda raw: list(zip(*tok.encode(raw))) if raw else []


def _write_shard(final: Path, kept: List[str], tokens, n_items: int, skips: List[Skip], feats=None,
                 embed_dims: Optional[List[Optional[int]]] = None,
                 feat_dtypes: Optional[List[Optional[str]]] = None, provenance: str = "") -> None:
    tmp = final.with_name(final.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    (tmp / "ids.txt").write_text("".join(f"{i}\n" for i in kept))
    for j in range(n_items):
        arrays = [tokens[i][j] for i in kept]
        width = arrays[0].shape[1] if arrays else 1
        flat = np.concatenate(arrays, axis=0) if arrays else np.zeros((0, width))
        np.save(tmp / f"item{j}.npy", flat.astype(np.int32))
        np.save(tmp / f"item{j}.len.npy", np.array([a.shape[0] for a in arrays], dtype=np.int64))
        dim = embed_dims[j] if embed_dims else None
        if dim is not None:  # continuous item: features with the same row offsets as the tokens
            rows = [feats[i][j] for i in kept]
            flat = np.concatenate(rows, axis=0) if rows else np.zeros((0, dim), dtype=np.float32)
            np.save(tmp / f"item{j}.feat.npy", flat.astype((feat_dtypes or [None] * n_items)[j] or np.float32))
    (tmp / "skipped.txt").write_text("".join(f"{s}\n" for s in skips))
    (tmp / "num_examples").write_text(str(len(kept)))
    (tmp / "provenance").write_text(provenance + "\n")
    (tmp / "done").touch()
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)


def _run_one(args) -> int:
    return tokenize_shard(*args)


def run_shards(job: PrepareJob, shards: List[List[str]], tables: Dict[str, Dict[str, Entry]], nj: int = 1,
               only: Optional[Sequence[int]] = None) -> None:
    """Tokenize the shards not done yet (`only`: a subset, for one job of a `--cmd` array)."""
    def rows(ids):
        return {name: {i: t[i] for i in ids} for name, t in tables.items()}

    todo = [(job, k, ids, rows(ids)) for k, ids in enumerate(shards) if only is None or k in only]
    todo = [args for args in todo if not shard_is_current(job, args[1], shard_provenance(job, args[2], args[3]))]
    if not todo:
        return
    bar = tqdm(total=len(todo), desc=f"tokenize {job.template.task}", unit="shard")
    if nj <= 1 or len(todo) == 1:
        for args in todo:
            _run_one(args)
            bar.update()
    else:
        with mp.get_context("spawn").Pool(nj, initializer=_worker_init) as pool:
            for _ in pool.imap_unordered(_run_one, todo):
                bar.update()
    bar.close()


def _worker_init() -> None:
    """One compute thread per worker (nj workers share the cores).

    Through the environment (read by torch and BLAS when they load) and threadpoolctl (for the
    BLAS numpy already loaded), not by importing torch: that cost every worker ~200 MB and
    seconds of start-up even for tasks whose tokenizers never use torch (bench/bench_prepare.py).
    """
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = "1"
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


def merge(job: PrepareJob, shards: List[List[str]], plan_skips: List[Skip],
          tables: Optional[Dict[str, Dict[str, Entry]]] = None) -> dict:
    """Write data.json and the full skip report once every shard is done and current.

    Proves that nothing is lost or doubled: every input id is in exactly one shard's output or
    in the skip report, and in no other shard. `tables` (the plan's index rows) lets it check
    each shard's provenance too; shard folders beyond the plan (an older, smaller shard size)
    are removed.
    """
    missing = [k for k in range(len(shards)) if not (shard_dir(job.out_dir, k) / "done").exists()]
    if tables is not None:
        missing += [k for k in range(len(shards)) if k not in missing and not shard_is_current(
            job, k, shard_provenance(job, shards[k], {n: {i: t[i] for i in shards[k]} for n, t in tables.items()}))]
    if missing:
        raise RuntimeError(f"{job.out_dir}: shards {sorted(missing)[:10]} are not done (or were made from other "
                           "inputs); run them before merging")
    for stale in sorted((Path(job.out_dir) / "shards").glob("shard_*")):
        if stale.is_dir() and not stale.name.endswith(".tmp") and int(stale.name.split("_")[1]) >= len(shards):
            shutil.rmtree(stale)
    lines = [f"{s}\n" for s in plan_skips]
    entries, total, seen = [], 0, {}
    for k in range(len(shards)):
        d = shard_dir(job.out_dir, k)
        shard_skips = (d / "skipped.txt").read_text().splitlines(keepends=True)
        lines += shard_skips
        kept = (d / "ids.txt").read_text().split()
        check_shard_ids(d, shards[k], kept, {l.split(" ", 2)[1] for l in shard_skips})
        for i in kept:
            if i in seen:
                raise RuntimeError(f"{job.out_dir}: example {i} is in shards {seen[i]} and {k}")
            seen[i] = k
        n = int((d / "num_examples").read_text())
        entries.append({"path": str(d.relative_to(job.out_dir)), "num_examples": n})
        total += n
    (Path(job.out_dir) / "skipped.txt").write_text("".join(lines))
    manifest = {
        "format": DATA_FORMAT,
        "task": job.template.task,
        "template": job.template.to_dict(),
        "data_dir": str(Path(job.data_dir).resolve()),
        "tokenizers": _tokenizer_summary(job),
        "shards": entries,
        "num_examples": total,
        "num_skipped": len(lines),
        "skip_report": "skipped.txt",
    }
    tmp = Path(job.out_dir) / "data.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2))
    tmp.replace(Path(job.out_dir) / "data.json")
    return manifest


def check_shard_ids(d: Path, planned: List[str], kept: List[str], skipped: set) -> None:
    """A shard holds exactly its planned ids: each kept once or listed as skipped, nothing else."""
    extra = sorted(set(kept) - set(planned))
    lost = sorted(set(planned) - set(kept) - skipped)
    twice = sorted(set(kept) & skipped) + sorted({i for i in kept if kept.count(i) > 1})
    if extra or lost or twice:
        raise RuntimeError(f"{d}: holds ids it was not planned for {extra[:5]}, loses {lost[:5]} without a skip "
                           f"reason, or has {twice[:5]} twice; remove it and re-run")


def _tokenizer_summary(job: PrepareJob) -> dict:
    out = {}
    for name, tok in _tokenizers(job).items():
        spec = job.specs[name]
        out[name] = {
            "type": spec.type,
            "conf": spec.conf,
            "dir": str((Path(job.tokenizer_dir) / name).resolve()) if job.tokenizer_dir else None,
            "codebook_size": int(tok.codebook_size),
            "n_streams": int(tok.n_streams),
            "frame_rate": tok.frame_rate,
            "sample_rate": tok.sample_rate,
        }
        if getattr(tok, "stream_codebook_sizes", None) is not None:  # streams of different sizes (codec_ssl)
            out[name]["stream_sizes"] = [int(n) for n in tok.stream_codebook_sizes]
        if _embed_dim(tok) is not None:  # continuous item: features beside the placeholder tokens
            out[name]["embed_dim"] = _embed_dim(tok)
    return out


def prepare(job: PrepareJob, nj: int = 1) -> dict:
    """Validate, tokenize every unfinished shard, merge. Returns the manifest."""
    Path(job.out_dir).mkdir(parents=True, exist_ok=True)
    shards, skips, tables = plan(job)
    n_in = sum(len(s) for s in shards) + len(skips)
    log.info("%s: %d examples, %d skipped at validation, %d shards", job.data_dir, n_in, len(skips), len(shards))
    run_shards(job, shards, tables, nj)
    manifest = merge(job, shards, skips, tables)
    if manifest["num_examples"] == 0:
        raise RuntimeError(f"{job.data_dir}: no example survived preparation; see {job.out_dir}/skipped.txt")
    return manifest
