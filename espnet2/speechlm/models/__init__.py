"""Build, save and load speech LMs (a registered body under a registered architecture).

Checkpoints are a directory with `model.safetensors` (weights, no pickle) and
`config.json` holding the builder arguments plus whatever the caller adds.

Two builder options come from the joint vocabulary (`vocab_build_args`):
  * `head_ranges` (an architecture option): each stream's head scores only the ids
    that stream can hold (`models.heads`); absent = full heads (older checkpoints).
  * `text_init`: the text tokenizer's range holds a pretrained LLM's own token ids, and
    its embedding / output rows are grafted in at build time (`models.text_init`).
  * `continuous_ids`: the placeholder id of every continuous item (`tokenizers.continuous`)
    in the vocabulary. Their feature sizes come from the model config
    (`continuous: {spk_embedding: 40}`, e.g. under `model.arch_conf` of a training config;
    data.json records each item's `embed_dim`); together they add one projection
    Linear(embed_dim, d_model) per item, saved with the weights.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any, Dict, Optional

import torch

from espnet2.speechlm.models.bodies import BODIES
from espnet2.speechlm.models.heads import vocab_head_ranges
from espnet2.speechlm.models.multistream import MULTISTREAM_LMS, AbsMultiStreamLM
from espnet2.speechlm.models.text_init import init_text_rows

FORMAT = "espnet-speechlm-model/1"


def build_speechlm(arch: str, body: str, body_conf: dict, vocab_size: int, n_streams: int,
                   text_init: Optional[dict] = None, continuous: Optional[Dict[str, int]] = None,
                   continuous_ids: Optional[Dict[str, int]] = None, **arch_conf: Any) -> AbsMultiStreamLM:
    """e.g. build_speechlm("delay", "builtin", {"d_model": 256, "n_layer": 4, ...}, V, 8).

    text_init: {"offset", "n_tokens"} of the text range that takes the pretrained LLM's
    embedding and output rows (a body loaded from pretrained weights; see `text_init`).
    continuous / continuous_ids: feature size / placeholder id of each continuous item.
    """
    body_cls = BODIES.get(body)
    cfg = body_cls.config_class(**body_conf)
    model = MULTISTREAM_LMS.get(arch)(body_cls(cfg), vocab_size=vocab_size, n_streams=n_streams, **arch_conf)
    init_text_rows(model, text_init)
    model.build_config = dict(arch=arch, body=body, body_conf=asdict(cfg), vocab_size=vocab_size,
                              n_streams=n_streams, arch_conf=dict(arch_conf))
    if text_init is not None:
        model.build_config["text_init"] = dict(text_init)
    if continuous or continuous_ids:
        dims, ids = _continuous_items(continuous or {}, continuous_ids or {})
        model.add_continuous(dims, ids)
        model.build_config.update(continuous=dims, continuous_ids=ids)
    return model


def _continuous_items(dims: Dict[str, int], ids: Dict[str, int]) -> tuple[Dict[str, int], Dict[str, int]]:
    """Check that the config's feature sizes and the vocabulary's placeholders name the same items."""
    no_dim = sorted(set(ids) - set(dims))
    if no_dim:
        raise ValueError(
            f"the vocabulary has continuous item(s) {no_dim} (placeholder token + side features) but the model "
            f"config gives no feature size for them: set `continuous: {{{no_dim[0]}: EMBED_DIM}}` (training "
            f"config: model.arch_conf.continuous; EMBED_DIM is tokenizers.{no_dim[0]}.embed_dim in data.json)")
    no_id = sorted(set(dims) - set(ids))
    if no_id:
        raise ValueError(f"continuous: {no_id} are not continuous items of the vocabulary "
                         f"(it has {sorted(ids) or 'none'})")
    return {n: int(dims[n]) for n in sorted(dims)}, {n: int(ids[n]) for n in sorted(ids)}


def vocab_build_args(vocab, text_tokenizer: Optional[str] = None, restrict_heads: bool = True) -> dict:
    """Builder arguments that come from the joint vocabulary, for `build_speechlm(**...)`.

    restrict_heads: per-stream head ranges (see `models.heads`); text_tokenizer: the
    name of the single-stream range that holds the pretrained LLM's token ids.
    Continuous items of the vocabulary give `continuous_ids` (their placeholder ids).
    """
    from espnet2.speechlm.tokenizers.continuous import is_continuous

    out: dict = {}
    continuous_ids = {r.name: r.offset for r in vocab.ranges if is_continuous(r.type)}
    if continuous_ids:
        out["continuous_ids"] = continuous_ids
    if restrict_heads:
        out["head_ranges"] = vocab_head_ranges(vocab)
    if text_tokenizer:
        r = vocab.range(text_tokenizer)
        if r.n_streams != 1:
            raise ValueError(f"text_tokenizer {text_tokenizer!r} has {r.n_streams} streams; it must be a text range")
        out["text_init"] = {"offset": r.offset, "n_tokens": r.codebook_size}
    return out


def save_pretrained(model: AbsMultiStreamLM, out_dir, config_dict: Optional[dict] = None) -> Path:
    """Write model.safetensors + config.json ({"model": builder args, **config_dict})."""
    from safetensors.torch import save_model

    from espnet2.speechlm.file_modes import as_regular_file

    if not hasattr(model, "build_config"):
        raise ValueError("save_pretrained needs a model made by build_speechlm (no build_config)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_model(model, str(out / "model.safetensors"))
    as_regular_file(out / "model.safetensors")
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
    if b["body"] == "hf":  # weights (and, via hf_config, the architecture) come from our checkpoint
        b["body_conf"] = {**b["body_conf"], "from_pretrained": False}
    model = build_speechlm(b["arch"], b["body"], b["body_conf"], b["vocab_size"], b["n_streams"],
                           text_init=b.get("text_init"), continuous=b.get("continuous"),
                           continuous_ids=b.get("continuous_ids"), **b["arch_conf"])
    model.build_config = config["model"]
    load_model(model, str(Path(model_dir) / "model.safetensors"), device=str(device))
    model.extra_config = {k: v for k, v in config.items() if k not in ("format", "model")}
    return model.to(device)
