#!/usr/bin/env python3
"""Benchmark worker for the reference ESPnet-SpeechLM (PyPI espnet==202506).

Run with the reference venv's python (bench/suite/setup_reference.sh makes it), never with
ours: both packages are imported as `espnet2`. See workload.py for the protocol.

    bench/suite/.ref-venv/bin/python bench/suite/reference_runner.py

Models: `espnet2.speechlm.core_lm.ar_multiscale.MultiScaleLM` and `core_lm.valle.ValleLM`
(GPT-2 style blocks: LayerNorm, 4 d GELU MLP, biases, learned positions), sized by the cell.
`share_emb=False` gives it a separate output head, as ours has (same parameter count).
Generation is its `inference` (KV cache through forward hooks) with top-k sampling; eos is
masked until exactly `new` frames exist (min = max length), like on our side.
"""

from __future__ import annotations

import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[2]
# our checkout also provides a top-level `espnet2`: keep it off this process's path
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _ROOT]

import torch  # noqa: E402
from workload import Cell, Side, serve  # noqa: E402


class Reference(Side):
    name = "reference"

    def __init__(self):
        import espnet2

        where = Path(espnet2.__file__).resolve()
        if (_ROOT / "espnet2") in where.parents:
            raise RuntimeError(f"reference worker imported our espnet2 ({where}); run it with the reference venv")

    def info(self) -> dict:
        import espnet
        import numpy

        return {"package": f"espnet {espnet.__version__}", "numpy": numpy.__version__,
                "path": str(Path(espnet.__file__).parent.parent)}

    def build(self, cell: Cell) -> torch.nn.Module:
        d, h, L, V, nq = cell["d_model"], cell["n_head"], cell["n_layer"], cell["vocab_size"], cell["n_streams"]
        if cell["arch"] == "multiscale":
            from espnet2.speechlm.core_lm.ar_multiscale import MultiScaleLM

            return MultiScaleLM(vocab_size=V, nq=nq, share_emb=False, g_att_unit=d, g_head=h, g_layer=L,
                                l_att_unit=d, l_head=h, l_layer=cell["local_layers"], n_ctx=cell["n_ctx"])
        if cell["arch"] == "valle":
            from espnet2.speechlm.core_lm.valle import ValleLM

            return ValleLM(vocab_size=V, nq=nq, share_emb=False, att_unit=d, head=h, ar_layer=L, nar_layer=L,
                           n_ctx=cell["n_ctx"])
        raise ValueError(f"the reference has no architecture {cell['arch']!r} (multiscale, valle)")

    def vocab_params(self, model) -> list:
        return [model.emb.weight, model.lm_head.weight]

    def train_loss(self, model, seqs, cell):
        B, T, _ = seqs.shape
        # prefix_len 1: every frame after the first is a target, as on our side
        return model(seqs, dec_seq_lengths=torch.full((B,), T), prefix_len=torch.ones(B, dtype=torch.long))[0]

    def generate(self, model, prompt, cell) -> int:
        from espnet2.speechlm.core_lm.abs_core_lm import SpeechLMInferenceOptions

        ids, nq, P, new = cell["ids"], cell["n_streams"], prompt.shape[0], cell["new"]
        masks = torch.ones(nq, cell["vocab_size"], dtype=torch.bool)  # True = not allowed
        for k, (lo, hi) in enumerate(ids["codec_ranges"]):
            masks[k, lo:hi] = False  # stream k samples from its codebook, like our modality mask
        ratio = (new + 0.5) / P  # int(P * ratio) == new: min == max length, eos never allowed
        opts = SpeechLMInferenceOptions(device="cpu", search_algo="sampling", nbest=cell["batch"],
                                        sampling_temperature=1.0, top_k=cell["top_k"], maxlenratio=ratio,
                                        minlenratio=ratio, eos=ids["eos"], start=ids["eos"], masks=masks, nq=nq)
        decoder = model.g_decoders if hasattr(model, "g_decoders") else model.ar_decoder
        calls = []
        hook = decoder.register_forward_hook(lambda *_: calls.append(1))
        try:  # its inference keeps only hypotheses that ended with eos: count the steps instead
            model.inference(prompt[None], opts, suffix=prompt[None, :1])
        finally:
            hook.remove()
        return (len(calls) - 1) * cell["batch"]  # one call for the prompt, then one per frame


if __name__ == "__main__":
    serve(Reference())
