"""The measured work, shared by both benchmark workers (ours and the reference).

Both workers import this file, so the timing loops, the synthetic data and the optimizer
are literally the same code; only `Side` (how to build a model, compute its loss and call
its generator) differs. It depends on torch and the standard library only: in the
reference venv `espnet2` is the *reference* package, so nothing here may import ours.

Protocol (one JSON object per line): the orchestrator writes a request to the worker's
stdin, the worker answers one line on its original stdout. Everything else the worker or
its libraries print goes to stderr, so a stray print cannot corrupt the protocol.

    {"op": "info"}                       -> {"ok": true, "torch": ..., ...}
    {"op": "train", "cell": {...}}       -> {"ok": true, "tokens_per_s": ..., "params": ...}
    {"op": "generate", "cell": {...}}    -> {"ok": true, "tokens_per_s": ..., ...}
    {"op": "quit"}
A failure answers {"ok": false, "error": "TypeError: ...", "traceback": "..."}.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from typing import Any, Callable, Dict, Optional

import torch

Cell = Dict[str, Any]


class Side:
    """What differs between the two implementations. Subclasses live in the runner scripts."""

    name = "?"

    def info(self) -> dict:
        return {}

    def build(self, cell: Cell) -> torch.nn.Module:
        raise NotImplementedError

    def vocab_params(self, model: torch.nn.Module) -> list:
        """The token embedding and output-head weights (left out of the "body" count)."""
        raise NotImplementedError

    def train_loss(self, model: torch.nn.Module, seqs: torch.Tensor, cell: Cell) -> torch.Tensor:
        """seqs [B, T, nq] -> scalar loss over the B * (T - 1) * nq next-token targets."""
        raise NotImplementedError

    def generate(self, model: torch.nn.Module, prompt: torch.Tensor, cell: Cell) -> int:
        """prompt [P, nq]; generate cell["new"] frames for cell["batch"] copies; return frames made."""
        raise NotImplementedError


def train_batch(cell: Cell) -> torch.Tensor:
    """Random codec frames [B, T, nq] (stream k from codebook k); the same tensor on both sides."""
    g = torch.Generator().manual_seed(cell.get("seed", 0))
    B, T = cell["batch"], cell["seq_len"]
    return torch.stack([torch.randint(lo, hi, (B, T), generator=g) for lo, hi in cell["ids"]["codec_ranges"]], dim=-1)


def prompt_frames(cell: Cell) -> torch.Tensor:
    """`<task> <text_start> text * (P - 3) <codec_start>` in stream 0, PAD elsewhere: [P, nq]."""
    ids, P = cell["ids"], cell["prompt"]
    g = torch.Generator().manual_seed(cell.get("seed", 0))
    rows = torch.full((P, cell["n_streams"]), ids["pad"], dtype=torch.long)
    rows[0, 0], rows[1, 0], rows[-1, 0] = ids["task"], ids["text_indicator"], ids["codec_indicator"]
    rows[2:-1, 0] = torch.randint(ids["text_lo"], ids["text_hi"], (P - 3,), generator=g)
    return rows


def count_params(model: torch.nn.Module, vocab_params: list) -> dict:
    """Total parameters, and those outside the token embedding and output head(s)."""
    total = sum(p.numel() for p in model.parameters())
    seen = {id(p): p for p in vocab_params}  # a tied head is one tensor
    return {"params": total, "params_non_vocab": total - sum(p.numel() for p in seen.values())}


class Worker:
    """Keeps the model of the current cell between repetitions (built and warmed up once)."""

    def __init__(self, side: Side):
        self.side = side
        self.key: Optional[str] = None
        self.state: dict = {}

    def _setup(self, op: str, cell: Cell) -> dict:
        key = json.dumps([op, cell], sort_keys=True)
        if key != self.key:
            self.key, self.state = None, {}  # drop the previous model first (memory)
            torch.set_num_threads(cell["threads"])
            torch.manual_seed(cell.get("seed", 0))
            t0 = time.perf_counter()
            model = self.side.build(cell)
            state = {"model": model, "build_s": time.perf_counter() - t0,
                     **count_params(model, self.side.vocab_params(model))}
            if op == "train":
                model.train()
                state["opt"] = torch.optim.AdamW(model.parameters(), lr=1e-4)
                state["seqs"] = train_batch(cell)
                for _ in range(cell["warmup"]):
                    self._train_step(state, cell)
            else:
                model.eval()
                state["prompt"] = prompt_frames(cell)
                self.side.generate(model, state["prompt"], {**cell, "new": min(cell["new"], 4)})  # warm-up
            self.key, self.state = key, state
        return self.state

    def _train_step(self, state: dict, cell: Cell) -> None:
        """The step compared on both sides: forward + backward + AdamW, plain torch."""
        loss = self.side.train_loss(state["model"], state["seqs"], cell)
        loss.backward()
        state["opt"].step()
        state["opt"].zero_grad(set_to_none=True)

    def train(self, cell: Cell) -> dict:
        state = self._setup("train", cell)
        t0 = time.perf_counter()
        for _ in range(cell["steps"]):
            self._train_step(state, cell)
        dt = time.perf_counter() - t0
        tokens = cell["batch"] * (cell["seq_len"] - 1) * cell["n_streams"] * cell["steps"]
        return {"tokens_per_s": tokens / dt, "seconds": dt, "params": state["params"],
                "params_non_vocab": state["params_non_vocab"], "build_s": state["build_s"]}

    def generate(self, cell: Cell) -> dict:
        state = self._setup("generate", cell)
        torch.manual_seed(cell.get("seed", 0))
        t0 = time.perf_counter()
        frames = self.side.generate(state["model"], state["prompt"], cell)
        dt = time.perf_counter() - t0
        if frames != cell["batch"] * cell["new"]:
            raise RuntimeError(f"generated {frames} frames, expected {cell['batch']} x {cell['new']}")
        return {"tokens_per_s": frames * cell["n_streams"] / dt, "seconds": dt, "params": state["params"],
                "params_non_vocab": state["params_non_vocab"], "build_s": state["build_s"]}


def serve(side: Side) -> None:
    """Answer requests from stdin until "quit" or EOF (see the module docstring)."""
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything printed from here on, Python or C, lands on stderr
    sys.stdout = sys.stderr
    worker = Worker(side)
    ops: Dict[str, Callable[[Cell], dict]] = {"train": worker.train, "generate": worker.generate}
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        if req["op"] == "quit":
            break
        try:
            if req["op"] == "info":
                reply = {"torch": torch.__version__, "threads": torch.get_num_threads(),
                         "python": sys.version.split()[0], **side.info()}
            else:
                reply = ops[req["op"]](req["cell"])
            reply = {"ok": True, **reply}
        except Exception as e:  # reported, not fatal: the other cells still run
            worker.key, worker.state = None, {}
            reply = {"ok": False, "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
        out.write(json.dumps(reply) + "\n")
