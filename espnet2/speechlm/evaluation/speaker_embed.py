"""Speaker embedders for ``spk_sim``.

``mfcc_stats`` (offline default): mean and std over time of 20 MFCCs without c0,
computed at 16 kHz. It captures timbre/channel coarsely and needs no model, but it
is NOT a speaker-verification embedding: use it to catch gross speaker errors and
regressions, not to compare with published SPK-SIM numbers.

``hf_xvector``: a transformers x-vector model (e.g. WavLM-SV) loaded only from a
local folder, never from the hub.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict

import numpy as np

from espnet2.speechlm.evaluation.base import Audio
from espnet2.speechlm.evaluation.data_io import resample
from espnet2.speechlm.registry import Registry

EMBEDDERS: Registry[Callable[..., "SpeakerEmbedder"]] = Registry("speaker embedder")


class SpeakerEmbedder:
    description: str = ""

    def __call__(self, audio: Audio) -> np.ndarray:
        raise NotImplementedError


@EMBEDDERS.register("mfcc_stats")
class MFCCStats(SpeakerEmbedder):
    def __init__(self, n_mfcc: int = 20, sr: int = 16000):
        self.n_mfcc, self.sr = n_mfcc, sr
        self.description = f"mfcc_stats (mean+std of MFCC 1..{n_mfcc}; crude, not a speaker-verification model)"

    def __call__(self, audio: Audio) -> np.ndarray:
        import librosa

        wav = resample(audio, self.sr).wav
        m = librosa.feature.mfcc(y=wav, sr=self.sr, n_mfcc=self.n_mfcc + 1, n_fft=512, hop_length=160, n_mels=40)[1:]
        return np.concatenate([m.mean(axis=1), m.std(axis=1)])


def require_local_model_dir(model_dir: str | None, what: str) -> Path:
    """Models are loaded from disk only; say how to fix it instead of hitting the network."""
    if not model_dir:
        raise ValueError(f"{what} needs model_dir: a local folder holding the model (config.json + weights)")
    path = Path(model_dir).expanduser()
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"{what}: {str(path)!r} is not a local model folder with config.json. Models are never "
            "downloaded at scoring time; fetch it once (e.g. `huggingface-cli download ORG/MODEL "
            "--local-dir DIR` on a machine with network) and pass that folder as model_dir."
        )
    return path


@EMBEDDERS.register("hf_xvector")
class HFXVector(SpeakerEmbedder):
    def __init__(self, model_dir: str | None = None, device: str = "cpu"):
        path = require_local_model_dir(model_dir, "spk_sim embedding 'hf_xvector'")
        from transformers import AutoFeatureExtractor, AutoModelForAudioXVector

        self.extractor = AutoFeatureExtractor.from_pretrained(path, local_files_only=True)
        self.model = AutoModelForAudioXVector.from_pretrained(path, local_files_only=True).to(device).eval()
        self.device = device
        self.sr = int(getattr(self.extractor, "sampling_rate", 16000))
        self.description = f"hf_xvector ({path.name})"

    def __call__(self, audio: Audio) -> np.ndarray:
        import torch

        wav = resample(audio, self.sr).wav
        inputs = self.extractor(wav, sampling_rate=self.sr, return_tensors="pt")
        with torch.no_grad():
            emb = self.model(**{k: v.to(self.device) for k, v in inputs.items()}).embeddings
        return emb[0].cpu().numpy()


def build_embedder(name: str, options: Dict[str, object]) -> SpeakerEmbedder:
    return EMBEDDERS.get(name)(**options)
