"""Export the trained model as a self-describing folder loadable without DeepSpeed.

``output_dir/model/`` holds ``model.safetensors`` + ``config.json`` (written by the models
package's ``save_pretrained``, so ``load_pretrained(output_dir/model)`` rebuilds it) and a
copy of ``vocab.json``. The weights are the element-wise average of the best
``run.keep_best_k`` checkpoints by validation loss, or the latest checkpoint when no
checkpoint has a validation loss.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import torch
from torch import nn

from espnet2.speechlm.train.checkpoint import MODEL_FILE, CheckpointManager, average_state_dicts, save_safetensors

log = logging.getLogger(__name__)


def select_weights(ckpt: CheckpointManager, k: int) -> tuple[Dict[str, torch.Tensor], List[str]]:
    best = ckpt.best(k) if k > 0 else []
    if best:
        paths = [c.path for c in best]
    else:
        latest = ckpt.find_resumable()
        if latest is None:
            raise FileNotFoundError(f"no complete checkpoint under {ckpt.root} to export")
        paths = [latest]
    return average_state_dicts(paths), [p.name for p in paths]


def export_model(
    out_dir: str | Path,
    build_model: Callable[[], nn.Module],
    state: Dict[str, torch.Tensor],
    vocab_json: Optional[str | Path] = None,
    extra: Optional[Dict[str, Any]] = None,
    assets: Optional[Dict[str, Path]] = None,
) -> Path:
    """Load ``state`` into a fresh model and write the inference folder ``out_dir``.

    ``assets`` maps a relative path in the folder to a file or dir copied there (the
    tokenizers and task templates), so the folder is self-contained for inference and the hub.
    """
    out = Path(out_dir)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model = build_model()
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise RuntimeError(f"exported weights do not match the model: missing {missing}, unexpected {unexpected}")
    extra = dict(extra or {})
    if vocab_json is not None:
        shutil.copy(vocab_json, tmp / "vocab.json")
        extra["vocab"] = "vocab.json"
    for rel, src in (assets or {}).items():
        dst = tmp / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if Path(src).is_dir():
            shutil.copytree(src, dst)
        else:
            shutil.copy(src, dst)
    try:
        from espnet2.speechlm.models import save_pretrained
    except ImportError:
        save_pretrained = None
    if save_pretrained is not None and hasattr(model, "build_config"):
        save_pretrained(model, tmp, config_dict=extra)
    else:  # a model not made by build_speechlm (tests): weights + whatever config we have
        save_safetensors(model.state_dict(), tmp / MODEL_FILE)
        (tmp / "config.json").write_text(json.dumps({"format": "plain-state-dict", **extra}, indent=2))
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out
