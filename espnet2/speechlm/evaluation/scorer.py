"""Score an inference output dir against a reference data dir.

Inputs are Kaldi-style index files (``text``, ``wav.scp``, ``logprob``) chosen per
metric in the score config. Every reference utterance is accounted for: an id
without a readable hypothesis (or reference, or whose scoring raised) is listed
in ``missing.txt`` and summary.json with the reason, and ``n_scored``/``n_total``
are reported per metric, so partial outputs can never pass as complete ones.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import yaml

from espnet2.speechlm.evaluation.base import Metric, is_number
from espnet2.speechlm.evaluation.data_io import load_audio, parse_logprob, read_index, resolve_audio_spec, write_utt2
from espnet2.speechlm.evaluation.factory import build_metric
from espnet2.speechlm.evaluation.results_md import format_value, update_results_md

UNIVERSE_FILES = ("text", "wav.scp", "utt2spk")


def load_score_config(path: Path) -> List[Dict[str, Any]]:
    """VERSA-style YAML: a list of ``{name: metric, hyp: file, ref: file, **options}``
    (a mapping with a ``metrics:`` list is accepted too)."""
    with open(path, encoding="utf-8") as f:
        conf = yaml.safe_load(f)
    if isinstance(conf, dict):
        conf = conf.get("metrics")
    if not isinstance(conf, list) or not all(isinstance(e, dict) and "name" in e for e in conf):
        raise ValueError(f"{path}: expected a list of metric entries, each with a 'name'")
    names = [e["name"] for e in conf]
    dups = sorted({n for n in names if names.count(n) > 1})
    if dups:
        raise ValueError(f"{path}: metric(s) listed twice: {dups}")
    return conf


def _kind(index_name: str) -> str:
    if index_name.endswith(".scp"):
        return "audio"
    if index_name == "logprob" or index_name.endswith("logprob"):
        return "logprob"
    return "text"


class _Side:
    """Lazily reads index files of one directory and loads values, caching per utt."""

    def __init__(self, root: Optional[Path]):
        self.root = root
        self.indices: Dict[str, Optional[Dict[str, str]]] = {}
        self.cache: Dict[Tuple[str, str], Tuple[bool, Any]] = {}

    def index(self, name: str) -> Optional[Dict[str, str]]:
        if name not in self.indices:
            path = self.root / name if self.root else None
            self.indices[name] = read_index(path) if path and path.is_file() else None
        return self.indices[name]

    def get(self, name: str, utt: str) -> Tuple[bool, Any, str]:
        """(ok, value, spec-or-reason)."""
        idx = self.index(name)
        if idx is None:
            return False, None, f"no {name} in {self.root}"
        if utt not in idx:
            return False, None, f"id not in {name}"
        spec = idx[utt]
        key = (name, utt)
        if key not in self.cache:
            try:
                kind = _kind(name)
                if kind == "audio":
                    spec = resolve_audio_spec(spec, self.root)
                    value: Any = load_audio(spec)
                elif kind == "logprob":
                    value = parse_logprob(spec)
                else:
                    value = spec
                self.cache[key] = (True, value)
            except Exception as e:  # unreadable file, bad line, ...
                self.cache[key] = (False, f"unreadable {name} entry {spec!r}: {type(e).__name__}: {e}")
        ok, value = self.cache[key]
        return (True, value, spec) if ok else (False, None, value)

    def clear(self) -> None:
        self.cache.clear()


@dataclass
class _Run:
    entry: Dict[str, Any]
    metric: Metric
    hyp: str
    ref: Optional[str]
    per_utt: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    pairs: Dict[str, Tuple[Any, Any]] = field(default_factory=dict)
    not_scored: Dict[str, str] = field(default_factory=dict)


def utterance_ids(ref_dir: Optional[Path], hyp_dir: Path) -> List[str]:
    """Reference ids define n_total; only without a reference dir do we trust the hypotheses."""
    for root in ([ref_dir] if ref_dir else []) + [hyp_dir]:
        for name in UNIVERSE_FILES + (("logprob",) if root == hyp_dir else ()):
            if (root / name).is_file():
                return list(read_index(root / name))
    raise FileNotFoundError(f"no {'/'.join(UNIVERSE_FILES)} in {ref_dir} or {hyp_dir}")


def score_dirs(
    score_config: List[Dict[str, Any]],
    hyp_dir: Path,
    ref_dir: Optional[Path],
    out_dir: Path,
    task: str,
    test_set: Optional[str] = None,
    results_md: Optional[Path] = None,
    progress: bool = True,
) -> Dict[str, Any]:
    """Run every configured metric, write utt2* / missing.txt / summary.json, update RESULTS.md."""
    from tqdm import tqdm

    hyp_dir, out_dir = Path(hyp_dir), Path(out_dir)
    ref_dir = Path(ref_dir) if ref_dir else None
    test_set = test_set or (ref_dir.name if ref_dir else hyp_dir.name)
    out_dir.mkdir(parents=True, exist_ok=True)

    runs: List[_Run] = []
    for entry in score_config:
        metric = build_metric(entry)
        ref = entry.get("ref", metric.default_ref)
        runs.append(_Run(entry, metric, entry.get("hyp", metric.default_hyp), ref))
        if ref is not None and ref_dir is None:
            raise ValueError(f"metric {entry['name']!r} needs a reference ({ref}); pass --ref_dir")

    utts = utterance_ids(ref_dir, hyp_dir)
    universe = set(utts)
    hyps, refs = _Side(hyp_dir), _Side(ref_dir)

    for utt in tqdm(utts, desc=f"scoring {task}/{test_set}", disable=not progress):
        for run in runs:
            ok, hyp, hyp_spec = hyps.get(run.hyp, utt)
            if not ok:
                run.not_scored[utt] = f"missing hypothesis ({hyp_spec})" if "unreadable" not in hyp_spec else hyp_spec
                continue
            ref, ref_spec = None, None
            if run.ref is not None:
                ok, ref, ref_spec = refs.get(run.ref, utt)
                if not ok:
                    run.not_scored[utt] = f"missing reference ({ref_spec})"
                    continue
            try:
                run.per_utt[utt] = run.metric.score(hyp, ref)
                run.pairs[utt] = (hyp_spec, ref_spec)
            except Exception as e:
                run.not_scored[utt] = f"scoring failed: {type(e).__name__}: {e}"
        hyps.clear()
        refs.clear()

    extra = sorted({u for run in runs for u in (hyps.index(run.hyp) or {}) if u not in universe})
    if extra:
        logging.warning("%d hypothesis ids have no reference and were ignored (e.g. %s)", len(extra), extra[0])
    summary = _summarize(runs, utts, task, test_set, hyp_dir, ref_dir, extra)
    _write_outputs(runs, utts, out_dir, summary)
    if results_md is not None:
        cells = {
            key: format_value(val, summary["metrics"][name]["n_scored"], len(utts))
            for name, m in summary["metrics"].items()
            for key, val in m["scores"].items()
        }
        update_results_md(Path(results_md), task, test_set, len(utts), cells)
    return summary


def _summarize(runs, utts, task, test_set, hyp_dir, ref_dir, extra) -> Dict[str, Any]:
    pos = {u: i for i, u in enumerate(utts)}
    metrics: Dict[str, Any] = {}
    scores: Dict[str, float] = {}
    for run in runs:
        name = run.entry["name"]
        values = {k: float(v) for k, v in run.metric.summarize(run.per_utt, run.pairs).items()}
        scores.update(values)
        metrics[name] = {
            "scores": values,
            "n_scored": len(run.per_utt),
            "n_total": len(utts),
            "hyp": run.hyp,
            "ref": run.ref,
            "higher_is_better": run.metric.higher_is_better,
            "info": run.metric.info(),
            "not_scored": dict(sorted(run.not_scored.items(), key=lambda kv: pos[kv[0]])),
        }
    missing = [u for u in utts if any(u in r.not_scored and r.not_scored[u].startswith(("missing hyp", "unreadable")) for r in runs)]
    return {
        "task": task,
        "test_set": test_set,
        "hyp_dir": str(hyp_dir),
        "ref_dir": str(ref_dir) if ref_dir else None,
        "n_total": len(utts),
        "n_scored": min((m["n_scored"] for m in metrics.values()), default=0),
        "scores": scores,
        "missing_hypotheses": missing,
        "n_extra_hypotheses": len(extra),
        "metrics": metrics,
    }


def _write_outputs(runs: List[_Run], utts: List[str], out_dir: Path, summary: Dict[str, Any]) -> None:
    columns: Dict[str, Dict[str, Any]] = {}
    for run in runs:
        for utt, res in run.per_utt.items():
            for key, val in res.items():
                if not key.startswith("_"):
                    columns.setdefault(key, {})[utt] = float(val) if is_number(val) else str(val).replace("\n", " ")
    for key, values in columns.items():
        write_utt2(out_dir / f"utt2{key}", {u: values[u] for u in utts if u in values})
    with open(out_dir / "missing.txt", "w", encoding="utf-8") as f:
        for utt in utts:
            for run in runs:
                if utt in run.not_scored:
                    f.write(f"{utt}\t{run.entry['name']}\t{run.not_scored[utt]}\n")
    with open(out_dir / "summary.json", "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2, ensure_ascii=False, default=str)
