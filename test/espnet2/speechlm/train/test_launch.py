"""Launcher commands for one and several machines (built and checked; nothing is started, no ssh)."""

import sys

import pytest

from espnet2.speechlm.train import launch as L

MODULE = "espnet2.bin.speechlm_train"


def hostfile(tmp_path, text):
    p = tmp_path / "hostfile"
    p.write_text(text)
    return p


def test_parse_hostfile_and_errors(tmp_path):
    hosts = L.parse_hostfile(hostfile(tmp_path, "# cluster\nnode1 slots=8\n\nnode2  slots=4  # small one\n"))
    assert list(hosts.items()) == [("node1", 8), ("node2", 4)]
    for text, message in [("node1\n", r"hostfile:1: expected 'HOST slots=N'"),
                          ("node1 slots=8\nnode1 slots=8\n", "host node1 is listed twice"),
                          ("node1 slots=0\n", "needs slots >= 1"),
                          ("# nothing\n", "lists no host"),
                          ("node1 gpus=8\n", "expected 'HOST slots=N'")]:
        with pytest.raises(L.HostfileError, match=message):
            L.parse_hostfile(hostfile(tmp_path, text))
    with pytest.raises(L.HostfileError, match="does not exist"):
        L.parse_hostfile(tmp_path / "missing")


def test_deepspeed_command(tmp_path):
    hf = hostfile(tmp_path, "node1 slots=8\nnode2 slots=8\n")
    cmd = L.deepspeed_command(hf, MODULE, ["--ngpu", "8", "--output_dir", "exp"], master_port=29600)
    assert cmd[:3] == [sys.executable, "-m", "deepspeed.launcher.runner"]
    assert cmd[3:] == ["--hostfile", str(hf), "--master_addr", "node1", "--master_port", "29600", "--no_local_rank",
                       "--module", MODULE, "--ngpu", "8", "--output_dir", "exp"]
    assert L.deepspeed_command(hf, MODULE, [], master_addr="10.0.0.1")[6] == "10.0.0.1"
    from deepspeed.launcher.runner import parse_args  # the real launcher accepts what we build

    ds = parse_args(cmd[3:])
    assert (ds.hostfile, ds.master_addr, ds.master_port, ds.module, ds.no_local_rank) == (str(hf), "node1", 29600,
                                                                                          True, True)
    assert ds.user_script == MODULE and ds.user_args == ["--ngpu", "8", "--output_dir", "exp"]


def test_torchrun_per_node_command(tmp_path, monkeypatch):
    hf = hostfile(tmp_path, "a slots=4\nb slots=4\nc slots=4\n")
    cmd = L.multi_node_command("torchrun", hf, MODULE, ["--x"], master_port=1234, node_rank=2)
    assert cmd == [sys.executable, "-m", "torch.distributed.run", "--nnodes=3", "--node_rank=2",
                   "--nproc_per_node=4", "--master_addr=a", "--master_port=1234", "-m", MODULE, "--x"]
    monkeypatch.setenv("SLURM_NODEID", "1")
    monkeypatch.delenv("NODE_RANK", raising=False)
    assert "--node_rank=1" in L.multi_node_command("torchrun", hf, MODULE, [])
    monkeypatch.delenv("SLURM_NODEID")
    monkeypatch.delenv("OMPI_COMM_WORLD_NODE_RANK", raising=False)
    with pytest.raises(L.HostfileError, match="give --node_rank"):
        L.multi_node_command("torchrun", hf, MODULE, [])
    with pytest.raises(L.HostfileError, match="outside the hostfile's 3 hosts"):
        L.multi_node_command("torchrun", hf, MODULE, [], node_rank=3)
    with pytest.raises(L.HostfileError, match="same slots on every host"):
        L.multi_node_command("torchrun", hostfile(tmp_path, "a slots=4\nb slots=2\n"), MODULE, [], node_rank=0)
    with pytest.raises(L.HostfileError, match="--launcher must be one of"):
        L.multi_node_command("mpirun", hf, MODULE, [])


def test_cli_hostfile_launches_the_built_command(tmp_path, monkeypatch):
    from espnet2.bin import speechlm_train

    hf = hostfile(tmp_path, "node1 slots=2\nnode2 slots=2\n")
    calls = []
    monkeypatch.setattr(L.subprocess, "call", lambda cmd, env: calls.append((cmd, env)) or 0)
    for key in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(key, raising=False)
    argv = ["--ngpu", "2", "--hostfile", str(hf), "--master_port", "29700", "--train_data_json", "x.json",
            "--vocab", "v", "--output_dir", str(tmp_path / "exp")]
    assert speechlm_train.main(argv) == 0
    (cmd, env), = calls
    assert cmd[cmd.index("--master_addr") + 1] == "node1" and cmd[cmd.index("--master_port") + 1] == "29700"
    assert cmd[cmd.index("--module") + 1:] == [MODULE, *argv]  # workers get the same arguments
    calls.clear()
    assert speechlm_train.main(argv + ["--launcher", "torchrun", "--node_rank", "1"]) == 0
    assert "--node_rank=1" in calls[0][0] and "--nnodes=2" in calls[0][0]
    bad = hostfile(tmp_path, "node1\n")
    with pytest.raises(L.HostfileError, match="expected 'HOST slots=N'"):
        speechlm_train.main(["--hostfile", str(bad), "--train_data_json", "x.json", "--vocab", "v",
                             "--output_dir", str(tmp_path / "exp"), "--verbose"])
