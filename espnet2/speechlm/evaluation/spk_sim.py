"""Speaker similarity: cosine similarity between speaker embeddings of the
generated audio and the reference (prompt/target-speaker) audio. The embedder
used is recorded in summary.json since values are only comparable within one."""

from __future__ import annotations

from typing import Dict, Optional

import numpy as np

from espnet2.speechlm.evaluation.base import METRICS, Audio, Metric, UttResult
from espnet2.speechlm.evaluation.speaker_embed import build_embedder


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


@METRICS.register("spk_sim")
class SpeakerSimilarity(Metric):
    name = "spk_sim"
    default_hyp = "wav.scp"
    default_ref = "wav.scp"

    def __init__(self, embedding: str = "mfcc_stats", embedding_conf: Optional[Dict[str, object]] = None, model_dir: Optional[str] = None):
        conf = dict(embedding_conf or {})
        if model_dir is not None:
            conf["model_dir"] = model_dir
        self.embedder = build_embedder(embedding, conf)

    def score(self, hyp: Audio, ref: Audio) -> UttResult:
        return {"spk_sim": cosine(self.embedder(hyp), self.embedder(ref))}

    def info(self) -> Dict[str, object]:
        return {"embedding": self.embedder.description}

    def note(self) -> Optional[str]:
        return f"embedding {self.embedder.description}"
