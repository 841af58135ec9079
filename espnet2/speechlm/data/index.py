"""Kaldi-style index files (`example-id content` per line), read with validation.

Every problem names the file, the line and the example id. Problems that concern
one example are *skips* (the example goes to the skip report); problems that
make the whole file unusable are *fatal* (IndexFileError).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Tuple


class IndexFileError(ValueError):
    """A fatal problem in an index file."""


@dataclass(frozen=True)
class Entry:
    content: str
    line: int  # 1-based


@dataclass(frozen=True)
class Skip:
    example_id: str
    file: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line} {self.example_id} {self.reason}"


DUPLICATE = "duplicate id"


def read_index(path: Path, keep_empty: bool = False) -> Tuple[Dict[str, Entry], List[Skip]]:
    """The one reader of Kaldi-style `id content` files (stages 2 and 5, scoring).

    Returns {id: Entry} and the lines it did not keep, each with a reason: an id given again
    (the first line is used: "duplicate id (first on line N)"), and an id with no content
    unless `keep_empty` (an empty hypothesis is a valid output). A file that is not UTF-8 is
    an IndexFileError naming the line: every line after it would be suspect too.
    """
    path = Path(path)
    if not path.is_file():
        raise IndexFileError(f"{path}: index file not found")
    entries: Dict[str, Entry] = {}
    skips: List[Skip] = []
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as e:
                raise IndexFileError(f"{path}:{lineno}: not valid UTF-8 ({e})") from None
            if not line.strip():
                continue
            parts = line.split(maxsplit=1)
            example_id = parts[0]
            content = parts[1].strip() if len(parts) > 1 else ""
            if example_id in entries:
                skips.append(Skip(example_id, str(path), lineno,
                                  f"{DUPLICATE} (first on line {entries[example_id].line}, which is used)"))
                continue
            if not content and not keep_empty:
                skips.append(Skip(example_id, str(path), lineno, "empty content"))
                continue
            entries[example_id] = Entry(content, lineno)
    return entries, skips


def write_index(path: Path, rows: Dict[str, str]) -> None:
    """Write `id content` lines sorted by id, atomically."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for example_id in sorted(rows):
            f.write(f"{example_id} {rows[example_id]}\n")
    tmp.replace(path)


def join_items(data_dir: Path, names: List[str]) -> Tuple[List[str], Dict[str, Dict[str, Entry]], List[Skip]]:
    """Read every item's index file and keep the ids present in all of them.

    Returns (sorted kept ids, {item name: {id: Entry}}, skips). An id missing from
    some item is skipped with the name of the file that lacks it.
    """
    data_dir = Path(data_dir)
    tables: Dict[str, Dict[str, Entry]] = {}
    skips: List[Skip] = []
    for name in names:
        tables[name], item_skips = read_index(data_dir / name)
        skips.extend(item_skips)
    skipped_ids = {s.example_id for s in skips if not s.reason.startswith(DUPLICATE)}  # a duplicate's first line stays
    all_ids = set().union(*(t.keys() for t in tables.values())) - skipped_ids
    kept = []
    for example_id in sorted(all_ids):
        missing = [n for n in names if example_id not in tables[n]]
        if missing:
            where = next(t[example_id] for t in tables.values() if example_id in t)
            present_in = next(n for n in names if example_id in tables[n])
            skips.append(
                Skip(example_id, str(data_dir / present_in), where.line, f"missing in {', '.join(missing)}")
            )
        else:
            kept.append(example_id)
    return kept, tables, skips
