"""Crash-safe checkpoints: atomic directories, a verified `latest`, keep-last-N + best-k.

Layout under ``<output_dir>/checkpoints``::

    step_00001000/
        ds/                     DeepSpeed engine state (weights, ZeRO optimizer partitions, scheduler)
        model.safetensors       plain full model weights (fp32/bf16 as trained), no DeepSpeed needed
        trainer_state.rank<r>.pt  step, epoch, batches consumed, sampler and RNG states of rank r
        MANIFEST.json           written last: step, valid loss, world size, size + sha256 of every file
    latest                      text file naming the newest complete checkpoint
    .tmp.step_00001000/         a save in progress (ignored and removed on the next start)

A save writes everything into ``.tmp.step_N``, writes MANIFEST.json last, fsyncs and renames
the directory to ``step_N``, then replaces ``latest`` atomically. On resume the checkpoint
named by ``latest`` is verified against its manifest; a missing, truncated or corrupted one
is skipped with a warning and the newest older checkpoint that verifies is used instead;
when none verifies, CorruptCheckpoints names them all (the trainer then refuses to start).

Our own trainer state is loaded with ``torch.load(weights_only=True)``; it only holds
tensors, numbers, strings, tuples and dicts.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from espnet2.speechlm.file_modes import as_regular_file
from espnet2.speechlm.train import distributed as D

log = logging.getLogger(__name__)

MANIFEST = "MANIFEST.json"
MODEL_FILE = "model.safetensors"
DS_TAG = "ds"
_STEP_DIR = re.compile(r"^step_(\d+)$")


# --- RNG state (weights_only-loadable) ----------------------------------------------------


def rng_state() -> Dict[str, Any]:
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# --- files --------------------------------------------------------------------------------


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp.{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def save_safetensors(state: Dict[str, torch.Tensor], path: Path, metadata: Optional[Dict[str, str]] = None) -> None:
    """Save a state dict; shared (tied) tensors are written as separate copies."""
    plain = {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}
    save_file(plain, str(path), metadata=metadata)
    as_regular_file(path)


def write_manifest(ckpt_dir: Path, info: Dict[str, Any], checksums: bool) -> None:
    files = {}
    for p in sorted(ckpt_dir.rglob("*")):
        if p.is_file() and p.name != MANIFEST:
            rel = p.relative_to(ckpt_dir).as_posix()
            files[rel] = {"size": p.stat().st_size, "sha256": sha256_file(p) if checksums else None}
            with open(p, "rb") as f:
                os.fsync(f.fileno())
    write_text_atomic(ckpt_dir / MANIFEST, json.dumps({**info, "files": files}, indent=1))


def read_manifest(ckpt_dir: Path) -> Optional[Dict[str, Any]]:
    try:
        return json.loads((ckpt_dir / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def verify_checkpoint(ckpt_dir: Path, checksums: bool = True) -> Optional[str]:
    """None when ``ckpt_dir`` is complete and intact, else the reason it is not."""
    manifest = read_manifest(ckpt_dir)
    if manifest is None:
        return f"{ckpt_dir}: no readable {MANIFEST} (save did not finish)"
    for rel, meta in manifest["files"].items():
        p = ckpt_dir / rel
        if not p.is_file():
            return f"{ckpt_dir}: missing {rel}"
        if p.stat().st_size != meta["size"]:
            return f"{ckpt_dir}: {rel} has {p.stat().st_size} bytes, manifest says {meta['size']}"
        if checksums and meta.get("sha256") and sha256_file(p) != meta["sha256"]:
            return f"{ckpt_dir}: {rel} checksum mismatch"
    return None


# --- manager ------------------------------------------------------------------------------


class CorruptCheckpoints(RuntimeError):
    """Checkpoints exist but none can be resumed: the run must not silently start again."""

    def __init__(self, root: Path, problems: List[str]):
        self.root, self.problems = Path(root), list(problems)
        super().__init__(f"{root}: no checkpoint can be resumed, every one is damaged:\n  "
                         + "\n  ".join(self.problems))


@dataclass
class CheckpointInfo:
    path: Path
    step: int
    valid_loss: Optional[float]


class CheckpointManager:
    """Saves, finds, verifies, prunes and averages checkpoints of one run."""

    def __init__(self, root: str | Path, keep_last_n: int = 2, keep_best_k: int = 3, checksums: bool = True):
        self.root = Path(root)
        self.keep_last_n = keep_last_n
        self.keep_best_k = keep_best_k
        self.checksums = checksums

    # listing
    def complete(self) -> List[CheckpointInfo]:
        """Checkpoints with a manifest, oldest first (not verified)."""
        out = []
        if not self.root.is_dir():
            return out
        for p in self.root.iterdir():
            m = _STEP_DIR.match(p.name)
            manifest = read_manifest(p) if m and p.is_dir() else None
            if manifest is not None:
                out.append(CheckpointInfo(p, int(m.group(1)), manifest.get("valid_loss")))
        return sorted(out, key=lambda c: c.step)

    def best(self, k: int) -> List[CheckpointInfo]:
        scored = [c for c in self.complete() if c.valid_loss is not None]
        return sorted(scored, key=lambda c: (c.valid_loss, -c.step))[:k]

    def find_resumable(self) -> Optional[Path]:
        """The newest checkpoint that verifies, preferring the one `latest` names.

        None only when there is no checkpoint at all; when there are some but none verifies,
        CorruptCheckpoints (a fresh start would silently overwrite the run).
        """
        candidates = self.complete()[::-1]
        pointer = self.root / "latest"
        if pointer.is_file():
            named = self.root / pointer.read_text().strip()
            candidates.sort(key=lambda c: c.path != named)  # stable: named first, then newest
            if not named.is_dir() or read_manifest(named) is None:
                log.warning("checkpoint %s named by `latest` is incomplete; looking for an older one", named)
        problems = []
        for c in candidates:
            problem = verify_checkpoint(c.path, self.checksums)
            if problem is None:
                return c.path
            log.warning("skipping corrupted checkpoint: %s", problem)
            problems.append(problem)
        verified = {c.path for c in candidates}
        problems += [verify_checkpoint(p, self.checksums) for p in self._step_dirs() if p not in verified]
        if pointer.is_file() and not problems:
            problems.append(f"{pointer} names {pointer.read_text().strip()!r}, which does not exist")
        if problems:
            raise CorruptCheckpoints(self.root, problems)
        return None

    def _step_dirs(self) -> List[Path]:
        """Every step_N directory, with or without a manifest."""
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.iterdir() if _STEP_DIR.match(p.name) and p.is_dir())

    # saving
    def save(
        self,
        engine: Any,
        step: int,
        trainer_state: Dict[str, Any],
        model_state: Callable[[], Optional[Dict[str, torch.Tensor]]],
        valid_loss: Optional[float] = None,
    ) -> Path:
        """Collective: every rank calls it. Returns the final checkpoint directory."""
        name = f"step_{step:08d}"
        tmp, final = self.root / f".tmp.{name}", self.root / name
        if D.is_main():
            self.root.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
        D.barrier()
        engine.save_checkpoint(str(tmp), tag=DS_TAG, save_latest=False)
        state = model_state()  # collective under ZeRO-3; None on ranks other than 0
        torch.save(trainer_state, tmp / f"trainer_state.rank{D.rank()}.pt")
        if D.is_main():
            save_safetensors(state, tmp / MODEL_FILE, metadata={"step": str(step)})
        D.barrier()
        if D.is_main():
            info = {"step": step, "valid_loss": valid_loss, "world_size": D.world_size(), "time": time.time()}
            write_manifest(tmp, info, self.checksums)
            if final.exists():  # re-saving the same step (e.g. end of run right after a periodic save)
                shutil.rmtree(final)
            os.rename(tmp, final)
            _fsync_dir(self.root)
            write_text_atomic(self.root / "latest", name + "\n")
            self.prune()
        D.barrier()
        return final

    def set_valid_loss(self, ckpt_dir: Path, valid_loss: float) -> None:
        """Record a validation loss for an already saved checkpoint (rank 0)."""
        manifest = read_manifest(ckpt_dir)
        if manifest is not None:
            manifest["valid_loss"] = valid_loss
            write_text_atomic(ckpt_dir / MANIFEST, json.dumps(manifest, indent=1))

    def prune(self) -> None:
        """Keep the last N and the best k; drop everything else, including stale temp dirs."""
        ckpts = self.complete()
        keep = {c.path for c in ckpts[-self.keep_last_n:]} | {c.path for c in self.best(self.keep_best_k)}
        for c in ckpts:
            if c.path not in keep:
                shutil.rmtree(c.path, ignore_errors=True)
        for p in self.root.glob(".tmp.step_*"):
            shutil.rmtree(p, ignore_errors=True)

    # loading
    def load(self, engine: Any, ckpt_dir: Path) -> Dict[str, Any]:
        """Restore the engine and return this rank's trainer state (collective)."""
        manifest = read_manifest(ckpt_dir) or {}
        same_world = manifest.get("world_size") == D.world_size()
        if not same_world:
            log.warning(
                "checkpoint %s was saved with %s ranks, now %d: loading weights only (optimizer restarts)",
                ckpt_dir, manifest.get("world_size"), D.world_size(),
            )
        engine.load_checkpoint(
            str(ckpt_dir), tag=DS_TAG, load_optimizer_states=same_world,
            load_lr_scheduler_states=same_world, load_module_only=not same_world,
        )
        own = ckpt_dir / f"trainer_state.rank{D.rank()}.pt"
        path = own if (same_world and own.is_file()) else ckpt_dir / "trainer_state.rank0.pt"
        state = torch.load(path, map_location="cpu", weights_only=True)
        state["optimizer_restored"] = same_world
        if not same_world:
            log.warning("the data position inside the epoch is approximate after a world-size change")
        return state


