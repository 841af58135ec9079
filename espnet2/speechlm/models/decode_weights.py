"""Decoding-time copies of weights, laid out for the small matmuls of CPU decoding.

At decoding batch sizes a CPU matmul is bound by reading its weight, and the best layout
depends on the number of rows (measured on the suite's model shapes, AVX2, fp32):

- one row (batch 1): MKL reading an [in, out] matrix; 25-33% less time than a Linear's
  [out, in] one, and 25% less than oneDNN;
- 2 to 64 rows (batched decoding steps): oneDNN with its weight reordered once into its
  own blocked layout (`mkldnn._reorder_linear_weight`, what Inductor's CPU backend uses);
  1.4-2x faster than MKL at 2-16 rows, where MKL is far from both its peak and the memory
  bound; 1.2x at 64 and 1.07x at 256 rows, so longer inputs (prompts) stay on MKL.

One fused matmul (q/k/v, gate/up) is also cheaper than several. `DecodeWeight` keeps such
copies next to the parameters: built lazily (only the layouts used), never saved, not
copied by deepcopy / pickle, and rebuilt whenever a source parameter changes (data
pointer or in-place version), so training between two decodes is seen (edits through
`.data` bump no version and are not). Checking costs a few microseconds per matmul;
inside `frozen_weights()` (one generate call, where nothing trains) each copy is checked
once.

It is used only for CPU tensors under `torch.inference_mode` (`cpu_decoding`): training
and no_grad validation call each Linear module, so hooks that gather sharded weights per
module (DeepSpeed ZeRO-3) see every call, and GPU memory holds one copy of the weights.
The cost is up to two more copies of the weights it covers, in host memory.
"""

from __future__ import annotations

import contextvars
import logging
from contextlib import contextmanager
from typing import Iterator, Optional, Sequence, Tuple

import torch
from torch import nn

ONEDNN_ROW_HINT = 8  # the row count oneDNN's layout is tuned for; 4-16 measured alike for 2-256 rows


def cpu_decoding(x: torch.Tensor) -> bool:
    return x.device.type == "cpu" and torch.is_inference_mode_enabled()


def onednn_available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


# set inside frozen_weights(); a context variable, so another thread never shares a block
_session: contextvars.ContextVar[Optional[object]] = contextvars.ContextVar("frozen_weights", default=None)
use_onednn = onednn_available()  # module switch (benchmarks compare both paths)
ONEDNN_MAX_ROWS = 64  # above this MKL is as fast (1.07x at 256 rows), and a long prompt needs no second copy


@contextmanager
def frozen_weights() -> Iterator[None]:
    """Promise that no weight changes inside the block (a decoding call): each DecodeWeight
    then checks its sources on first use only. Nested blocks share the outer one."""
    token = _session.set(_session.get() or object())
    try:
        yield
    finally:
        _session.reset(token)


def _onednn_pack(w: torch.Tensor) -> Optional[torch.Tensor]:
    """oneDNN's layout of w [D_out, D_in]; None (and MKL from then on) where this build or
    CPU cannot make one (the ops are Inductor's, present only in oneDNN builds)."""
    global use_onednn
    try:
        return torch.ops.mkldnn._reorder_linear_weight(w, ONEDNN_ROW_HINT)
    except (RuntimeError, NotImplementedError) as e:
        logging.getLogger(__name__).warning("oneDNN weight packing failed (%s); decoding uses MKL", e)
        use_onednn = False
        return None


class DecodeWeight:
    """The row-concatenation of the `linears`' weights [sum D_out, D_in], as decoding copies.

    rows: optional (module, buffer name) of the rows to keep, e.g. the ids of a restricted
    head over a shared output layer. Modules are held, not closures, so a deep copy of the
    model (a DPO reference) gets a DecodeWeight of its own weights.
    """

    def __init__(self, linears: Sequence[nn.Module], rows: Optional[Tuple[nn.Module, str]] = None):
        self.linears, self.rows = list(linears), rows
        self._forget()

    @classmethod
    def of(cls, *linears: nn.Module) -> "DecodeWeight":
        return cls(linears)

    def _forget(self) -> None:
        self.key: Optional[tuple] = None
        self.session: Optional[object] = None  # the frozen_weights() block it was last checked in
        self.t: Optional[torch.Tensor] = None  # [D_in, D_out] for MKL
        self.packed: Optional[torch.Tensor] = None  # oneDNN's blocked layout (an opaque tensor)

    def __getstate__(self) -> dict:  # deepcopy / pickle: the modules, never the copies
        return {"linears": self.linears, "rows": self.rows}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._forget()

    def matmul(self, x: torch.Tensor) -> torch.Tensor:
        """x [..., D_in] -> [..., D_out], with the layout that suits x's row count."""
        rows = x.numel() // max(x.shape[-1], 1)
        if rows == 0:  # nothing to multiply: no copy to build
            return x.new_zeros(*x.shape[:-1], self.out_features)
        self._check()
        if 2 <= rows <= ONEDNN_MAX_ROWS and use_onednn and x.dtype == torch.float32:
            if self.packed is None:
                self.packed = _onednn_pack(self._weight())
            if self.packed is not None:
                return torch.ops.mkldnn._linear_pointwise(x, self.packed, None, "none", [], "")
        return torch.matmul(x, self._transposed())

    @property
    def out_features(self) -> int:
        if self.rows is not None:
            owner, name = self.rows
            return int(getattr(owner, name).numel())
        return sum(m.weight.shape[0] for m in self.linears)

    def get(self) -> torch.Tensor:
        """The [D_in, D_out] copy."""
        self._check()
        return self._transposed()

    def _transposed(self) -> torch.Tensor:  # after _check
        if self.t is None:
            self.t = self._weight().t().contiguous()
        return self.t

    def _check(self) -> None:
        session = _session.get()
        if session is not None and self.session is session:
            return
        ws = [m.weight for m in self.linears]
        # the rows buffer (restricted head ids) is fixed at build time, so it is not part of the key
        key = tuple((w.data_ptr(), w._version, w.dtype) for w in ws)
        if key != self.key:
            self._forget()
            self.key = key
        self.session = session

    def _weight(self) -> torch.Tensor:
        with torch.no_grad():
            w = torch.cat([m.weight.detach() for m in self.linears], dim=0)
            if self.rows is not None:
                owner, name = self.rows
                w = w[getattr(owner, name)]
            return w.contiguous()  # [D_out, D_in]
