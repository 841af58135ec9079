"""Model FLOPs utilisation (MFU): achieved model FLOP/s divided by the hardware peak.

Model FLOPs per trained position (forward + backward, PaLM appendix B convention)::

    flops_per_token = 6 * N  +  12 * n_layer * d_model * T

- ``N``: parameters that take part in matrix products: every parameter except input
  embedding tables (a lookup costs no FLOPs); an embedding tied to an output projection
  is counted once, through the projection. Biases and norms are counted too (negligible).
- ``6 N``: 2 FLOPs per multiply-add forward, twice that backward (activations + weights).
- ``12 L d T``: attention scores QK^T and the weighted sum AV, 2 * 2 * T * d per layer
  forward, times 3 for forward + backward; ``T`` is the (padded) sequence length of the
  batch. The causal mask is not discounted (same convention as PaLM / nanoGPT).
- A "token" is one time position of the ``[B, T, nq]`` input; the streams of a position are
  processed together by the body, and the per-stream heads are part of ``N``.
- Recomputation (activation checkpointing) is not counted: this is MFU, not HFU.

Peak FLOP/s: ``run.peak_flops`` when set; on CUDA a table of dense bf16 / fp32 peaks by
device name; on CPU a short matmul benchmark in the training dtype; the best value ever measured per
(CPU model, threads, dtype) is kept in ``$XDG_CACHE_HOME/espnet_speechlm/peak_flops.json``
(a run on a busy machine would otherwise lower the peak and overstate MFU).
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Optional, Tuple

import torch
from torch import nn

# Dense (no sparsity) peak per device, FLOP/s.
CUDA_PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "A6000": 155e12, "L40S": 362e12,
                  "A10": 125e12, "L4": 121e12, "V100": 125e12, "RTX 4090": 165e12, "RTX 3090": 71e12}
CUDA_PEAK_FP32 = {"H200": 67e12, "H100": 67e12, "A100": 19.5e12, "A6000": 38.7e12, "L40S": 91.6e12,
                  "A10": 31.2e12, "L4": 30.3e12, "V100": 15.7e12, "RTX 4090": 82.6e12, "RTX 3090": 35.6e12}


def count_matmul_params(model: nn.Module) -> int:
    """Parameters used in matrix products: all but (untied) input embedding tables."""
    linear_ids = {id(m.weight) for m in model.modules() if isinstance(m, nn.Linear)}
    embedding_ids = {
        id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding) and id(m.weight) not in linear_ids
    }
    seen, total = set(), 0
    for p in model.parameters():  # parameters() already yields a tied tensor once
        if id(p) in seen or id(p) in embedding_ids:
            continue
        seen.add(id(p))
        total += p.numel()
    return total


_LAYER_KEYS = ("num_hidden_layers", "n_layer", "n_layers", "num_layers")
_WIDTH_KEYS = ("hidden_size", "n_embd", "d_model", "dim", "attention_dim")


def infer_layers_and_width(model: nn.Module) -> Tuple[int, int]:
    """Find (n_layer, d_model) from a config-like attribute anywhere in the module tree.

    Returns (0, 0) when nothing is found; the attention term is then left out.
    """
    for module in model.modules():
        for holder in (getattr(module, n, None) for n in ("config", "cfg", "conf", "args")):
            if holder is None:
                continue
            get = holder.get if isinstance(holder, dict) else (lambda k, h=holder: getattr(h, k, None))
            layers = next((get(k) for k in _LAYER_KEYS if isinstance(get(k), int)), None)
            width = next((get(k) for k in _WIDTH_KEYS if isinstance(get(k), int)), None)
            if layers and width:
                return layers, width
    return 0, 0


def flops_per_token(n_params: int, n_layer: int, d_model: int, seq_len: int) -> float:
    return 6.0 * n_params + 12.0 * n_layer * d_model * seq_len


def _cache_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "espnet_speechlm" / "peak_flops.json"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def measure_cpu_peak(dtype: torch.dtype, n: int = 512, seconds: float = 0.5) -> float:
    """Best-of matmul FLOP/s on this CPU with the current thread count (at least 2 products).

    Kept small: on CPUs without native bf16 (AVX2 only) a bf16 product runs at well under
    1 GFLOP/s, and a large one would stall the start of training for many seconds.
    """
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    best, tries, deadline = 0.0, 0, time.perf_counter() + seconds
    while tries < 2 or time.perf_counter() < deadline:
        t0 = time.perf_counter()
        a @ b
        best = max(best, 2.0 * n**3 / (time.perf_counter() - t0))
        tries += 1
    return best


def cpu_peak_flops(dtype: torch.dtype, use_cache: bool = True, refresh: bool = True) -> float:
    """Matmul peak of this CPU in ``dtype``: re-measured (0.5 s) each call when ``refresh``,
    and the maximum over all measurements kept in the cache file."""
    key = f"{_cpu_name()}|threads={torch.get_num_threads()}|{dtype}"
    path = _cache_path()
    cache = {}
    if use_cache and path.is_file():
        try:
            cache = json.loads(path.read_text())
        except ValueError:
            cache = {}
    if key not in cache or refresh:
        # Keep the best value ever seen: a measurement taken while other jobs share the CPU is
        # low, and caching it would overstate MFU from then on.
        cache[key] = max(measure_cpu_peak(dtype), cache.get(key, 0.0))
        if use_cache:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(f".tmp.{os.getpid()}")
                tmp.write_text(json.dumps(cache, indent=1))
                tmp.replace(path)
            except OSError:
                pass
    return cache[key]


def cuda_peak_flops(dtype: torch.dtype, device_name: Optional[str] = None) -> Optional[float]:
    name = device_name or torch.cuda.get_device_name()
    table = CUDA_PEAK_BF16 if dtype in (torch.bfloat16, torch.float16) else CUDA_PEAK_FP32
    for key in sorted(table, key=len, reverse=True):  # "H100" before "A10" style prefixes
        if key in name:
            return table[key]
    return None


def peak_flops(dtype: torch.dtype, use_cuda: bool, override: Optional[float] = None) -> Optional[float]:
    """Peak FLOP/s of one rank's device; None when unknown (MFU is then not reported)."""
    if override:
        return float(override)
    if use_cuda:
        return cuda_peak_flops(dtype)
    return cpu_peak_flops(dtype)


class MFUMeter:
    """Turns (positions, padded length, seconds) of a logging window into tokens/s and MFU."""

    def __init__(self, model: nn.Module, peak: Optional[float], world_size: int = 1):
        self.n_params = count_matmul_params(model)
        self.n_layer, self.d_model = infer_layers_and_width(model)
        self.peak = peak
        self.world_size = world_size

    def report(self, tokens: float, model_flops: float, seconds: float) -> dict:
        """``tokens``/``model_flops`` summed over all ranks during ``seconds``."""
        out = {"tokens_per_s": tokens / max(seconds, 1e-9)}
        if self.peak:
            out["mfu"] = model_flops / max(seconds, 1e-9) / (self.peak * self.world_size)
        return out

    def batch_flops(self, n_positions: int, padded_len: int) -> float:
        return n_positions * flops_per_token(self.n_params, self.n_layer, self.d_model, padded_len)
