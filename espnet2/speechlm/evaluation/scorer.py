"""Score an inference output dir against a reference data dir.

Inputs are Kaldi-style index files (``text``, ``wav.scp``, ``logprob``) chosen per
metric in the score config. Every reference utterance is accounted for: an id
without a readable hypothesis (or reference, or whose scoring raised) is listed
in ``missing.txt`` and summary.json with the reason, and ``n_scored``/``n_total``
are reported per metric, so partial outputs can never pass as complete ones.
"""

from __future__ import annotations

import importlib
import itertools
import json
import logging
import multiprocessing
import pickle
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import yaml

from espnet2.speechlm.evaluation.base import Metric, is_number
from espnet2.speechlm.evaluation.data_io import load_audio, parse_logprob, read_index, resolve_audio_spec, write_utt2
from espnet2.speechlm.evaluation.factory import build_metric, resolve_metric
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
    """One config entry and what it made of each utterance; holds no metric object,
    since with ``nj > 1`` only the workers build metrics (and load their models)."""

    entry: Dict[str, Any]
    module: str  # where the metric's class lives: spawned workers import it to find a user's metric
    hyp: str
    ref: Optional[str]
    per_utt: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    pairs: Dict[str, Tuple[Any, Any]] = field(default_factory=dict)
    not_scored: Dict[str, str] = field(default_factory=dict)


# What one metric made of one utterance: (True, result, (hyp_spec, ref_spec)) or (False, reason, None).
Outcome = Tuple[bool, Any, Optional[Tuple[Any, Any]]]
# What one metric says about the whole test set: {"scores", "higher_is_better", "info"}, made by
# whichever process holds the metric (see `_report`).
Report = Dict[str, Any]


class ScoringError(RuntimeError):
    """An utterance could not be scored for a reason other than a bad input or a
    metric raising on it (those are recorded in missing.txt): e.g. a worker died."""


class _UttScorer:
    """Loads one utterance's hypothesis/reference values once and runs every metric
    on them. The same code runs in-process (``nj=1``) and in each pool worker, which
    is what makes ``--nj N`` give the same numbers as ``--nj 1``."""

    def __init__(self, specs: List[Tuple[Metric, str, Optional[str]]], hyp_dir: Path, ref_dir: Optional[Path]):
        self.specs = specs  # (metric, hyp index file, ref index file or None)
        self.hyps, self.refs = _Side(hyp_dir), _Side(ref_dir)

    def __call__(self, utt: str) -> List[Outcome]:
        outcomes: List[Outcome] = []
        for metric, hyp_name, ref_name in self.specs:
            outcomes.append(self._one(metric, hyp_name, ref_name, utt))
        self.hyps.clear()
        self.refs.clear()
        return outcomes

    def _one(self, metric: Metric, hyp_name: str, ref_name: Optional[str], utt: str) -> Outcome:
        ok, hyp, hyp_spec = self.hyps.get(hyp_name, utt)
        if not ok:
            return False, (f"missing hypothesis ({hyp_spec})" if "unreadable" not in hyp_spec else hyp_spec), None
        ref, ref_spec = None, None
        if ref_name is not None:
            ok, ref, ref_spec = self.refs.get(ref_name, utt)
            if not ok:
                return False, f"missing reference ({ref_spec})", None
        try:
            return True, metric.score(hyp, ref), (hyp_spec, ref_spec)
        except Exception as e:
            return False, f"scoring failed: {type(e).__name__}: {e}", None


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
    nj: int = 1,
) -> Dict[str, Any]:
    """Run every configured metric, write utt2* / missing.txt / summary.json, update RESULTS.md.

    ``nj > 1`` scores utterances in that many worker processes (see ``_score_parallel``);
    per-utterance and corpus results are identical to ``nj=1``, and this process then
    builds no metric, so each model is loaded nj times, not nj+1.
    """
    from tqdm import tqdm

    if nj < 1:
        raise ValueError(f"nj must be >= 1, got {nj}")
    hyp_dir, out_dir = Path(hyp_dir), Path(out_dir)
    ref_dir = Path(ref_dir) if ref_dir else None
    test_set = test_set or (ref_dir.name if ref_dir else hyp_dir.name)
    out_dir.mkdir(parents=True, exist_ok=True)

    # Classes only: names and option names fail here, before any model loads or process
    # starts. Metrics are instantiated by whoever scores: this process for nj=1, else
    # each worker (and only the workers), which also summarize (`_report`).
    runs: List[_Run] = []
    for entry in score_config:
        cls, _ = resolve_metric(entry)
        ref = entry.get("ref", cls.default_ref)
        runs.append(_Run(entry, cls.__module__, entry.get("hyp", cls.default_hyp), ref))
        if ref is not None and ref_dir is None:
            raise ValueError(f"metric {entry['name']!r} needs a reference ({ref}); pass --ref_dir")

    utts = utterance_ids(ref_dir, hyp_dir)
    universe = set(utts)
    nj = min(nj, max(len(utts), 1))
    if nj > 1:
        logging.info("scoring %d utterances in %d worker processes", len(utts), nj)
    bar = tqdm(total=len(utts), desc=f"scoring {task}/{test_set}", disable=not progress)
    try:
        if nj == 1:
            metrics = [build_metric(r.entry) for r in runs]
            scorer = _UttScorer([(m, r.hyp, r.ref) for m, r in zip(metrics, runs)], hyp_dir, ref_dir)
            _collect(runs, _score_serial(scorer, utts, bar))
            reports = [_report(m, r.per_utt, r.pairs) for m, r in zip(metrics, runs)]
        else:
            reports = _score_parallel(runs, hyp_dir, ref_dir, utts, nj, bar)
    finally:
        bar.close()

    hyps = _Side(hyp_dir)
    extra = sorted({u for run in runs for u in (hyps.index(run.hyp) or {}) if u not in universe})
    if extra:
        logging.warning("%d hypothesis ids have no reference and were ignored (e.g. %s)", len(extra), extra[0])
    summary = _summarize(runs, reports, utts, task, test_set, hyp_dir, ref_dir, extra)
    _write_outputs(runs, utts, out_dir, summary)
    if results_md is not None:
        write_results_row(Path(results_md), summary)
    return summary


