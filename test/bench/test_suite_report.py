"""Formatting of docs/benchmarks.md (bench/suite/report.py): medians, ratios, tables, parsing."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[2] / "bench" / "suite" / "report.py"
_spec = importlib.util.spec_from_file_location("bench_suite_report", _PATH)
R = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(R)


def test_median_ignores_missing_values():
    assert R.median([3.0, 1.0, 2.0]) == 2.0
    assert R.median([4, 1, None, 2, 3]) == 2.5
    assert R.median([]) is None
    assert R.median([None]) is None


def test_ratio_and_paired_ratios():
    assert R.ratio(3.0, 2.0) == 1.5
    assert R.ratio(None, 2.0) is None
    assert R.ratio(1.0, None) is None
    assert R.ratio(1.0, 0.0) is None
    assert R.paired_ratios([2.0, 4.0, 6.0], [1.0, None, 3.0]) == [2.0, 2.0]


def test_fmt_numbers_and_text():
    assert R.fmt(1234567) == "1,234,567"
    assert R.fmt(4321.6) == "4,322"
    assert R.fmt(12.345) == "12.3"
    assert R.fmt(0.012345) == "0.0123"
    assert R.fmt(0) == "0"
    assert R.fmt(None) == "—"
    assert R.fmt("a|b\nc") == "a\\|b c"  # a pipe or newline would break the table row
    assert R.fmt_ratio(1.234) == "1.23x" and R.fmt_ratio(None) == "—"


def test_table_layout_and_bad_row():
    md = R.table(["a", "b"], [[1, 2.5], ["x", None]])
    assert md.splitlines() == ["| a | b |", "|---|---|", "| 1 | 2.50 |", "| x | — |"]
    with pytest.raises(ValueError, match="row has 3 cells, the table 2 columns"):
        R.table(["a", "b"], [[1, 2, 3]])


def test_rows_table_takes_the_union_of_keys_in_order():
    md = R.rows_table([{"size": "small", "tok/s": 100.0}, {"size": "big", "mfu": 0.5}])
    assert md.splitlines()[0] == "| size | tok/s | mfu |"
    assert md.splitlines()[3] == "| big | — | 0.500 |"
    assert R.rows_table([]) == "_(no rows)_"


def test_json_rows_shapes():
    rows = [{"a": 1}]
    assert R.json_rows(rows) == rows
    assert R.json_rows({"rows": rows, "note": "x"}) == rows
    assert R.json_rows({"a": 1}) == rows
    with pytest.raises(ValueError, match="list of JSON objects"):
        R.json_rows([1, 2])


def test_json_settings_line():
    assert R.json_settings({"rows": [], "settings": {"new": 16}, "quick": True}) == 'settings: {"new": 16}; quick: true'
    assert R.json_settings({"rows": []}) is None
    assert R.json_settings([{"a": 1}]) is None


def test_markdown_tables_are_copied_from_a_printout():
    text = "body {...}\n| arch | tok/s |\n|---|---|\n| delay | 10 |\nend\n| not | a table |\n"
    assert R.markdown_tables(text) == ["| arch | tok/s |\n|---|---|\n| delay | 10 |"]
    assert R.markdown_tables("no table here") == []


def test_comparison_row_goal_spread_and_failure():
    row = R.comparison_row("train", "multiscale", "4 x 128", "ours", [3.0, 2.0, 4.0], [1.0, 2.0, 2.0])
    assert row[:5] == ["train", "multiscale", "4 x 128", "ours", 3.0] and row[5] == 2.0
    assert row[6] == "1.50x" and row[7] == "1.00–3.00" and row[8] == "1.5x: met" and row[9] == "3/3"
    assert R.comparison_row("generate", "m", "1", "ours", [2.0], [1.0])[8] == "3x: missed"
    failed = R.comparison_row("train", "valle", "4 x 128", "ours", [5.0], [], theirs_error="TypeError: x")
    assert failed[5] == "fails: TypeError: x" and failed[6] == "—" and failed[8] is None and failed[9] == "1/0"
    assert len(failed) == len(R.COMPARISON_HEADERS)
