"""Import helpers for optional packages.

pyworld 0.3.x and pysptk 1.0.x still ``import pkg_resources`` at import time,
which recent setuptools no longer ships. Both only use it for a version string or
an example-file path, so a tiny stand-in is enough; it is removed again right
after the import so nothing else mistakes it for real setuptools.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import sys
import types
from typing import Optional


def _fake_pkg_resources() -> types.ModuleType:
    mod = types.ModuleType("pkg_resources")

    class _Dist:
        def __init__(self, name: str):
            try:
                self.version = importlib.metadata.version(name)
            except importlib.metadata.PackageNotFoundError:
                self.version = "0"

    def resource_filename(package: str, resource: str) -> str:
        spec = importlib.util.find_spec(package)
        base = os.path.dirname(spec.origin) if spec and spec.origin else "."
        return os.path.join(base, resource)

    mod.get_distribution = _Dist  # type: ignore[attr-defined]
    mod.resource_filename = resource_filename  # type: ignore[attr-defined]
    return mod


def optional_import(name: str) -> Optional[types.ModuleType]:
    """Import ``name`` or return None; tolerates a missing pkg_resources."""
    if importlib.util.find_spec(name) is None:
        return None
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name != "pkg_resources":
            return None
    added = "pkg_resources" not in sys.modules
    if added:
        sys.modules["pkg_resources"] = _fake_pkg_resources()
    try:
        return importlib.import_module(name)
    except ImportError:
        return None
    finally:
        if added:
            sys.modules.pop("pkg_resources", None)
