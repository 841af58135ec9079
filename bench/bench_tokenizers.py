#!/usr/bin/env python3
"""Real-time factor of every audio tokenizer: encode (tokenize) and decode (detokenize) on CPU.

RTF = processing seconds / audio seconds (below 1 is faster than real time); x real time
= 1 / RTF. The same speech clips (flite, offline; a synthetic signal if flite is missing)
are resampled to each tokenizer's sample rate, tokenized in one batched call, then each
clip's tokens are decoded. One untimed warm-up call precedes the timed repetitions; the
median is reported.

Rows: mel_rvq (trained here on other flite sentences), encodec / dac / mimi at their real
default architectures (transformers' EncodecConfig(), DacConfig(), MimiConfig() =
facebook/encodec_24khz, descript/dac_16khz-style, kyutai/mimi) with random weights, since
nothing can be downloaded (compute does not depend on weight values), and ssl_kmeans when
it is registered (mfcc backend, and the hf backend on a random HuBERT-base, layer 6).

    tools/venv/bin/python bench/bench_tokenizers.py                  # ~10 s of audio per row
    tools/venv/bin/python bench/bench_tokenizers.py --quick          # one short clip: a check
    tools/venv/bin/python bench/bench_tokenizers.py --only encodec dac --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SR = 16000  # rate of the source clips; each tokenizer gets them resampled

TEST_SENTENCES = [
    "the weather is nice today and we are going to the park",
    "please call me back after lunch if you have a moment",
    "the train leaves at seven in the morning from the main station",
    "she reads a book every night before she goes to sleep",
]
TRAIN_SENTENCES = [
    "a quick brown fox jumps over the lazy dog",
    "the early bird catches the worm",
    "many people travel by bus to work every day",
    "the library is open from eight to five",
    "he answered the phone on the second ring",
    "they painted the house blue last summer",
    "the river flows north through the valley",
    "could you pass the salt and pepper please",
]
VOICES = ["slt", "rms", "awb", "kal16"]


# --- audio -------------------------------------------------------------------------------
def speech(text: str, voice: str, tmp: Path, seed: int) -> np.ndarray:
    """flite speech at 16 kHz [N]; a gliding harmonic tone with noise if flite is missing."""
    import soundfile as sf

    if shutil.which("flite"):
        path = tmp / f"{voice}_{seed}.wav"
        subprocess.run(["flite", "-voice", voice, "-t", text, "-o", str(path)], check=True, capture_output=True)
        wav, sr = sf.read(str(path), dtype="float32")
        return resample(wav, sr, SR)
    rng = np.random.default_rng(seed)
    t = np.arange(int(0.07 * len(text) * SR)) / SR
    phase = 2 * np.pi * np.cumsum(140 * (1 + 0.3 * np.sin(2 * np.pi * 0.8 * t))) / SR
    wav = sum(np.sin(h * phase) / h for h in range(1, 8)) + 0.1 * rng.standard_normal(len(t))
    return (0.2 * wav / np.abs(wav).max()).astype(np.float32)


def resample(wav: np.ndarray, sr: int, target: int) -> np.ndarray:
    if sr == target:
        return wav.astype(np.float32)
    import librosa

    return librosa.resample(wav.astype(np.float32), orig_sr=sr, target_sr=target, res_type="soxr_hq")


# --- tokenizers --------------------------------------------------------------------------
def n_params(tok) -> Optional[int]:
    """Parameters of the neural model behind a tokenizer (codec, or SSL feature model)."""
    for owner in (tok, getattr(tok, "backend", None)):
        m = getattr(owner, "model", None)
        if m is not None and hasattr(m, "parameters"):
            return sum(p.numel() for p in m.parameters())
    return None


def builders(args, train: list[np.ndarray], work: Path) -> list[tuple[str, str, Callable]]:
    """(row name, note, () -> tokenizer) for every audio tokenizer of the project."""
    from espnet2.speechlm.tokenizers import TOKENIZERS, build_tokenizer, train_tokenizer

    codec = dict(device="cpu", batch_size=8, random_init_config={})  # {} = the real default architecture
    rows = [
        ("mel_rvq", "trained here: 8 x 256 RVQ on log-mel, Griffin-Lim 32 iters decode",
         lambda: train_tokenizer("mel_rvq", train, work / "mel_rvq", n_streams=8, codebook_size=256,
                                 kmeans_iters=10)),
        ("encodec", "EncodecConfig() = encodec_24khz, 6 kbit/s; random weights",
         lambda: build_tokenizer("encodec", None, n_streams=8, **codec)),
        ("dac", "DacConfig() = dac_16khz-style (9 codebooks), all streams; random weights",
         lambda: build_tokenizer("dac", None, **codec)),
        ("mimi", "MimiConfig() = kyutai/mimi, 8 of 32 streams; random weights",
         lambda: build_tokenizer("mimi", None, n_streams=8, **codec)),
    ]
    if "ssl_kmeans" in TOKENIZERS:
        k = 64 if args.quick else 500  # k-means needs at least k training frames
        rows += [
            ("ssl_kmeans (mfcc)", f"mfcc + deltas, {k} k-means units, trained here; no decoder",
             lambda: train_tokenizer("ssl_kmeans", train, work / "ssl_mfcc", features="mfcc", codebook_size=k,
                                     kmeans_n_init=1, kmeans_iters=20)),
            ("ssl_kmeans (hf)", f"HubertConfig() = HuBERT-base, layer 6, {k} units; random weights; no decoder",
             lambda: train_tokenizer("ssl_kmeans", train, work / "ssl_hf", features="hf", layer=6,
                                     random_init_config={"model_type": "hubert"}, codebook_size=k,
                                     kmeans_n_init=1, kmeans_iters=20)),
        ]
    else:
        rows.append(("ssl_kmeans", "skipped: not registered (espnet2/speechlm/tokenizers/ssl_kmeans.py missing)", None))
    return [r for r in rows if not args.only or r[0].split()[0] in args.only]


def time_tokenizer(tok, clips: list[np.ndarray], reps: int) -> tuple[float, Optional[float]]:
    """Median seconds to tokenize all clips (one batched call) and to detokenize each clip."""
    has_decoder = True
    warm = tok.tokenize([clips[0][: len(clips[0]) // 4]])  # untimed: first-call allocations
    try:
        tok.detokenize(warm[0])
    except NotImplementedError:
        has_decoder = False
    enc, dec = [], []
    for _ in range(reps):
        t0 = time.perf_counter()
        codes = tok.tokenize(clips)
        enc.append(time.perf_counter() - t0)
        if has_decoder:
            t0 = time.perf_counter()
            for c in codes:
                tok.detokenize(c)
            dec.append(time.perf_counter() - t0)
    return statistics.median(enc), (statistics.median(dec) if has_decoder else None)


# --- main --------------------------------------------------------------------------------
def fmt_rtf(rtf: Optional[float]) -> str:
    return "n/a" if rtf is None else f"{rtf:.3f} ({1 / rtf:.1f}x)"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="one short clip and small k-means: a check, not figures")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    p.add_argument("--reps", type=int, default=1, help="timed repetitions (median reported)")
    p.add_argument("--only", nargs="+", help="row families to run, e.g. mel_rvq encodec ssl_kmeans")
    p.add_argument("--json", type=Path, help="also write the rows here as JSON")
    args = p.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="bench_tok_"))
    t_start, load_start = time.time(), os.getloadavg()[0]
    test_sents = TEST_SENTENCES[:1] if args.quick else TEST_SENTENCES
    train_sents = TRAIN_SENTENCES[:3] if args.quick else TRAIN_SENTENCES
    clips16 = [speech(s, VOICES[i % len(VOICES)], work, i) for i, s in enumerate(test_sents)]
    train = [speech(s, VOICES[(i + 1) % len(VOICES)], work, 100 + i) for i, s in enumerate(train_sents)]
    if args.quick:
        clips16 = [c[: 2 * SR] for c in clips16]
    audio_s = sum(len(c) for c in clips16) / SR
    source = "flite" if shutil.which("flite") else "synthetic tone (flite not found)"

    rows = []
    for name, note, build in builders(args, train, work):
        row = {"tokenizer": name, "note": note, "threads": args.threads, "audio_s": round(audio_s, 2)}
        if build is None:
            rows.append(row)
            print(f"# {name}: {note}", flush=True)
            continue
        t0 = time.perf_counter()
        tok = build()
        build_s = time.perf_counter() - t0
        clips = [resample(c, SR, tok.sample_rate) for c in clips16]
        enc_s, dec_s = time_tokenizer(tok, clips, args.reps)
        streams, cb, fr = tok.n_streams, tok.codebook_size, tok.frame_rate
        params = n_params(tok)
        row.update(
            frame_rate=fr, streams=streams, codebook_size=cb,
            bitrate=None if fr is None else fr * streams * float(np.log2(cb)),
            sample_rate=tok.sample_rate, params=params, build_s=round(build_s, 2),
            encode_s=enc_s, encode_rtf=enc_s / audio_s, encode_xrt=audio_s / enc_s,
            decode_s=dec_s, decode_rtf=None if dec_s is None else dec_s / audio_s,
            decode_xrt=None if dec_s is None else audio_s / dec_s,
        )
        rows.append(row)
        print(f"# {name}: encode {enc_s:.2f} s, decode {'-' if dec_s is None else f'{dec_s:.2f} s'} "
              f"for {audio_s:.1f} s of audio (built in {build_s:.1f} s)", flush=True)

    load = (load_start, os.getloadavg()[0])
    print(f"\nTokenizer real-time factor on CPU: {len(clips16)} clip(s), {audio_s:.1f} s of speech ({source}), "
          f"torch {torch.__version__}, {args.threads} threads on {os.cpu_count()} {platform.machine()} cores "
          f"(1-min load average {load[0]:.1f} at start, {load[1]:.1f} at end); median of {args.reps} timed run(s) "
          "after a warm-up. RTF = processing s / audio s; x RT = 1 / RTF.\n")
    print("| tokenizer | frame rate (Hz) | streams | codebook | bitrate (bit/s) | params | encode RTF (x RT) "
          "| decode RTF (x RT) | threads |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "encode_s" not in r:
            print(f"| {r['tokenizer']} | - | - | - | - | - | skipped | skipped | {r['threads']} |")
            continue
        fr = "-" if r["frame_rate"] is None else f"{r['frame_rate']:g}"
        br = "-" if r["bitrate"] is None else f"{r['bitrate']:,.0f}"
        par = "-" if r["params"] is None else f"{r['params'] / 1e6:.1f}M"
        print(f"| {r['tokenizer']} | {fr} | {r['streams']} | {r['codebook_size']} | {br} | {par} | "
              f"{fmt_rtf(r['encode_rtf'])} | {fmt_rtf(r['decode_rtf'])} | {r['threads']} |")
    print("\nNotes:")
    for r in rows:
        print(f"- {r['tokenizer']}: {r['note']}")
    print("- encodec, dac, mimi and ssl_kmeans (hf) use random weights at the real architecture size: "
          "nothing can be downloaded here, and compute does not depend on weight values.")
    print("- encode = one batched tokenize() call over all clips (batch_size 8 for the codecs); "
          "decode = one detokenize() per clip.")
    print(f"- total wall time {time.time() - t_start:.0f} s")
    if args.json:
        meta = {"audio_s": audio_s, "clips": len(clips16), "source": source, "threads": args.threads,
                "torch": torch.__version__, "reps": args.reps, "quick": args.quick, "loadavg_start_end": load}
        args.json.write_text(json.dumps({"rows": rows, "meta": meta}, indent=1))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