def weights_file(path: str | Path) -> Path:
    """The model.safetensors of an exported model dir or a checkpoint dir, or a .safetensors file."""
    p = Path(path)
    if p.is_dir():
        p = p / MODEL_FILE
    if not p.is_file():
        raise FileNotFoundError(f"no model weights at {path} (expected an exported model dir, a checkpoint dir "
                                f"with {MODEL_FILE}, or a .safetensors file)")
    if p.suffix != ".safetensors":
        raise ValueError(f"{p}: only .safetensors weights are loaded (pickled files can run code)")
    return p


def load_weights(model: torch.nn.Module, path: str | Path) -> Path:
    """Load safetensors weights into ``model``; every key must match. Returns the file read."""
    from safetensors.torch import load_model

    f = weights_file(path)
    try:
        load_model(model, str(f), strict=True, device="cpu")
    except RuntimeError as e:  # names the missing / unexpected keys and shape mismatches
        raise ValueError(f"{f}: weights do not match the model ({e})") from e
    return f


def average_state_dicts(paths: List[Path]) -> Dict[str, torch.Tensor]:
    """Element-wise mean of model.safetensors files (floating tensors; others from the first)."""
    if not paths:
        raise ValueError("no checkpoints to average")
    avg: Dict[str, torch.Tensor] = {}
    for i, p in enumerate(paths):
        state = load_file(str(Path(p) / MODEL_FILE) if Path(p).is_dir() else str(p))
        for k, v in state.items():
            if i == 0:
                avg[k] = v.double() if v.is_floating_point() else v
            elif v.is_floating_point():
                avg[k] += v.double()
    first = load_file(str(Path(paths[0]) / MODEL_FILE) if Path(paths[0]).is_dir() else str(paths[0]))
    return {k: (v / len(paths)).to(first[k].dtype) if v.is_floating_point() else v for k, v in avg.items()}
