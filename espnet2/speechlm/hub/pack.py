"""Pack a trained experiment into a self-describing model folder.

Layout (all paths relative, recorded in ``meta.json``)::

    config.json|config.yaml  model.safetensors  vocab.json (vocab files at top level,
    where ``speechlm_inference --model_dir`` looks)  tokenizers/<name>/  templates/
    RESULTS.md   meta.json   README.md (model card)

``pack_model_dir`` instead takes an exported model dir (config.json,
model.safetensors, vocab.json, ...) and keeps its layout untouched.

Weights are always stored as safetensors (a ``.pth`` state dict is converted) so
loading a downloaded model never unpickles untrusted data. Paths inside
config.yaml that point at packed files are rewritten to their packed location.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence

import numpy as np
import yaml

from espnet2.speechlm.file_modes import as_regular_file
from espnet2.speechlm.hub.card import render_model_card

FORMAT_VERSION = 1
META_FILE = "meta.json"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _write_weights(src: Path, dst: Path) -> int:
    """Copy/convert weights to safetensors; returns the parameter count."""
    if src.suffix == ".safetensors":
        shutil.copyfile(src, dst)
    else:
        import torch
        from safetensors.torch import save_file

        state = torch.load(src, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
            state = state["model"]  # full training checkpoint
        tensors = {k: v.detach().clone().contiguous() for k, v in state.items() if hasattr(v, "detach")}
        save_file(tensors, str(dst), metadata={"format": "pt"})
    as_regular_file(dst)
    return _count_params(dst)


def _copy_into(srcs: Iterable[Path], dst_dir: Path, folder: Path) -> List[str]:
    copied = []
    for src in srcs:
        src = Path(src)
        target = dst_dir / src.name
        if target.exists():
            raise FileExistsError(f"two packed files would both be named {target.relative_to(folder)}")
        if src.is_dir():
            shutil.copytree(src, target)
        elif src.is_file():
            dst_dir.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, target)
        else:
            raise FileNotFoundError(f"cannot pack {src}: not found")
        copied.append(str(target.relative_to(folder)))
    return copied


def _rewrite_paths(obj: Any, mapping: Dict[str, str]) -> Any:
    if isinstance(obj, dict):
        return {k: _rewrite_paths(v, mapping) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_rewrite_paths(v, mapping) for v in obj]
    if isinstance(obj, str):
        key = str(Path(obj).resolve()) if obj else obj
        return mapping.get(key, obj)
    return obj


def pack_model(
    out_dir: Path,
    config: Path,
    model_file: Path,
    vocab_files: Sequence[Path] = (),
    tokenizer_dirs: Sequence[Path] = (),
    task_templates: Sequence[Path] = (),
    results_md: Optional[Path] = None,
    extra_files: Sequence[Path] = (),
    name: Optional[str] = None,
    tasks: Sequence[str] = (),
    datasets: Sequence[str] = (),
    license: Optional[str] = None,
    description: Optional[str] = None,
    repo_id: Optional[str] = None,
    overwrite: bool = False,
) -> Path:
    """Create ``out_dir`` with the model files, ``meta.json`` and a README model card."""
    folder = Path(out_dir)
    if folder.exists() and any(folder.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{folder} exists and is not empty (pass overwrite=True / --overwrite)")
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)

    files: Dict[str, Any] = {}
    n_params = _write_weights(Path(model_file), folder / "model.safetensors")
    files["weights"] = "model.safetensors"
    files["vocab"] = _copy_into(vocab_files, folder, folder)
    files["tokenizers"] = _copy_into(tokenizer_dirs, folder / "tokenizers", folder)
    files["templates"] = _copy_into(task_templates, folder / "templates", folder)
    files["extra"] = _copy_into(extra_files, folder / "extra", folder)

    mapping = {}
    for role, srcs in (("vocab", vocab_files), ("tokenizers", tokenizer_dirs), ("templates", task_templates), ("extra", extra_files)):
        for src, dst in zip(srcs, files[role]):
            mapping[str(Path(src).resolve())] = dst
    config = Path(config)
    is_json = config.suffix == ".json"
    conf = _load_config(config)
    with open(folder / ("config.json" if is_json else "config.yaml"), "w", encoding="utf-8") as f:
        conf = _rewrite_paths(conf, mapping)
        if is_json:
            json.dump(conf, f, indent=2)
        else:
            yaml.safe_dump(conf, f, sort_keys=False, allow_unicode=True)
    files["config"] = "config.json" if is_json else "config.yaml"
    return _finish(folder, files, conf, n_params, results_md, name, tasks, datasets, license, description, repo_id)


def _load_config(path: Path) -> Dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        conf = json.load(f) if path.suffix == ".json" else yaml.safe_load(f)
    return conf or {}


def _count_params(weights: Path) -> int:
    from safetensors import safe_open

    total = 0
    with safe_open(str(weights), framework="numpy") as f:
        for key in f.keys():
            total += int(np.prod(f.get_slice(key).get_shape()))
    return total


def pack_model_dir(
    model_dir: Path,
    out_dir: Path,
    results_md: Optional[Path] = None,
    name: Optional[str] = None,
    tasks: Sequence[str] = (),
    datasets: Sequence[str] = (),
    license: Optional[str] = None,
    description: Optional[str] = None,
    repo_id: Optional[str] = None,
    overwrite: bool = False,
) -> Path:
    """Copy an exported model dir as is (its loader expects that layout) and add meta + card."""
    src = Path(model_dir)
    weights = src / "model.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(f"{src} has no model.safetensors; is it an exported model dir?")
    config = next((src / c for c in ("config.json", "config.yaml") if (src / c).is_file()), None)
    if config is None:
        raise FileNotFoundError(f"{src} has no config.json / config.yaml")
    folder = Path(out_dir)
    if folder.exists() and any(folder.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{folder} exists and is not empty (pass overwrite=True / --overwrite)")
        shutil.rmtree(folder)
    shutil.copytree(src, folder, dirs_exist_ok=True, ignore=shutil.ignore_patterns("README.md", META_FILE))
    top = sorted(p.name for p in folder.iterdir())
    files: Dict[str, Any] = {
        "weights": "model.safetensors",
        "config": config.name,
        "vocab": [n for n in top if n.startswith("vocab")],
        "tokenizers": [n for n in top if (folder / n).is_dir()],
        "templates": [],
        "extra": [n for n in top if n not in ("model.safetensors", config.name, "RESULTS.md") and not n.startswith("vocab") and (folder / n).is_file()],
    }
    if results_md is None and (src / "RESULTS.md").is_file():
        results_md = src / "RESULTS.md"
    return _finish(folder, files, _load_config(config), _count_params(weights), results_md, name, tasks, datasets, license, description, repo_id)


def _finish(folder, files, conf, n_params, results_md, name, tasks, datasets, license, description, repo_id) -> Path:
    """Copy RESULTS.md, write meta.json and the README model card."""
    if not tasks and isinstance(conf, dict):
        tasks = list(conf.get("tasks", []) or [])
    files["results"] = None
    if results_md is not None and Path(results_md).is_file():
        if Path(results_md).resolve() != (folder / "RESULTS.md").resolve():
            shutil.copyfile(results_md, folder / "RESULTS.md")
        files["results"] = "RESULTS.md"

    meta = {
        "format": "espnet-speechlm-model",
        "format_version": FORMAT_VERSION,
        "name": name or folder.name,
        "tasks": list(tasks),
        "datasets": list(datasets),
        "license": license,
        "description": description,
        "repo_id": repo_id,
        "n_parameters": n_params,
        "files": files,
        "sha256": {"model.safetensors": _sha256(folder / "model.safetensors")},
    }
    (folder / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    (folder / "README.md").write_text(render_model_card(folder, meta), encoding="utf-8")
    return folder


def read_meta(folder: Path) -> Dict[str, Any]:
    """Load and sanity-check ``meta.json`` of a packed model folder."""
    path = Path(folder) / META_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{folder} is not a packed speechlm model (no {META_FILE})")
    meta = json.loads(path.read_text(encoding="utf-8"))
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(f"{folder}: format_version {meta['format_version']} is newer than this code supports")
    for role, rel in meta.get("files", {}).items():
        for p in ([rel] if isinstance(rel, str) else rel or []):
            if not (Path(folder) / p).exists():
                raise FileNotFoundError(f"{folder}: {role} file {p} listed in {META_FILE} is missing")
    return meta
