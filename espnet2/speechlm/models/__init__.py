"""Build, save and load speech LMs (a registered body under a registered architecture).

Checkpoints are a directory with `model.safetensors` (weights, no pickle) and
`config.json` holding the builder arguments plus whatever the caller adds.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any, Optional

import torch

from espnet2.speechlm.models.bodies import BODIES
from espnet2.speechlm.models.multistream import MULTISTREAM_LMS, AbsMultiStreamLM

FORMAT = "espnet-speechlm-model/1"


def build_speechlm(arch: str, body: str, body_conf: dict, vocab_size: int, n_streams: int,
                   **arch_conf: Any) -> AbsMultiStreamLM:
    """e.g. build_speechlm("delay", "builtin", {"d_model": 256, "n_layer": 4, ...}, V, 8)."""
    body_cls = BODIES.get(body)
    cfg = body_cls.config_class(**body_conf)
    model = MULTISTREAM_LMS.get(arch)(body_cls(cfg), vocab_size=vocab_size, n_streams=n_streams, **arch_conf)
    model.build_config = dict(arch=arch, body=body, body_conf=asdict(cfg), vocab_size=vocab_size,
                              n_streams=n_streams, arch_conf=dict(arch_conf))
    return model


def save_pretrained(model: AbsMultiStreamLM, out_dir, config_dict: Optional[dict] = None) -> Path:
    """Write model.safetensors + config.json ({"model": builder args, **config_dict})."""
    from safetensors.torch import save_model

    if not hasattr(model, "build_config"):
        raise ValueError("save_pretrained needs a model made by build_speechlm (no build_config)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_model(model, str(out / "model.safetensors"))
    config = {"format": FORMAT, "model": model.build_config, **(config_dict or {})}
    (out / "config.json").write_text(json.dumps(config, indent=2))
    return out


def load_config(model_dir) -> dict:
    return json.loads((Path(model_dir) / "config.json").read_text())


def load_pretrained(model_dir, device: str | torch.device = "cpu") -> AbsMultiStreamLM:
    """Rebuild from config.json and load the weights; `model.extra_config` keeps the rest."""
    from safetensors.torch import load_model

    config = load_config(model_dir)
    b = dict(config["model"])
    if b["body"] == "hf":  # weights come from our checkpoint, not from the hub
        b["body_conf"] = {**b["body_conf"], "from_pretrained": False}
    model = build_speechlm(b["arch"], b["body"], b["body_conf"], b["vocab_size"], b["n_streams"],
                           **b["arch_conf"])
    model.build_config = config["model"]
    load_model(model, str(Path(model_dir) / "model.safetensors"), device=str(device))
    model.extra_config = {k: v for k, v in config.items() if k not in ("format", "model")}
    return model.to(device)
