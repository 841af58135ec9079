"""Exported, checkpointed and packed weights are readable like every other output (not 0600)."""

import os
import stat

import torch

from espnet2.speechlm.hub.pack import _write_weights
from espnet2.speechlm.models import build_speechlm, save_pretrained
from espnet2.speechlm.train.checkpoint import save_safetensors


def _mode(p):
    return stat.S_IMODE(os.stat(p).st_mode)


def test_weights_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        model = build_speechlm("delay", "builtin", dict(d_model=16, n_layer=1, n_head=2, n_kv_head=2, d_ff=32,
                                                        max_len=32), 40, 2)
        exported = save_pretrained(model, tmp_path / "model") / "model.safetensors"
        ckpt = tmp_path / "ckpt.safetensors"
        save_safetensors(model.state_dict(), ckpt)
        torch.save(model.state_dict(), tmp_path / "w.pt")
        packed = tmp_path / "packed.safetensors"
        _write_weights(tmp_path / "w.pt", packed)
        assert [_mode(p) for p in (exported, ckpt, packed)] == [0o644] * 3
    finally:
        os.umask(old)
