#!/usr/bin/env python3
"""Short content fingerprint of files and folders, for the stage script's markers.

    python -m espnet2.bin.speechlm_fingerprint conf/train.yaml dump/vocab/vocab.json exp/x/train/model

Prints one 12-hex-digit hash of the paths' contents, in the order given (not of the paths
themselves, so a moved recipe keeps its fingerprints): a folder counts
every file below it (names relative to it, in name order, links followed). A missing path
counts as missing, so it still differs from any existing one. Contents, not times: a copy
of the same files has the same fingerprint. Portable where md5sum or `find -printf` is not.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from pathlib import Path
from typing import Iterator, List, Optional


def files_below(path: Path) -> Iterator[Path]:
    for root, dirs, files in os.walk(path, followlinks=True):
        dirs.sort()
        for name in sorted(files):
            yield Path(root) / name


def fingerprint(paths: List[Path]) -> str:
    h = hashlib.blake2b(digest_size=6)
    for i, path in enumerate(paths):
        h.update(f"\0argument {i}\0".encode())  # where a path is does not count, only its contents
        if path.is_dir():
            for f in files_below(path):
                h.update(f"\0file {f.relative_to(path)}\0".encode())
                _add_file(h, f)
        elif path.is_file():
            _add_file(h, path)
        else:
            h.update(b"\0missing\0")
    return h.hexdigest()


def _add_file(h, path: Path) -> None:
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="*", type=Path, help="files or folders (none: the fingerprint of nothing)")
    args = p.parse_args(argv)
    print(fingerprint(args.paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
