"""Formatting of docs/benchmarks.md: medians, ratios, markdown tables, machine facts.

Pure functions over plain dicts (no torch, no espnet2) so they are unit-tested on their own
(test/bench/test_suite_report.py) and the suite's numbers cannot be changed by a layout edit.
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import statistics
from typing import Any, Dict, Iterable, List, Optional, Sequence

GOALS = {"train": 1.5, "generate": 3.0}  # ours / reference tokens/s wanted on the 2-core CPU


def median(values: Iterable[float]) -> Optional[float]:
    vals = [float(v) for v in values if v is not None]
    return statistics.median(vals) if vals else None


def ratio(ours: Optional[float], theirs: Optional[float]) -> Optional[float]:
    """ours / theirs, or None when either side is missing or theirs is not positive."""
    if ours is None or theirs is None or theirs <= 0:
        return None
    return ours / theirs


def paired_ratios(ours: Sequence[Optional[float]], theirs: Sequence[Optional[float]]) -> List[float]:
    """Ratio of each interleaved repetition pair (rep i of ours against rep i of theirs)."""
    return [r for r in (ratio(a, b) for a, b in zip(ours, theirs)) if r is not None]


def fmt(x: Any) -> str:
    """Numbers for tables: thousands separators from 100 up, 3 significant digits below."""
    if x is None:
        return "—"
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return str(x).replace("|", "\\|").replace("\n", " ")
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    if isinstance(x, int) or abs(x) >= 100:
        return f"{x:,.0f}"
    if x == 0:
        return "0"
    return f"{x:.{max(0, 2 - int(math.floor(math.log10(abs(x)))))}f}"


def fmt_ratio(r: Optional[float]) -> str:
    return "—" if r is None else f"{r:.2f}x"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A markdown table; every cell goes through `fmt`."""
    lines = ["| " + " | ".join(str(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    for row in rows:
        if len(row) != len(headers):
            raise ValueError(f"row has {len(row)} cells, the table {len(headers)} columns: {row!r}")
        lines.append("| " + " | ".join(fmt(c) for c in row) + " |")
    return "\n".join(lines)


def rows_table(rows: Sequence[Dict[str, Any]]) -> str:
    """Render a benchmark's JSON rows: one column per key, in order of first appearance."""
    if not rows:
        return "_(no rows)_"
    keys: List[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    return table(keys, [[r.get(k) for k in keys] for r in rows])


def json_rows(data: Any) -> List[Dict[str, Any]]:
    """A benchmark's --json: a list of row objects, or {"rows": [...]}, or one object."""
    if isinstance(data, dict) and isinstance(data.get("rows"), list):
        data = data["rows"]
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise ValueError("expected a list of JSON objects (or {'rows': [...]})")
    return data


def json_settings(data: Any) -> Optional[str]:
    """The non-row part of a benchmark's --json ({"rows": [...], "settings": {...}, ...}), one line."""
    if not isinstance(data, dict) or not isinstance(data.get("rows"), list):
        return None
    rest = {k: v for k, v in data.items() if k != "rows"}
    if not rest:
        return None
    return "; ".join(f"{k}: {json.dumps(v, separators=(', ', ': '))}" for k, v in rest.items())


_SEP = re.compile(r"^\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$")


def markdown_tables(text: str) -> List[str]:
    """The markdown tables printed by a benchmark without --json, verbatim."""
    out, block = [], []
    for line in text.splitlines() + [""]:
        if line.strip().startswith("|"):
            block.append(line.strip())
            continue
        if len(block) >= 2 and _SEP.match(block[1]):
            out.append("\n".join(block))
        block = []
    return out


def comparison_row(kind: str, arch: str, shape: str, label: str, ours: Sequence[Optional[float]],
                   theirs: Sequence[Optional[float]], theirs_error: Optional[str] = None) -> List[Any]:
    """One line of the side-by-side table from the per-repetition tokens/s of both sides."""
    mo, mt = median(ours), median(theirs)
    r = ratio(mo, mt)
    pr = paired_ratios(ours, theirs)
    spread = f"{min(pr):.2f}–{max(pr):.2f}" if pr else None
    goal = GOALS.get(kind)
    verdict = None if r is None or goal is None else f"{goal:g}x: {'met' if r >= goal else 'missed'}"
    ref = mt if theirs_error is None else f"fails: {theirs_error}"
    n = f"{sum(v is not None for v in ours)}/{sum(v is not None for v in theirs)}"
    return [kind, arch, shape, label, mo, ref, fmt_ratio(r), spread, verdict, n]


COMPARISON_HEADERS = ["step", "arch", "batch x length", "ours", "ours tok/s", "reference tok/s", "ours/ref",
                      "paired ratios", "goal", "reps ours/ref"]


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> Dict[str, Any]:
    """Facts that decide the numbers; torch facts come from the workers (they may differ)."""
    info: Dict[str, Any] = {"cpu": cpu_model(), "logical_cpus": os.cpu_count(),
                            "os": platform.platform(), "python": platform.python_version()}
    if hasattr(os, "sched_getaffinity"):
        info["usable_cpus"] = len(os.sched_getaffinity(0))
    if hasattr(os, "getloadavg"):
        info["load_avg_1m_at_start"] = round(os.getloadavg()[0], 2)
    return info
