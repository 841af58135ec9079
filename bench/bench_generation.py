"""Generation throughput on CPU: tokens/s per model and batch size, KV cache off and on.

Rows:
  * each architecture (delay, parallel, multiscale, valle) on the built-in body, with a
    text + codec vocabulary (`--n-streams` codec streams), sampling `--method`;
  * `hf (ours)`: a random Llama (`transformers.LlamaForCausalLM`, the built-in body's size)
    as our `hf` body with its vocabulary grafted in (`text_init`), text-only greedy
    through our `generate`;
  * `hf (HF generate)`: the same Llama through HF `generate`, greedy, same prompts and
    number of new tokens (the two must produce the same tokens; checked).

Every cell generates exactly `--new` frames per example (eos masked, then forced at the
cap), so cells are comparable; tokens = frames * streams * batch. A cell's time is the
best of `--repeat` runs after a short warm-up. The last column is cached / uncached.

Context length. Without a cache every step re-reads the whole sequence, so the gain of
the cache grows with it. Rows are given for each of `--prompts`: a short 32-frame prompt
(the old setting), and 256 frames, a speech-sized context (a 75 Hz codec speaker prompt
of ~3 s plus its text), as a TTS or continuation prompt is in practice.

    tools/venv/bin/python bench/bench_generation.py [--quick] [--json out.json] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from espnet2.speechlm.inference import ModalityTable, SearchConfig
from espnet2.speechlm.models import build_speechlm, vocab_build_args
from espnet2.speechlm.vocab import PAD, JointVocabulary

BODY = dict(d_model=256, n_layer=4, n_head=8, n_kv_head=4, d_ff=688, max_len=1024)
LLAMA = dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=4,
             intermediate_size=688, max_position_embeddings=1024, tie_word_embeddings=False)
N_TEXT = 500


def make_vocab(n_streams: int) -> JointVocabulary:
    v = JointVocabulary()
    v.add_task("tts")
    v.add_tokenizer("text", "x", N_TEXT, 1)
    if n_streams:
        v.add_tokenizer("codec", "y", 256, n_streams)
    return v


def make_prompts(v: JointVocabulary, batch: int, prompt: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`<task> <text_start> x * (prompt-3) <codec_start>`, all of length `prompt`."""
    lo, hi = v.range("text").stream_range(0)
    prefix = torch.full((batch, prompt, v.max_streams), PAD)
    prefix[:, 0, 0] = v.task("tts")
    prefix[:, 1, 0] = v.indicator("text")
    prefix[:, 2:-1, 0] = torch.randint(lo, hi, (batch, prompt - 3))
    prefix[:, -1, 0] = v.indicator("codec")
    return prefix, torch.full((batch,), prompt)