def write_results_row(results_md: Path, summary: Dict[str, Any], task: Optional[str] = None) -> None:
    """The RESULTS.md row of a summary (as written to summary.json), under ``task``
    (default: the summary's), with each metric's note below the table."""
    n_total = summary["n_total"]
    cells = {
        key: format_value(val, m["n_scored"], n_total)
        for m in summary["metrics"].values()
        for key, val in m["scores"].items()
    }
    notes = {name: m["note"] for name, m in summary["metrics"].items() if m.get("note")}
    update_results_md(Path(results_md), task or summary["task"], summary["test_set"], n_total, cells, notes=notes)


def _collect(runs: List[_Run], outcomes: Iterator[Tuple[str, List[Outcome]]]) -> None:
    for utt, per_run in outcomes:  # always in `utts` order, so summaries see the same order
        for run, (ok, value, pair) in zip(runs, per_run):
            if ok:
                run.per_utt[utt] = value
                run.pairs[utt] = pair
            else:
                run.not_scored[utt] = value


def _report(metric: Metric, per_utt: Dict[str, Dict[str, Any]], pairs: Dict[str, Tuple[Any, Any]]) -> Report:
    """Everything the summary needs from a metric object; plain data, so a worker can send it."""
    return {
        "scores": {k: float(v) for k, v in metric.summarize(per_utt, pairs).items()},
        "higher_is_better": metric.higher_is_better,
        "info": metric.info(),
        "note": metric.note() if hasattr(metric, "note") else None,
    }


def _score_serial(scorer: "_UttScorer", utts: List[str], bar) -> Iterator[Tuple[str, List[Outcome]]]:
    for utt in utts:
        try:
            per_run = scorer(utt)
        except Exception as e:  # not a metric error (those are outcomes): a bug worth stopping for
            raise ScoringError(f"utterance {utt!r}: {type(e).__name__}: {e}") from e
        bar.update(1)
        yield utt, per_run


# --- process pool -------------------------------------------------------------------------
# Metrics may hold models (a recognizer, an x-vector net), which cannot be pickled and
# are slow to load: each worker builds them once from the config entries in the pool
# initializer and keeps them in this module global. The main process never builds one
# (that would load every model nj+1 times): a worker also turns the collected per-utterance
# results into the corpus numbers and info (`_report_in_worker`).
_WORKER: Optional[_UttScorer] = None
_BUILD_ERROR: Optional[Tuple[str, Exception]] = None  # (metric name, what its constructor raised)


def _init_worker(entries: List[Dict[str, Any]], names: List[Tuple[str, Optional[str]]], modules: List[str],
                 hyp_dir: Path, ref_dir: Optional[Path]) -> None:
    global _WORKER, _BUILD_ERROR
    for module in modules:  # metrics registered by a user's module exist in a fresh process only once it is imported
        importlib.import_module(module)
    specs = []
    for entry, (hyp, ref) in zip(entries, names):
        try:
            specs.append((build_metric(entry), hyp, ref))
        except Exception as e:  # kept for the first task to report: an initializer that raises only breaks the pool
            _BUILD_ERROR = (entry["name"], e)
            return
    _WORKER = _UttScorer(specs, hyp_dir, ref_dir)


def _worker() -> _UttScorer:
    if _BUILD_ERROR is not None:
        name, e = _BUILD_ERROR
        raise ScoringError(f"metric {name!r} could not be built in a scoring worker: {type(e).__name__}: {e}") from e
    assert _WORKER is not None, "scoring worker used before its initializer ran"
    return _WORKER


