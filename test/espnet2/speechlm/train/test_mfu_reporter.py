import json

import torch
from torch import nn

from espnet2.speechlm.train import mfu
from espnet2.speechlm.train.reporter import Reporter, read_history


class Tiny(nn.Module):
    def __init__(self, tie: bool):
        super().__init__()
        self.config = {"num_hidden_layers": 3, "hidden_size": 8}
        self.emb = nn.Embedding(10, 8)
        self.proj = nn.Linear(8, 8)
        self.head = nn.Linear(8, 10, bias=False)
        if tie:
            self.head.weight = self.emb.weight


def test_matmul_params_exclude_untied_embeddings():
    assert mfu.count_matmul_params(Tiny(tie=False)) == 8 * 8 + 8 + 10 * 8
    assert mfu.count_matmul_params(Tiny(tie=True)) == 8 * 8 + 8 + 10 * 8  # counted once, via the head
    assert mfu.infer_layers_and_width(Tiny(False)) == (3, 8)
    assert mfu.infer_layers_and_width(nn.Linear(2, 2)) == (0, 0)


def test_flops_formula_and_meter():
    assert mfu.flops_per_token(1000, 2, 16, 32) == 6 * 1000 + 12 * 2 * 16 * 32
    meter = mfu.MFUMeter(Tiny(False), peak=1e9, world_size=2)
    flops = meter.batch_flops(n_positions=100, padded_len=20)
    assert flops == 100 * mfu.flops_per_token(meter.n_params, 3, 8, 20)
    rep = meter.report(tokens=100, model_flops=flops, seconds=0.5)
    assert rep["tokens_per_s"] == 200 and abs(rep["mfu"] - flops / 0.5 / 2e9) < 1e-12
    assert "mfu" not in mfu.MFUMeter(Tiny(False), peak=None).report(1, 1, 1)


def test_peak_table_and_cached_cpu_measurement(tmp_path, monkeypatch):
    assert mfu.cuda_peak_flops(torch.bfloat16, "NVIDIA H100 80GB HBM3") == 989e12
    assert mfu.cuda_peak_flops(torch.bfloat16, "NVIDIA H200") == 989e12
    assert mfu.cuda_peak_flops(torch.bfloat16, "Some Unknown GPU") is None
    assert mfu.peak_flops(torch.float32, use_cuda=False, override=5e9) == 5e9
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    measured = iter([1.5e11, 0.5e11])
    monkeypatch.setattr(mfu, "measure_cpu_peak", lambda dtype: next(measured))
    assert mfu.cpu_peak_flops(torch.float32) == 1.5e11
    assert mfu.cpu_peak_flops(torch.float32) == 1.5e11  # a slower (busy machine) measurement does not lower it
    assert mfu.cpu_peak_flops(torch.float32, refresh=False) == 1.5e11  # served from the cache file
    assert json.loads((tmp_path / "espnet_speechlm" / "peak_flops.json").read_text())


def test_measure_cpu_peak_is_positive():
    assert mfu.measure_cpu_peak(torch.float32, n=128, seconds=0.05) > 0


def test_reporter_history_resume_and_plot(tmp_path):
    rep = Reporter(tmp_path, tensorboard=True)
    for step in range(1, 6):
        rep.record("train", step, {"loss": 1.0 / step, "lr": 1e-3, "tokens_per_s": 100.0, "mfu": 0.1})
    rep.record("valid", 4, {"asr/loss": 0.5, "asr/acc": 0.9, "loss": 0.5, "acc": 0.9})
    rep.plot()
    rep.close()
    assert (tmp_path / "images" / "curves.png").stat().st_size > 1000
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    with open(tmp_path / "log" / "train.jsonl", "a") as f:
        f.write('{"step": 6, "lo')  # torn line of a killed run
    rep = Reporter(tmp_path, resume_step=3, tensorboard=False)  # resumed from step 3
    assert [r["step"] for r in rep.history["train"]] == [1, 2, 3] and rep.history["valid"] == []
    assert [r["step"] for r in read_history(tmp_path / "log" / "train.jsonl")] == [1, 2, 3]
