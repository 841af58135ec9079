"""Build a metric from one score-config entry, preferring VERSA where it applies."""

from __future__ import annotations

import inspect
from typing import Any, Dict, Tuple, Type

from espnet2.speechlm.evaluation.base import METRICS, Metric
from espnet2.speechlm.evaluation.versa_bridge import VERSA_METRICS, VersaMetric, versa_available

# keys of a config entry that belong to the scorer, not to the metric
RESERVED_KEYS = ("name", "hyp", "ref", "use_versa")


def resolve_metric(entry: Dict[str, Any]) -> Tuple[Type[Metric], Dict[str, Any]]:
    """The class ``build_metric(entry)`` instantiates and its keyword arguments.

    Checks the name, ``use_versa`` and the option *names* (against the
    constructor's signature) but instantiates nothing, so no model is loaded:
    the parallel scorer validates a config with it before its workers build the
    metrics. Option *values* are only checked by the constructor.
    """
    name = entry["name"]
    use_versa = entry.get("use_versa", "auto")
    options = {k: v for k, v in entry.items() if k not in RESERVED_KEYS}
    if use_versa not in ("auto", True, False):
        raise ValueError(f"{name}: use_versa must be auto, true or false, not {use_versa!r}")
    if use_versa is True or (use_versa == "auto" and name in VERSA_METRICS and versa_available()):
        if name not in VERSA_METRICS:
            raise ValueError(f"{name}: no VERSA equivalent is known")
        if not versa_available():
            raise RuntimeError(f"{name}: use_versa is true but the versa package is not installed")
        return VersaMetric, {"name": name, "options": options}  # VERSA checks its own options
    cls = METRICS.get(name)
    try:
        inspect.signature(cls).bind(**options)
    except TypeError as e:
        raise TypeError(f"bad options for metric {name!r}: {e}") from None
    return cls, options


def build_metric(entry: Dict[str, Any]) -> Metric:
    """``entry``: ``{name: ..., hyp: ..., ref: ..., use_versa: auto|true|false, **options}``.

    ``use_versa: auto`` (default) delegates to VERSA when it is importable and
    knows the metric; options are then passed to VERSA's config entry as is.
    """
    cls, kwargs = resolve_metric(entry)
    try:  # nested options (e.g. ``recognizer_conf``) are only checked in there
        return cls(**kwargs)
    except TypeError as e:
        raise TypeError(f"bad options for metric {entry['name']!r}: {e}") from e
