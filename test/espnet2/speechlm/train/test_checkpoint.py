"""Checkpoint directory logic, without DeepSpeed (a fake engine writes the engine files)."""

import logging
import random

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from espnet2.speechlm.train.checkpoint import (
    CheckpointManager, CorruptCheckpoints, average_state_dicts, rng_state, set_rng_state, verify_checkpoint,
)


class FakeEngine:
    def __init__(self):
        self.loaded = None

    def save_checkpoint(self, save_dir, tag, save_latest=True):
        d = torch.nn.Module()
        (__import__("pathlib").Path(save_dir) / tag).mkdir(parents=True)
        torch.save({"w": torch.arange(1000.0)}, f"{save_dir}/{tag}/engine.pt")

    def load_checkpoint(self, load_dir, tag, **kw):
        self.loaded = (load_dir, tag, kw)


def save(mgr, step, valid_loss=None, value=None):
    state = {"w": torch.full((4, 3), float(step if value is None else value)), "b": torch.arange(3)}
    return mgr.save(FakeEngine(), step, {"step": step, "rng": rng_state()}, lambda: state, valid_loss)


def test_save_layout_latest_and_load(tmp_path):
    mgr = CheckpointManager(tmp_path / "ckpt", keep_last_n=5, keep_best_k=0)
    p = save(mgr, 3)
    assert p.name == "step_00000003" and (tmp_path / "ckpt" / "latest").read_text().strip() == p.name
    assert {f.name for f in p.iterdir()} >= {"ds", "model.safetensors", "trainer_state.rank0.pt", "MANIFEST.json"}
    assert not list((tmp_path / "ckpt").glob(".tmp*"))
    assert verify_checkpoint(p) is None
    engine = FakeEngine()
    state = mgr.load(engine, p)  # loads with weights_only=True
    assert state["step"] == 3 and engine.loaded[1] == "ds" and engine.loaded[2]["load_optimizer_states"]
    assert torch.equal(load_file(str(p / "model.safetensors"))["w"], torch.full((4, 3), 3.0))


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete_manifest", "delete_file"])
def test_damaged_latest_falls_back_to_previous(tmp_path, caplog, damage):
    mgr = CheckpointManager(tmp_path / "ckpt", keep_last_n=5, keep_best_k=0)
    save(mgr, 2)
    latest = save(mgr, 4)
    target = latest / "model.safetensors"
    if damage == "flip":
        data = bytearray(target.read_bytes())
        data[len(data) // 2] ^= 0xFF
        target.write_bytes(bytes(data))
    elif damage == "truncate":
        target.write_bytes(target.read_bytes()[:-10])
    elif damage == "delete_manifest":
        (latest / "MANIFEST.json").unlink()
    else:
        (latest / "ds" / "engine.pt").unlink()
    with caplog.at_level(logging.WARNING):
        found = mgr.find_resumable()
    assert found.name == "step_00000002"
    assert "step_00000004" in caplog.text


def test_half_written_save_is_ignored(tmp_path):
    mgr = CheckpointManager(tmp_path / "ckpt", keep_last_n=5, keep_best_k=0)
    save(mgr, 2)
    (tmp_path / "ckpt" / ".tmp.step_00000004" / "ds").mkdir(parents=True)  # killed mid-save
    (tmp_path / "ckpt" / "step_00000006").mkdir()  # no manifest
    assert mgr.find_resumable().name == "step_00000002"
    save(mgr, 8)
    assert not (tmp_path / "ckpt" / ".tmp.step_00000004").exists()  # cleaned by the next save
    assert mgr.find_resumable().name == "step_00000008"


def flip_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["flip", "delete_manifest", "dangling_latest"])
def test_every_checkpoint_damaged_is_an_error_naming_them(tmp_path, damage):
    """No silent None (= start from step 0 over the old run) when checkpoints exist but none verifies."""
    mgr = CheckpointManager(tmp_path / "ckpt", keep_last_n=5, keep_best_k=0)
    ckpts = [save(mgr, 2), save(mgr, 4)]
    for c in ckpts:
        if damage == "flip":
            flip_byte(c / "model.safetensors")
        elif damage == "delete_manifest":
            (c / "MANIFEST.json").unlink()
        else:
            __import__("shutil").rmtree(c)
    with pytest.raises(CorruptCheckpoints) as err:
        mgr.find_resumable()
    msg = str(err.value)
    assert "no checkpoint can be resumed" in msg
    if damage == "dangling_latest":
        assert "names 'step_00000004', which does not exist" in msg
    else:
        assert all(str(c) in msg for c in ckpts)
        assert ("checksum mismatch" if damage == "flip" else "no readable MANIFEST.json") in msg


def test_no_checkpoint(tmp_path):
    assert CheckpointManager(tmp_path / "none").find_resumable() is None


def test_keep_last_n_and_best_k(tmp_path):
    mgr = CheckpointManager(tmp_path / "ckpt", keep_last_n=2, keep_best_k=2)
    losses = {1: 5.0, 2: 1.0, 3: 3.0, 4: 2.0, 5: 4.0, 6: 6.0}
    for step, loss in losses.items():
        save(mgr, step, valid_loss=loss)
    kept = sorted(c.step for c in mgr.complete())
    assert kept == [2, 4, 5, 6]  # best two (2, 4) + last two (5, 6)
    assert [c.step for c in mgr.best(2)] == [2, 4]


def test_average_of_best(tmp_path):
    mgr = CheckpointManager(tmp_path / "ckpt", keep_last_n=1, keep_best_k=2)
    save(mgr, 1, valid_loss=1.0, value=2.0)
    save(mgr, 2, valid_loss=0.5, value=4.0)
    save(mgr, 3, valid_loss=9.0, value=100.0)
    avg = average_state_dicts([c.path for c in mgr.best(2)])
    assert torch.allclose(avg["w"], torch.full((4, 3), 3.0)) and avg["w"].dtype == torch.float32
    assert torch.equal(avg["b"], torch.arange(3))  # integer tensors are not averaged


def test_rng_state_roundtrip_weights_only(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    torch.save(rng_state(), tmp_path / "rng.pt")
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
