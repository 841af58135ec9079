"""Start N training processes on this machine with torchrun (CPU or GPU).

``speechlm_train.py --ngpu 0 --num_procs 2 ...`` (or ``--ngpu 4``) calls this itself when it
was not started by a launcher, so no wrapper script is needed for one machine. Multi-node
runs use ``torchrun``/``deepspeed`` directly; the training script joins whatever group the
launcher set up (RANK / WORLD_SIZE / MASTER_ADDR in the environment).
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import List, Optional


def torchrun_command(nproc: int, module: str, argv: List[str]) -> List[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            "-m", module, *argv]


def launch(nproc: int, module: str, argv: List[str], use_cuda: bool, threads: Optional[int] = None) -> int:
    """Run ``python -m module argv`` in ``nproc`` local processes; returns the exit status."""
    env = dict(os.environ)
    if not use_cuda:
        env.setdefault("DS_ACCELERATOR", "cpu")
        env.setdefault("OMP_NUM_THREADS", str(threads or max(1, (os.cpu_count() or 1) // nproc)))
    return subprocess.call(torchrun_command(nproc, module, argv), env=env)
