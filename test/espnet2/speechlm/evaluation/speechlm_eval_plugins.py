"""Test-only metrics, used by their ``module:Class`` name so the global registry
stays untouched; they live in an importable module so spawned scoring workers
can build them too."""

from __future__ import annotations

import os

from espnet2.speechlm.evaluation.base import Metric, UttResult


class TextTrap(Metric):
    """Scores 1.0 per utterance, but misbehaves on chosen hypothesis texts:
    ``raise`` -> ValueError, ``unpicklable`` -> a result holding a lambda,
    ``die`` -> the process exits at once (a stand-in for a native-code crash);
    ``whoami`` adds the scoring process id as a side output."""

    name = "text_trap"
    default_hyp = "text"
    default_ref = None

    def score(self, hyp: str, ref: None) -> UttResult:
        if hyp == "raise":
            raise ValueError("trap sprung")
        if hyp == "unpicklable":
            return {"text_trap": 1.0, "_fn": lambda: None}
        if hyp == "die":
            os._exit(3)
        if hyp == "whoami":
            return {"text_trap": 1.0, "scored_by": f"pid{os.getpid()}"}
        return {"text_trap": 1.0}


class BuildProbe(Metric):
    """Appends the id of each process that instantiates it to the file ``log`` (spawned
    workers can tell the test only through a file); ``fail`` makes the constructor raise.
    Its corpus value is a count, not the default mean, and ``info`` echoes ``tag``, so a
    summary shows whether an instance produced it."""

    name = "build_probe"
    default_hyp = "text"
    default_ref = "text"
    higher_is_better = False

    def __init__(self, log: str, tag: str = "", fail: bool = False):
        if fail:
            raise ValueError("probe refused to build")
        with open(log, "a", encoding="utf-8") as f:
            f.write(f"{os.getpid()}\n")
        self.tag = tag

    def score(self, hyp: str, ref: str) -> UttResult:
        return {"build_probe": float(hyp == ref)}

    def summarize(self, per_utt, pairs):
        return {"build_probe_matches": sum(r["build_probe"] for r in per_utt.values())}

    def info(self):
        return {"tag": self.tag}
