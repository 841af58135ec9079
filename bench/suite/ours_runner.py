#!/usr/bin/env python3
"""Benchmark worker for this toolkit's models (see workload.py for the protocol).

    tools/venv/bin/python bench/suite/ours_runner.py          # serves requests on stdin

Models come from `build_speechlm(arch, "builtin", body_conf, V, nq)` sized to match the
reference (see `body_conf`); generation is `model.generate` with `SearchConfig` top-k
sampling, KV cache on, eos masked until exactly `new` frames exist.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(1, str(Path(__file__).resolve().parents[2]))  # the repo root, after this folder

import torch  # noqa: E402
from workload import Cell, Side, serve  # noqa: E402


def vocab_cell_ids(n_text: int, codebook: int, n_streams: int) -> dict:
    """The joint vocabulary both sides use: a text tokenizer and an nq-stream codec."""
    from espnet2.speechlm.vocab import PAD, SOS_EOS, JointVocabulary

    v = JointVocabulary()
    v.add_task("tts")
    v.add_tokenizer("text", "x", n_text, 1)
    v.add_tokenizer("codec", "y", codebook, n_streams)
    lo, hi = v.range("text").stream_range(0)
    return {"vocab_size": v.size, "ids": {
        "pad": PAD, "eos": SOS_EOS, "task": v.task("tts"),
        "text_indicator": v.indicator("text"), "codec_indicator": v.indicator("codec"),
        "text_lo": lo, "text_hi": hi,
        "codec_ranges": [list(v.range("codec").stream_range(k)) for k in range(n_streams)]}}


def body_conf(cell: Cell) -> dict:
    """Llama-style body matched to the reference's GPT-2 style one: SwiGLU width 8/3 d
    gives the same 8 d^2 MLP weights as its 4 d GELU MLP, full (not grouped) KV heads."""
    d = cell["d_model"]
    return dict(d_model=d, n_layer=cell["n_layer"], n_head=cell["n_head"], n_kv_head=cell["n_head"],
                d_ff=ff_width(d), max_len=cell["n_ctx"])


def ff_width(d: int) -> int:
    return round(8 * d / 3)


class Ours(Side):
    name = "ours"

    def __init__(self):
        from espnet2.speechlm.inference import ModalityTable, SearchConfig
        from espnet2.speechlm.models import build_speechlm
        from espnet2.speechlm.vocab import JointVocabulary

        self.build_speechlm, self.SearchConfig = build_speechlm, SearchConfig
        self.ModalityTable, self.JointVocabulary = ModalityTable, JointVocabulary
        self.table = None

    def info(self) -> dict:
        import espnet2

        return {"package": "espnet-speechlm " + getattr(espnet2, "__version__", "?"), "path": str(Path(espnet2.__file__).parent)}

    def build(self, cell: Cell) -> torch.nn.Module:
        """cell["heads"]: "full" = one shared head over the whole vocabulary (the reference's
        shape); "restricted" = per-stream heads over the ids each stream can hold, as the
        recipe builds them (`vocab_build_args`)."""
        arch, d, ids = cell["arch"], cell["d_model"], cell["ids"]
        v = self.JointVocabulary()
        v.add_task("tts")
        v.add_tokenizer("text", "x", ids["text_hi"] - ids["text_lo"], 1)
        v.add_tokenizer("codec", "y", ids["codec_ranges"][0][1] - ids["codec_ranges"][0][0], cell["n_streams"])
        assert v.size == cell["vocab_size"], "vocabulary of the cell and of the worker differ"
        self.table = self.ModalityTable.from_vocab(v)
        heads = cell.get("heads", "full")
        if heads == "full":
            extra = dict(shared_head=True)
        elif heads == "restricted":
            from espnet2.speechlm.models import vocab_build_args

            extra = dict(shared_head=False, **vocab_build_args(v))
        else:
            raise ValueError(f"heads must be 'full' or 'restricted', got {heads!r}")
        if arch == "multiscale":
            extra.update(local_layers=cell["local_layers"], local_heads=cell["n_head"], local_ff_mult=ff_width(d) / d)
        return self.build_speechlm(arch, "builtin", body_conf(cell), cell["vocab_size"], cell["n_streams"], **extra)

    def vocab_params(self, model) -> list:
        return [model.embed.weight, *model.parameters_of_heads()]

    def train_loss(self, model, seqs, cell):
        weights = torch.ones(seqs.shape, dtype=torch.float32)  # every token of frames 1.. is a target
        lengths = torch.full((seqs.shape[0],), seqs.shape[1])
        return model(seqs, weights, lengths)[0]

    def generate(self, model, prompt, cell) -> int:
        B, new = cell["batch"], cell["new"]
        prefix = prompt[None].expand(B, -1, -1).contiguous()  # [B, P, nq]
        lengths = torch.full((B,), prompt.shape[0])
        cfg = self.SearchConfig(method="top_k", top_k=cell["top_k"], temperature=1.0, min_len_ratio=1e6,
                                max_len_ratio=1e6, max_new_tokens=new, seed=cell.get("seed", 0))
        out = model.generate(prefix, lengths, cfg, self.table, use_cache=True)  # as a user calls it
        return sum(h[0].shape[0] for h in out)


if __name__ == "__main__":
    serve(Ours())