def _score_in_worker(utt: str) -> List[Outcome]:
    worker = _worker()
    try:
        per_run = worker(utt)
    except Exception as e:
        raise ScoringError(f"utterance {utt!r}: {type(e).__name__}: {e}") from e
    for (metric, _, _), (ok, value, _) in zip(worker.specs, per_run):
        if ok:  # fail here, naming the metric, rather than as an anonymous pickling error
            try:
                pickle.dumps(value)
            except Exception as e:
                raise ScoringError(
                    f"utterance {utt!r}: metric {metric.name or type(metric).__name__!r} returned a result "
                    f"that cannot be sent back from a worker process ({type(e).__name__}: {e}); use --nj 1 "
                    "or return plain numbers/strings"
                ) from None
    return per_run


def _report_in_worker(results: List[Tuple[Dict[str, Any], Dict[str, Any]]]) -> List[Report]:
    """``results``: (per_utt, pairs) of each run, in ``utts`` order as collected by the main process."""
    return [_report(metric, per_utt, pairs) for (metric, _, _), (per_utt, pairs) in zip(_worker().specs, results)]


def _score_parallel(runs: List[_Run], hyp_dir: Path, ref_dir: Optional[Path], utts: List[str], nj: int,
                    bar) -> List[Report]:
    """Score in ``nj`` spawned workers, filling ``runs`` in ``utts`` order whatever the
    finishing order; then one worker summarizes, and its reports are returned.

    At most ``2 * nj`` utterances are in flight (submitted, not yet returned), so a
    worker that dies can be tied to a short list of utterances.
    Workers keep the default BLAS/torch thread counts on purpose: fewer threads
    change the summation order, and results would differ from ``nj=1`` in the last
    digits. With multi-threaded models, set OMP_NUM_THREADS to about cores/nj.
    """
    entries = [r.entry for r in runs]
    names = [(r.hyp, r.ref) for r in runs]
    modules = sorted({r.module for r in runs} - {"__main__", "__mp_main__"})
    # spawn: no forked copies of this process's threads (tqdm, BLAS, torch) or loaded models
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(nj, mp_context=ctx, initializer=_init_worker,
                             initargs=(entries, names, modules, hyp_dir, ref_dir)) as pool:
        try:
            _collect(runs, _in_order(pool, utts, nj, bar))
            fut = pool.submit(_report_in_worker, [(r.per_utt, r.pairs) for r in runs])
            return _result(fut, "summarizing the scores", "summarizing the scores")
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)  # waits only for the <= nj utterances being scored
            raise


def _in_order(pool: ProcessPoolExecutor, utts: List[str], nj: int, bar) -> Iterator[Tuple[str, List[Outcome]]]:
    pending: Dict[Future, str] = {}
    done_early: Dict[str, List[Outcome]] = {}
    todo = iter(utts)
    next_out = 0
    for utt in itertools.islice(todo, 2 * nj):
        pending[pool.submit(_score_in_worker, utt)] = utt
    while pending:
        finished, _ = wait(pending, return_when=FIRST_COMPLETED)
        for fut in finished:
            utt = pending.pop(fut)
            in_flight = "scoring one of: " + ", ".join(repr(u) for u in [utt, *pending.values()])
            done_early[utt] = _result(fut, f"utterance {utt!r}", in_flight)
            bar.update(1)
            for nxt in itertools.islice(todo, 1):
                pending[pool.submit(_score_in_worker, nxt)] = nxt
        while next_out < len(utts) and utts[next_out] in done_early:
            yield utts[next_out], done_early.pop(utts[next_out])
            next_out += 1


def _result(fut: Future, what: str, doing: str) -> Any:
    """``fut``'s value; anything else becomes a ScoringError that names ``what`` failed,
    or what the pool was ``doing`` when a worker died."""
    try:
        return fut.result()
    except ScoringError:
        raise
    except BrokenProcessPool as e:
        raise ScoringError(
            f"a scoring worker process died (crash, out of memory or failed start-up) while {doing}; "
            "rerun with --nj 1 to see the error in-process"
        ) from e
    except Exception as e:
        raise ScoringError(f"{what}: {type(e).__name__}: {e}") from e


def _summarize(runs: List[_Run], reports: List[Report], utts, task, test_set, hyp_dir, ref_dir, extra) -> Dict[str, Any]:
    pos = {u: i for i, u in enumerate(utts)}
    metrics: Dict[str, Any] = {}
    scores: Dict[str, float] = {}
    for run, report in zip(runs, reports):
        name = run.entry["name"]
        scores.update(report["scores"])
        metrics[name] = {
            "scores": report["scores"],
            "n_scored": len(run.per_utt),
            "n_total": len(utts),
            "hyp": run.hyp,
            "ref": run.ref,
            "higher_is_better": report["higher_is_better"],
            "info": report["info"],
            "note": report.get("note"),
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
