"""Trainer resume when every checkpoint is damaged: stop with a clear message, overwrite nothing.

The trainer is made without __init__ (no DeepSpeed engine): refusing happens before any
engine, reporter or config file is touched.
"""

from pathlib import Path

import pytest
import torch

from espnet2.speechlm.train.checkpoint import CheckpointManager, rng_state
from espnet2.speechlm.train.config import ConfigError, load_config
from espnet2.speechlm.train.trainer import Trainer


class FakeEngine:
    def save_checkpoint(self, save_dir, tag, save_latest=True):
        (Path(save_dir) / tag).mkdir(parents=True)
        torch.save({"w": torch.arange(10.0)}, f"{save_dir}/{tag}/engine.pt")


def damaged_run(out: Path) -> Trainer:
    """An output dir from an earlier run whose two checkpoints are both corrupted."""
    mgr = CheckpointManager(out / "checkpoints", keep_last_n=5, keep_best_k=0)
    for step in (2, 4):
        p = mgr.save(FakeEngine(), step, {"step": step, "rng": rng_state()}, lambda: {"w": torch.ones(3)})
        data = bytearray((p / "model.safetensors").read_bytes())
        data[len(data) // 2] ^= 0xFF
        (p / "model.safetensors").write_bytes(bytes(data))
    (out / "log").mkdir()
    (out / "log" / "train.jsonl").write_text('{"step": 4}\n')
    (out / "config.yaml").write_text("# the earlier run's config\n")
    trainer = Trainer.__new__(Trainer)
    trainer.cfg, trainer.output_dir, trainer.ckpt = load_config(None), out, mgr
    return trainer


@pytest.mark.parametrize("resume", [True, False])
def test_all_checkpoints_corrupt_stops_without_overwriting(tmp_path, resume):
    out = tmp_path / "exp"
    trainer = damaged_run(out)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(ConfigError) as err:
        trainer.fit(resume=resume)
    msg = str(err.value)
    assert "step_00000002" in msg and "step_00000004" in msg and "checksum mismatch" in msg
    assert f"move {out} away" in msg and "Refusing to start again from step 0" in msg
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
