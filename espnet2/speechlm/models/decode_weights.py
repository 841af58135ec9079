"""Decoding-time copies of weights, laid out for the small matmuls of CPU decoding.

At decoding batch sizes a CPU matmul is bound by reading its weight. MKL reads an
[in, out] matrix markedly faster than a Linear's [out, in] one for such shapes (one
frame of the multiscale benchmark model: 25-33% less matmul time), and one fused
matmul (q/k/v, gate/up) is cheaper than several. `DecodeWeight` keeps such a copy next
to the parameters: built lazily, never saved, rebuilt whenever a source parameter
changes (data pointer or in-place version), so training between two decodes is seen.

It is used only for CPU tensors under `torch.inference_mode` (`cpu_decoding`): training
and no_grad validation call each Linear module, so hooks that gather sharded weights per
module (DeepSpeed ZeRO-3) see every call, and GPU memory holds one copy of the weights.
The cost is one more copy of the weights it covers, in host memory.

Checking a copy against its sources costs a few microseconds per matmul; inside
`frozen_weights()` (one generate call, where nothing trains) each copy is checked once.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Optional, Sequence, Tuple

import torch
from torch import nn


def cpu_decoding(x: torch.Tensor) -> bool:
    return x.device.type == "cpu" and torch.is_inference_mode_enabled()


_session: Optional[object] = None  # set inside frozen_weights()


@contextmanager
def frozen_weights() -> Iterator[None]:
    """Promise that no weight changes inside the block (a decoding call): each DecodeWeight
    then checks its sources on first use only. Nested blocks share the outer one."""
    global _session
    outer = _session
    _session = outer or object()
    try:
        yield
    finally:
        _session = outer


class DecodeWeight:
    """[D_in, sum D_out]: the row-concatenation of the `linears`' weights, transposed.

    rows: optional (module, buffer name) of the rows to keep, e.g. the ids of a restricted
    head over a shared output layer. Modules are held, not closures, so a deep copy of the
    model (a DPO reference) gets a DecodeWeight of its own weights.
    """

    def __init__(self, linears: Sequence[nn.Module], rows: Optional[Tuple[nn.Module, str]] = None):
        self.linears, self.rows = list(linears), rows
        self.key: Optional[tuple] = None
        self.weight: Optional[torch.Tensor] = None
        self.session: Optional[object] = None  # the frozen_weights() block it was last checked in

    @classmethod
    def of(cls, *linears: nn.Module) -> "DecodeWeight":
        return cls(linears)

    def get(self) -> torch.Tensor:
        if self.session is not None and self.session is _session:
            return self.weight
        self.session = _session
        ws = [m.weight for m in self.linears]
        key = tuple((w.data_ptr(), w._version, w.dtype) for w in ws)
        if key != self.key:
            with torch.no_grad():
                w = torch.cat([w.detach() for w in ws], dim=0)
                if self.rows is not None:
                    owner, name = self.rows
                    w = w[getattr(owner, name)]
                self.weight = w.t().contiguous()  # [D_in, D_out]
            self.key = key
        return self.weight
