"""What every audio tokenizer does the same way: check its input waveforms, pick its
device, and keep a trained model as a json config + a safetensors file (never pickle)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import numpy as np


def check_waveform(wav: Any, index: int, who: str) -> np.ndarray:
    """float32 [N], or an error naming tokenizer `who`, item `index` and what was wrong."""
    if type(wav).__module__.startswith("torch"):  # a torch.Tensor
        wav = wav.detach().cpu().numpy()
    if not isinstance(wav, np.ndarray):
        raise TypeError(f"{who}: item {index} must be a 1-D numpy float waveform, got {type(wav).__name__}")
    if wav.ndim != 1:
        raise ValueError(f"{who}: item {index} must be 1-D (mono) [N], got shape {wav.shape}; "
                         "downmix multi-channel audio before tokenizing")
    if wav.size == 0:
        raise ValueError(f"{who}: item {index} is empty audio (0 samples)")
    if not np.issubdtype(wav.dtype, np.floating):
        raise TypeError(f"{who}: item {index} must be a float waveform in [-1, 1], got dtype {wav.dtype}; "
                        "convert int16 PCM with x / 32768")
    if not np.all(np.isfinite(wav)):
        raise ValueError(f"{who}: item {index} contains NaN or inf samples")
    return wav.astype(np.float32, copy=False)


def resolve_device(device: str, who: str):
    """'cpu', 'cuda[:i]' or 'auto' (cuda when available) -> torch.device."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"{who}: device={device!r} but CUDA is not available; use 'cpu' or 'auto'")
    if device != "cpu" and not device.startswith("cuda"):
        raise ValueError(f"{who}: device must be 'cpu', 'cuda[:i]' or 'auto', got {device!r}")
    return torch.device(device)


def save_trained(out_dir: Path, stem: str, format_tag: str, config: Dict[str, Any],
                 arrays: Dict[str, np.ndarray]) -> None:
    """<stem>.json ({"format": tag, **config}) + <stem>.safetensors (arrays)."""
    from safetensors.numpy import save_file

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(arrays, str(out_dir / f"{stem}.safetensors"))
    (out_dir / f"{stem}.json").write_text(json.dumps({"format": format_tag, **config}, indent=2))


def read_trained(model_dir: Optional[Path], stem: str, format_tag: str
                 ) -> Tuple[Dict[str, Any], Dict[str, np.ndarray]]:
    """(config, arrays) written by `save_trained`; clear errors for a missing or foreign model."""
    from safetensors.numpy import load_file

    if model_dir is None:
        raise ValueError(f"{stem} needs a trained model_dir (run its training stage first)")
    path = Path(model_dir) / f"{stem}.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: train the {stem} tokenizer first")
    config = json.loads(path.read_text())
    if config.pop("format", None) != format_tag:
        raise ValueError(f"{path} is not a {format_tag} file")
    return config, load_file(str(Path(model_dir) / f"{stem}.safetensors"))


def merge_load_conf(saved: Dict[str, Any], conf: Dict[str, Any], who: str, runtime: Tuple[str, ...] = (),
                    training_only: Tuple[str, ...] = ()) -> Dict[str, Any]:
    """The recipe's conf at load time against the config a tokenizer was trained with.

    `runtime` keys replace the saved value (e.g. a device); `training_only` keys are
    ignored; any other saved key must be equal (compared as JSON: tuples match lists),
    since the tokens depend on it. Returns `saved` updated in place.
    """
    for key, value in conf.items():
        if key in training_only:
            continue
        if key in runtime:
            saved[key] = value
        elif key in saved and saved[key] != json.loads(json.dumps(value)):
            raise ValueError(f"{who}: {key}={value!r} in config but the trained model has {saved[key]!r}")
    return saved
