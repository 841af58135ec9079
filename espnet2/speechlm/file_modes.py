"""Weights files get the same permissions as every other output.

Why: safetensors writes its files with mode 0600, so exported and packed models were
unreadable by the group and by other users (e.g. a shared model folder or a web server),
unlike the config and tokenizer files next to them.
"""

from __future__ import annotations

import os
from pathlib import Path


def as_regular_file(path: Path) -> None:
    """chmod to what a plain open() would have created (0666 minus the process umask)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)
