"""Keep a RESULTS.md table (rows: task / test set, columns: metrics) up to date.

The table lives between two HTML-comment markers so text people add around it is
preserved; re-scoring a test set replaces its row, new metrics add columns.
Right below the table, a line per metric note says what a column was measured
with (e.g. the recognizer behind ``tts_wer``) and for which rows, since numbers
from different recognizers are not comparable::

    - tts_wer: recognizer faster-whisper tiny.en (...), beam 5, int8; ... [tts/test, tts (resynthesis topline)/test]

A row whose task is another row's task plus a parenthesised label, such as
``tts (resynthesis topline)``, is listed right after that row.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple

BEGIN = "<!-- speechlm-score:begin -->"
END = "<!-- speechlm-score:end -->"
KEY_COLS = ["task", "test set", "utts"]
TOPLINE_SUFFIX = " (resynthesis topline)"

RowKey = Tuple[str, str]


def _cells(line: str) -> List[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def parse_table(lines: List[str]) -> Tuple[List[str], Dict[RowKey, Dict[str, str]]]:
    rows = [l for l in lines if l.strip().startswith("|")]
    if len(rows) < 2:
        return [], {}
    header = _cells(rows[0])
    table: Dict[RowKey, Dict[str, str]] = {}
    for row in rows[2:]:
        vals = dict(zip(header, _cells(row)))
        table[(vals.get("task", ""), vals.get("test set", ""))] = vals
    return [h for h in header if h not in KEY_COLS], table


def parse_notes(lines: List[str]) -> Dict[RowKey, Dict[str, str]]:
    """``- metric: text [task/set, task/set]`` lines -> row -> {metric: text}."""
    notes: Dict[RowKey, Dict[str, str]] = {}
    for line in lines:
        line = line.strip()
        if not (line.startswith("- ") and line.endswith("]") and ": " in line and " [" in line):
            continue
        head, _, rows = line[2:-1].rpartition(" [")
        metric, _, text = head.partition(": ")
        for row in rows.split(", "):
            task, sep, test_set = row.rpartition("/")
            if sep:
                notes.setdefault((task, test_set), {})[metric] = text
    return notes


def format_value(value: float, n_scored: int, n_total: int) -> str:
    text = f"{value:.4g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.3e}"
    return text if n_scored == n_total else f"{text} ({n_scored}/{n_total})"


def row_order(key: RowKey) -> Tuple[str, str, str]:
    """Sort by base task (``tts`` for ``tts (resynthesis topline)``), then test set, so a
    labelled variant of a row comes right after it, for every test set."""
    task, test_set = key
    base = task.split(" (", 1)[0]
    return base, test_set, task


def render_table(columns: List[str], table: Mapping[RowKey, Mapping[str, str]]) -> List[str]:
    header = KEY_COLS + columns
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for key in sorted(table, key=row_order):
        row = table[key]
        out.append("| " + " | ".join(row.get(h, "-") or "-" for h in header) + " |")
    return out


def render_notes(notes: Mapping[RowKey, Mapping[str, str]]) -> List[str]:
    """One line per (metric, text), naming its rows in table order."""
    groups: Dict[Tuple[str, str], List[RowKey]] = {}
    for key in sorted(notes, key=row_order):
        for metric, text in sorted(notes[key].items()):
            groups.setdefault((metric, text), []).append(key)
    return [f"- {metric}: {text} [{', '.join(f'{t}/{s}' for t, s in rows)}]" for (metric, text), rows in groups.items()]


def update_results_md(
    path: Path, task: str, test_set: str, n_total: int, cells: Mapping[str, str], title: str = "# RESULTS",
    notes: Optional[Mapping[str, str]] = None,
) -> None:
    """Insert or replace the row for (task, test_set); ``cells`` maps column -> text,
    ``notes`` metric -> what it was measured with (replacing the row's earlier notes)."""
    path = Path(path)
    text = path.read_text(encoding="utf-8") if path.exists() else f"{title}\n\n"
    lines = text.splitlines()
    if BEGIN in lines and END in lines:
        b, e = lines.index(BEGIN), lines.index(END)
        before, body, after = lines[:b], lines[b + 1 : e], lines[e + 1 :]
    else:
        before, body, after = lines, [], []
    columns, table = parse_table(body)
    all_notes = {k: v for k, v in parse_notes(body).items() if k in table}
    for col in cells:
        if col not in columns:
            columns.append(col)
    row = {"task": task, "test set": test_set, "utts": str(n_total)}
    row.update(cells)
    table[(task, test_set)] = row
    all_notes[(task, test_set)] = {m: " ".join(str(t).split()) for m, t in (notes or {}).items() if t}
    note_lines = render_notes(all_notes)
    block = render_table(columns, table) + ([""] + note_lines if note_lines else [])
    new = before + ([""] if before and before[-1].strip() else []) + [BEGIN] + block + [END] + after
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(new).rstrip("\n") + "\n", encoding="utf-8")
