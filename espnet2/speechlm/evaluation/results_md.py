"""Keep a RESULTS.md table (rows: task / test set, columns: metrics) up to date.

The table lives between two HTML-comment markers so text people add around it is
preserved; re-scoring a test set replaces its row, new metrics add columns.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Mapping, Tuple

BEGIN = "<!-- speechlm-score:begin -->"
END = "<!-- speechlm-score:end -->"
KEY_COLS = ["task", "test set", "utts"]


def _cells(line: str) -> List[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def parse_table(lines: List[str]) -> Tuple[List[str], Dict[Tuple[str, str], Dict[str, str]]]:
    rows = [l for l in lines if l.strip().startswith("|")]
    if len(rows) < 2:
        return [], {}
    header = _cells(rows[0])
    table: Dict[Tuple[str, str], Dict[str, str]] = {}
    for row in rows[2:]:
        vals = dict(zip(header, _cells(row)))
        table[(vals.get("task", ""), vals.get("test set", ""))] = vals
    return [h for h in header if h not in KEY_COLS], table


def format_value(value: float, n_scored: int, n_total: int) -> str:
    text = f"{value:.4g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.3e}"
    return text if n_scored == n_total else f"{text} ({n_scored}/{n_total})"


def render_table(columns: List[str], table: Mapping[Tuple[str, str], Mapping[str, str]]) -> List[str]:
    header = KEY_COLS + columns
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for key in sorted(table):
        row = table[key]
        out.append("| " + " | ".join(row.get(h, "-") or "-" for h in header) + " |")
    return out


def update_results_md(
    path: Path, task: str, test_set: str, n_total: int, cells: Mapping[str, str], title: str = "# RESULTS"
) -> None:
    """Insert or replace the row for (task, test_set); ``cells`` maps column -> text."""
    path = Path(path)
    text = path.read_text(encoding="utf-8") if path.exists() else f"{title}\n\n"
    lines = text.splitlines()
    if BEGIN in lines and END in lines:
        b, e = lines.index(BEGIN), lines.index(END)
        before, body, after = lines[:b], lines[b + 1 : e], lines[e + 1 :]
    else:
        before, body, after = lines, [], []
    columns, table = parse_table(body)
    for col in cells:
        if col not in columns:
            columns.append(col)
    row = {"task": task, "test set": test_set, "utts": str(n_total)}
    row.update(cells)
    table[(task, test_set)] = row
    new = before + ([""] if before and before[-1].strip() else []) + [BEGIN] + render_table(columns, table) + [END] + after
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(new).rstrip("\n") + "\n", encoding="utf-8")