def best_time(fn, repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def arch_cell(model, v, batch: int, prompt: int, use_cache: bool, args) -> float:
    prefix, lengths = make_prompts(v, batch, prompt)
    cfg = SearchConfig(method=args.method, top_k=50, min_len_ratio=1e6, max_len_ratio=1e6, max_new_tokens=args.new)
    table = ModalityTable.from_vocab(v)
    warm = SearchConfig(method=args.method, min_len_ratio=1e6, max_len_ratio=1e6, max_new_tokens=4)
    model.generate(prefix, lengths, warm, table, use_cache=use_cache)
    dt, out = best_time(lambda: model.generate(prefix, lengths, cfg, table, use_cache=use_cache), args.repeat)
    assert all(h[0].shape[0] == args.new for h in out)
    return batch * args.new * v.max_streams / dt


def hf_rows(args, batches, prompt: int) -> list[dict]:
    """Our generate with the `hf` body vs HF generate on the same random Llama (text-only greedy)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    lm = LlamaForCausalLM(LlamaConfig(vocab_size=N_TEXT, **LLAMA)).eval()
    lm.generation_config.eos_token_id = None  # exactly `new` tokens, like ours
    v = make_vocab(0)  # text only: one stream
    with tempfile.TemporaryDirectory() as tmp:
        lm.save_pretrained(tmp)
        ours = build_speechlm("delay", "hf", {"model": tmp}, v.size, 1, **vocab_build_args(v, "text")).eval()
    off = v.range("text").offset
    table = ModalityTable.from_vocab(v).continue_only(v, "text")
    cfg = SearchConfig(method="greedy", min_len_ratio=1e6, max_len_ratio=1e6, max_new_tokens=args.new)
    warm = SearchConfig(method="greedy", min_len_ratio=1e6, max_len_ratio=1e6, max_new_tokens=4)
    rows = []
    for b in batches:
        ids = torch.randint(0, N_TEXT, (b, prompt))
        prefix, lengths = (ids + off)[..., None], torch.full((b,), prompt)
        mask = torch.ones_like(ids)
        ours_tps, hf_tps, same = {}, {}, True
        for use_cache in (False, True):
            ours.generate(prefix, lengths, warm, table, use_cache=use_cache)
            dt, out = best_time(lambda: ours.generate(prefix, lengths, cfg, table, use_cache=use_cache), args.repeat)
            ours_tps[use_cache] = b * args.new / dt
            with torch.inference_mode():
                kw = dict(attention_mask=mask, do_sample=False, pad_token_id=0, use_cache=use_cache)
                lm.generate(ids, max_new_tokens=4, **kw)
                dt, hf = best_time(lambda: lm.generate(ids, max_new_tokens=args.new, **kw), args.repeat)
            hf_tps[use_cache] = b * args.new / dt
            mine = torch.stack([h[0][:, 0] for h in out]) - off
            same &= torch.equal(mine, hf[:, prompt:])
        rows.append(row("hf (ours)", "hf", b, prompt, ours_tps[False], ours_tps[True], same_tokens=same))
        rows.append(row("hf (HF generate)", "hf", b, prompt, hf_tps[False], hf_tps[True], same_tokens=same))
    return rows


def row(model: str, body: str, batch: int, prompt: int, slow: float, fast: float, **extra) -> dict:
    return dict(model=model, body=body, batch=batch, prompt=prompt, uncached_tok_s=round(slow, 1), cached_tok_s=round(fast, 1),
                speedup=round(fast / slow, 2), **extra)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--archs", nargs="+", default=["delay", "parallel", "multiscale", "valle"])
    p.add_argument("--batches", nargs="+", type=int, default=[1, 16])
    p.add_argument("--n-streams", type=int, default=4)
    p.add_argument("--prompts", nargs="+", type=int, default=[32, 256], help="prompt frames (one set of rows each)")
    p.add_argument("--new", type=int, default=48, help="generated frames per example")
    p.add_argument("--method", default="top_k", help="search method of the architecture rows (hf rows: greedy)")
    p.add_argument("--repeat", type=int, default=2, help="timed runs per cell (best is kept)")
    p.add_argument("--full-heads", action="store_true", help="heads over the whole vocabulary (old behaviour)")
    p.add_argument("--no-hf", action="store_true", help="skip the HF Llama rows")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--quick", action="store_true", help="short prompts/continuations, one timed run (a smoke check)")
    p.add_argument("--json", type=Path, default=None, help="also write the table (and settings) as JSON")
    args = p.parse_args()
    if args.quick:
        args.prompts, args.new, args.repeat = [min(args.prompts[0], 16)], min(args.new, 16), 1
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    v = make_vocab(args.n_streams)
    settings = dict(body=BODY, vocab=v.size, n_streams=args.n_streams, prompts=args.prompts, new=args.new,
                    method=args.method, repeat=args.repeat, heads="full" if args.full_heads else "restricted",
                    threads=args.threads, torch=torch.__version__, machine=platform.machine(), quick=args.quick)
    print(", ".join(f"{k} {v_}" for k, v_ in settings.items()))
    print("| model | body | prompt | batch | uncached tok/s | cached tok/s | cached / uncached |")
    print("|---|---|---|---|---|---|---|")
    rows = []

    def show(r):
        rows.append(r)
        note = "" if "same_tokens" not in r else f" (same tokens as HF: {'yes' if r['same_tokens'] else 'NO'})"
        print(f"| {r['model']} | {r['body']} | {r['prompt']} | {r['batch']} | {r['uncached_tok_s']:,.0f} | {r['cached_tok_s']:,.0f} "
              f"| {r['speedup']:.1f}x{note} |", flush=True)

    models = {}
    for arch in args.archs:
        extra = {} if args.full_heads else vocab_build_args(v)
        models[arch] = build_speechlm(arch, "builtin", BODY, v.size, v.max_streams, **extra).eval()
    for prompt in args.prompts:
        for arch, model in models.items():
            for b in args.batches:
                show(row(arch, "builtin", b, prompt, arch_cell(model, v, b, prompt, False, args),
                         arch_cell(model, v, b, prompt, True, args)))
        if not args.no_hf:
            for r in hf_rows(args, args.batches, prompt):
                show(r)
    if args.json:
        args.json.write_text(json.dumps({"benchmark": "generation", "settings": settings, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
