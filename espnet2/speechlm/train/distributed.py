"""Process-group setup and small collective helpers (CPU/gloo and CUDA/nccl alike).

Every run, even a single CPU process, goes through a real process group so the same
DeepSpeed code path is exercised everywhere. A process not started by a launcher
(torchrun / deepspeed) becomes rank 0 of a 1-process gloo group on a free local port.
"""

from __future__ import annotations

import os
import random
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any, List

import numpy as np
import torch
import torch.distributed as dist

REPO_ROOT = Path(__file__).resolve().parents[3]


def default_extensions_dir() -> Path:
    """Where DeepSpeed JIT-built ops are cached between runs (none is needed on CPU today)."""
    return REPO_ROOT / "tools" / ".cache" / "torch_extensions"


def prepare_environment(use_cuda: bool) -> None:
    """Must run before ``import deepspeed``: pick the accelerator and the op cache."""
    if not use_cuda:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(default_extensions_dir()))


_STORE_FILES: List[str] = []  # rendezvous files of lone processes, removed by clean_exit


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launched_by_launcher() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def init_distributed(use_cuda: bool) -> None:
    """Join (or create, for a lone process) the default process group."""
    if dist.is_initialized():
        return
    kwargs = {}
    if not launched_by_launcher():
        # A lone process rendezvouses through a file, not a TCP port: two runs started at the
        # same moment cannot race for the same "free" port.
        os.environ.update(
            MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), RANK="0", WORLD_SIZE="1", LOCAL_RANK="0"
        )
        fd, store = tempfile.mkstemp(prefix="speechlm_pg_")
        os.close(fd)
        os.unlink(store)
        kwargs = dict(init_method=f"file://{store}", rank=0, world_size=1)
        _STORE_FILES.append(store)
    prepare_environment(use_cuda)
    import deepspeed  # noqa: E402  (after the environment is prepared)

    if use_cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    else:
        skip_shm_comm_op()
    deepspeed.init_distributed(dist_backend="nccl" if use_cuda else "gloo", verbose=False, **kwargs)


def skip_shm_comm_op() -> None:
    """Do not JIT-load DeepSpeed's CPU shared-memory all-reduce op.

    Only tensor-parallel inference uses it; training all-reduces through torch.distributed.
    Loading it on every start takes a file lock in TORCH_EXTENSIONS_DIR: under load, starts
    queue behind each other for minutes, and a process killed while holding the lock hangs
    every later start. Skipping it also saves the ~30 s first build.
    """
    import deepspeed.ops
    from deepspeed.accelerator import get_accelerator

    builder = get_accelerator().create_op_builder("ShareMemCommBuilder")
    if builder is not None:
        deepspeed.ops.__compatible_ops__[builder.NAME] = False


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def _device() -> torch.device:
    if dist.is_initialized() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce(values: List[float], op: str = "sum") -> List[float]:
    """All-reduce a short list of floats (float64) across ranks."""
    if not dist.is_initialized() or world_size() == 1:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=_device())
    dist.all_reduce(t, op={"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX}[op])
    return t.cpu().tolist()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    if not dist.is_initialized() or world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch explicitly; nothing depends on PYTHONHASHSEED."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def clean_exit(code: int = 0) -> None:
    """Leave without running C++ static destructors.

    With torch 2.13 + gloo about one CPU run in five aborts at interpreter exit
    (SIGABRT, "terminate called without an active exception") after finishing
    correctly; destroying the group and calling os._exit avoids it.
    """
    try:
        if dist.is_initialized():
            dist.destroy_process_group()
    finally:
        for path in _STORE_FILES:
            try:
                os.unlink(path)
            except OSError:
                pass
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
