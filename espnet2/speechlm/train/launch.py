"""Start the training processes: N on this machine (torchrun), or several machines (hostfile).

``speechlm_train.py --ngpu 0 --num_procs 2 ...`` (or ``--ngpu 4``) calls ``launch`` itself when
it was not started by a launcher, so no wrapper script is needed for one machine.

Several machines take a DeepSpeed hostfile, one line per machine (``#`` starts a comment)::

    node1 slots=8
    node2 slots=8

- ``--launcher deepspeed`` (default): run once, on the first machine; the ``deepspeed``
  launcher reaches every host over passwordless ssh (pdsh) and starts ``slots`` processes on
  each. ``--master_addr`` defaults to the first host.
- ``--launcher torchrun``: run the same command on every machine (e.g. from a Slurm job step)
  with ``--node_rank`` (or ``$SLURM_NODEID`` / ``$NODE_RANK``); each starts its own processes
  with ``torchrun --nnodes N --node_rank R --master_addr ...``. Every host needs the same
  number of slots.

The started processes see RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR in their
environment, join that group, and do not launch again.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path
from typing import Dict, List, Optional

LAUNCHERS = ("deepspeed", "torchrun")
DEFAULT_MASTER_PORT = 29500
_HOST_LINE = re.compile(r"^(\S+)\s+slots=(\d+)\s*$")


class HostfileError(ValueError):
    """A hostfile that cannot be used as written."""


def parse_hostfile(path: str | Path) -> "OrderedDict[str, int]":
    """host -> slots, in file order."""
    path = Path(path)
    if not path.is_file():
        raise HostfileError(f"hostfile {path} does not exist")
    hosts: "OrderedDict[str, int]" = OrderedDict()
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        m = _HOST_LINE.match(line)
        if not m:
            raise HostfileError(f"{path}:{n}: expected 'HOST slots=N', got {raw.strip()!r}")
        host, slots = m.group(1), int(m.group(2))
        if host in hosts:
            raise HostfileError(f"{path}:{n}: host {host} is listed twice")
        if slots < 1:
            raise HostfileError(f"{path}:{n}: host {host} needs slots >= 1")
        hosts[host] = slots
    if not hosts:
        raise HostfileError(f"hostfile {path} lists no host")
    return hosts


def torchrun_command(nproc: int, module: str, argv: List[str]) -> List[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            "-m", module, *argv]


def deepspeed_command(hostfile: str | Path, module: str, argv: List[str], master_addr: Optional[str] = None,
                      master_port: int = DEFAULT_MASTER_PORT) -> List[str]:
    """The ``deepspeed`` launcher over every host of the hostfile (run it on the first host)."""
    hosts = parse_hostfile(hostfile)
    cmd = [sys.executable, "-m", "deepspeed.launcher.runner", "--hostfile", str(hostfile),
           "--master_addr", master_addr or next(iter(hosts)), "--master_port", str(master_port)]
    # --no_local_rank: the script reads LOCAL_RANK from the environment, it takes no --local_rank
    return cmd + ["--no_local_rank", "--module", module, *argv]


def torchrun_node_command(hostfile: str | Path, node_rank: int, module: str, argv: List[str],
                          master_addr: Optional[str] = None, master_port: int = DEFAULT_MASTER_PORT) -> List[str]:
    """This machine's share of a multi-node run: torchrun with a static rendezvous at the master."""
    hosts = parse_hostfile(hostfile)
    slots = set(hosts.values())
    if len(slots) != 1:
        raise HostfileError(f"--launcher torchrun needs the same slots on every host, got {dict(hosts)}")
    if not 0 <= node_rank < len(hosts):
        raise HostfileError(f"--node_rank {node_rank} is outside the hostfile's {len(hosts)} hosts")
    return [sys.executable, "-m", "torch.distributed.run", f"--nnodes={len(hosts)}", f"--node_rank={node_rank}",
            f"--nproc_per_node={slots.pop()}", f"--master_addr={master_addr or next(iter(hosts))}",
            f"--master_port={master_port}", "-m", module, *argv]


def node_rank_from_env(env: Optional[Dict[str, str]] = None) -> Optional[int]:
    env = os.environ if env is None else env
    for key in ("NODE_RANK", "SLURM_NODEID", "OMPI_COMM_WORLD_NODE_RANK"):
        if env.get(key, "").isdigit():
            return int(env[key])
    return None


def multi_node_command(launcher: str, hostfile: str | Path, module: str, argv: List[str],
                       master_addr: Optional[str] = None, master_port: int = DEFAULT_MASTER_PORT,
                       node_rank: Optional[int] = None) -> List[str]:
    if launcher == "deepspeed":
        return deepspeed_command(hostfile, module, argv, master_addr, master_port)
    if launcher == "torchrun":
        rank = node_rank if node_rank is not None else node_rank_from_env()
        if rank is None:
            raise HostfileError("--launcher torchrun runs on every host: give --node_rank (or set NODE_RANK / "
                                "SLURM_NODEID)")
        return torchrun_node_command(hostfile, rank, module, argv, master_addr, master_port)
    raise HostfileError(f"--launcher must be one of {LAUNCHERS}, got {launcher!r}")


def _env(use_cuda: bool, nproc: int, threads: Optional[int]) -> Dict[str, str]:
    env = dict(os.environ)
    if not use_cuda:
        env.setdefault("DS_ACCELERATOR", "cpu")
        env.setdefault("OMP_NUM_THREADS", str(threads or max(1, (os.cpu_count() or 1) // nproc)))
    return env


def launch(nproc: int, module: str, argv: List[str], use_cuda: bool, threads: Optional[int] = None) -> int:
    """Run ``python -m module argv`` in ``nproc`` local processes; returns the exit status."""
    return subprocess.call(torchrun_command(nproc, module, argv), env=_env(use_cuda, nproc, threads))


def launch_multi_node(cmd: List[str], use_cuda: bool, slots: int) -> int:
    """Run a command from ``multi_node_command``; returns the exit status."""
    return subprocess.call(cmd, env=_env(use_cuda, slots, None))
