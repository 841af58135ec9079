"""Stage 5 throughput and memory: `speechlm_prepare tokenize` at --nj 1 and 2, two corpus sizes.

A text task (textlm, sentencepiece) and an audio task (audiolm, mel_rvq codec) are tokenized
from corpora ten times apart in size. The corpus is made offline: a few base utterances
(flite voices when installed, else tone-and-noise signals) copied into many files, each with
its own gain, noise and trim. Each cell runs the real command line as a subprocess and polls
the memory of its whole process tree (psutil), so --nj 2's spawned workers count too.

    tools/venv/bin/python bench/bench_prepare.py              # 200 and 2000 utterances
    tools/venv/bin/python bench/bench_prepare.py --quick      # 10 and 100, small tokenizers: a check

Columns: wall s is the whole command; startup s is the same command on finished shards
(interpreter, imports, index reading, tokenizer loading, merge; no worker is started then,
so it is measured once per corpus and applies to every --nj), and ex/s excl. startup
= N / (wall - startup) approximates the rate on a large corpus. Peak RSS: the largest
sum over the process tree, and the largest single process.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
SR = 16000
SENTENCES = [
    "the small dog ran to the park", "a red bird sat on the old tree", "my sister found a blue ball",
    "the farmer walked to the river", "our teacher read a long letter", "the happy cat slept in the house",
    "a tall man carried the green box", "the baby saw a bright kite", "his father cleaned the white car",
    "the young fox jumped over the road", "we bought bread at the shop", "the quiet girl drew a yellow boat",
]
VOICES = ["slt", "rms", "awb", "kal16"]
TASKS = {"textlm": "text", "audiolm": "codec"}  # task -> the tokenizer it measures


# --- corpus ------------------------------------------------------------------------------
def base_utterances(work: Path, n: int, seed: int) -> List[tuple[np.ndarray, str, str]]:
    """n (waveform [N] float32 at 16 kHz, text, speaker): flite speech, or tones when flite is missing."""
    rng = np.random.default_rng(seed)
    out = []
    flite = shutil.which("flite")
    for k in range(n):
        text, voice = SENTENCES[k % len(SENTENCES)], VOICES[k % len(VOICES)]
        if flite:
            path = work / f"base{k}.wav"
            subprocess.run([flite, "-voice", voice, "-t", text, "-o", str(path)], check=True)
            wav, sr = sf.read(path, dtype="float32")
            if sr != SR:
                raise RuntimeError(f"flite voice {voice} wrote {sr} Hz audio, expected {SR}")
        else:  # 1.5-2.5 s of three drifting tones and noise
            t = np.arange(int(SR * rng.uniform(1.5, 2.5))) / SR
            f = rng.uniform(120, 900, size=3)
            wav = sum(np.sin(2 * np.pi * fi * t * (1 + 0.05 * t)) for fi in f) / 6
            wav = (wav + 0.01 * rng.standard_normal(len(t))).astype(np.float32)
        out.append((wav, text, voice))
    return out


def write_corpus(data_dir: Path, n: int, bases, seed: int) -> float:
    """n perturbed copies of the base utterances as a Kaldi-style data dir. Returns total seconds of audio."""
    rng = np.random.default_rng(seed)
    wav_dir = data_dir / "wav"
    wav_dir.mkdir(parents=True, exist_ok=True)
    rows: Dict[str, List[str]] = {"wav.scp": [], "text": [], "utt2spk": []}
    total = 0.0
    for i in range(n):
        wav, text, spk = bases[i % len(bases)]
        start, end = rng.integers(0, 1600), len(wav) - rng.integers(0, 1600)
        x = wav[start:end] * rng.uniform(0.5, 1.0) + rng.normal(0, 0.003, end - start)
        utt = f"{spk}_{i:06d}"
        path = wav_dir / f"{utt}.wav"
        sf.write(path, np.clip(x, -1, 1).astype(np.float32), SR, subtype="PCM_16")
        rows["wav.scp"].append(f"{utt} {path}")
        rows["text"].append(f"{utt} {text}")
        rows["utt2spk"].append(f"{utt} {spk}")
        total += len(x) / SR
    for name, lines in rows.items():
        (data_dir / name).write_text("\n".join(sorted(lines)) + "\n")
    return total


def subset(src: Path, dst: Path, n: int) -> None:
    """The first n ids of src (same audio files): the smaller corpus is part of the larger one."""
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("wav.scp", "text", "utt2spk"):
        lines = (src / name).read_text().splitlines()[:n]
        (dst / name).write_text("\n".join(lines) + "\n")


# --- measurement ---------------------------------------------------------------------------
def run_measured(cmd: List[str], env: dict, poll_s: float = 0.02) -> dict:
    """Run cmd; return wall seconds and the peak RSS (MiB) of its process tree and of its largest process."""
    import psutil

    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    root = psutil.Process(proc.pid)
    peak_tree = peak_one = 0
    while proc.poll() is None:
        try:
            procs = [root] + root.children(recursive=True)
        except psutil.NoSuchProcess:
            break
        rss = []
        for p in procs:
            try:
                rss.append(p.memory_info().rss)
            except psutil.Error:
                pass
        if rss:
            peak_tree, peak_one = max(peak_tree, sum(rss)), max(peak_one, max(rss))
        time.sleep(poll_s)
    out = proc.communicate()[0]
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed (exit {proc.returncode}):\n{out[-3000:]}")
    return {"wall": wall, "tree_mib": peak_tree / 2**20, "one_mib": peak_one / 2**20}


def tokenize_cmd(task: str, data_dir: Path, work: Path, out_dir: Path, nj: int, shard_size: int) -> List[str]:
    return [sys.executable, "-m", "espnet2.bin.speechlm_prepare", "tokenize", "--task", task,
            "--data_dir", str(data_dir), "--tokenizer_config", str(work / "tokenizers.yaml"),
            "--tokenizer_dir", str(work / "tokenizers"), "--out_dir", str(out_dir), "--nj", str(nj),
            "--shard_size", str(shard_size)]


def main(argv: Optional[List[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", nargs=2, type=int, default=None, help="two corpus sizes (default 200 2000; quick 10 100)")
    p.add_argument("--nj", nargs="+", type=int, default=[1, 2])
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    p.add_argument("--shard_size", type=int, default=None,
                   help="examples per shard (default: a quarter of the small size, so every cell has shards for --nj 2)")
    p.add_argument("--threads", type=int, default=2, help="BLAS/OpenMP threads per process")
    p.add_argument("--base_utts", type=int, default=12, help="distinct synthesized utterances")
    p.add_argument("--quick", action="store_true", help="small sizes and tokenizers: a check, not figures")
    p.add_argument("--json", type=Path, default=None, help="write the rows here")
    p.add_argument("--work_dir", type=Path, default=None, help="keep the corpus and outputs here (default: a temp dir)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    sizes = args.sizes or ([10, 100] if args.quick else [200, 2000])
    shard_size = args.shard_size or max(1, sizes[0] // 4)
    if sizes[0] >= sizes[1] or sizes[0] < 1:
        p.error(f"--sizes needs a small and a larger size, got {sizes}")

    work = Path(args.work_dir or tempfile.mkdtemp(prefix="bench_prepare_"))
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=f"{ROOT}:{os.environ.get('PYTHONPATH', '')}", PYTHONUNBUFFERED="1")
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(args.threads)
    try:
        rows = bench(args, sizes, shard_size, work, env)
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    print_table(rows, sizes, shard_size, args)
    if args.json:
        args.json.write_text(json.dumps({"rows": rows}, indent=2))


def bench(args, sizes: List[int], shard_size: int, work: Path, env: dict) -> List[dict]:
    sys.path.insert(0, str(ROOT))
    from espnet2.speechlm.data import prepare as prep
    from espnet2.speechlm.tasks.template import load_template

    t0 = time.perf_counter()
    bases = base_utterances(work, args.base_utts, args.seed)
    seconds_big = write_corpus(work / f"data_{sizes[1]}", sizes[1], bases, args.seed)
    subset(work / f"data_{sizes[1]}", work / f"data_{sizes[0]}", sizes[0])
    codec = "{n_streams: 2, codebook_size: 16}" if args.quick else "{n_streams: 8, codebook_size: 256}"
    (work / "tokenizers.yaml").write_text(
        f"text: {{type: sentencepiece, conf: {{vocab_size: {64 if args.quick else 256}, model_type: bpe}}}}\n"
        f"codec: {{type: mel_rvq, conf: {codec}}}\n")
    specs = prep.load_tokenizer_config(work / "tokenizers.yaml")
    prep.train_tokenizers(work / f"data_{sizes[0]}", [load_template(t) for t in args.tasks], specs,
                          work / "tokenizers", max_items=min(sizes[0], 200), seed=args.seed)
    print(f"[bench_prepare] corpus ({sizes[1]} utterances, {seconds_big / 60:.1f} min of audio) and tokenizers "
          f"in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)

    rows = []
    for task in args.tasks:
        for n in sizes:
            data_dir = work / f"data_{n}"
            audio_s = seconds_big * n / sizes[1]  # about: the subset is a random mix of the same bases
            startup = None
            for nj in args.nj:
                out = work / "out" / f"{task}_{n}_{nj}"
                shutil.rmtree(out, ignore_errors=True)
                cmd = tokenize_cmd(task, data_dir, work, out, nj, shard_size)
                m = run_measured(cmd, env)
                if startup is None:  # every shard done: only the fixed costs, the same for any --nj
                    startup = run_measured(cmd, env)["wall"]
                kept = json.loads((out / "data.json").read_text())["num_examples"]
                if kept != n:
                    raise RuntimeError(f"{task} {n}: only {kept} of {n} examples kept; see {out}/skipped.txt")
                steady = m["wall"] - startup
                row = {
                    "task": task, "tokenizer": TASKS[task], "utterances": n, "nj": nj,
                    "shards": -(-n // shard_size), "wall_s": round(m["wall"], 2), "startup_s": round(startup, 2),
                    "ex_per_s": round(n / m["wall"], 1),
                    "ex_per_s_excl_startup": round(n / steady, 1) if steady > 0.05 * m["wall"] else None,
                    "peak_tree_rss_mib": round(m["tree_mib"], 1), "peak_process_rss_mib": round(m["one_mib"], 1),
                }
                if TASKS[task] == "codec":
                    row["audio_x_realtime"] = round(audio_s / m["wall"], 1)
                rows.append(row)
                print(f"[bench_prepare] {json.dumps(row)}", file=sys.stderr, flush=True)
                shutil.rmtree(out, ignore_errors=True)
    for r in rows:  # memory growth from the small to the large corpus, same task and nj
        small = next(x for x in rows if x["task"] == r["task"] and x["nj"] == r["nj"] and x["utterances"] == sizes[0])
        r["tree_rss_vs_small"] = round(r["peak_tree_rss_mib"] / small["peak_tree_rss_mib"], 2)
    return rows


def print_table(rows: List[dict], sizes: List[int], shard_size: int, args) -> None:
    cols = [("task", "task"), ("tokenizer", "tokenizer"), ("utterances", "utts"), ("nj", "nj"),
            ("shards", "shards"), ("wall_s", "wall s"), ("startup_s", "startup s"), ("ex_per_s", "ex/s"),
            ("ex_per_s_excl_startup", "ex/s excl. startup"), ("audio_x_realtime", "audio x realtime"),
            ("peak_tree_rss_mib", "peak RSS tree MiB"), ("peak_process_rss_mib", "peak RSS 1 proc MiB"),
            ("tree_rss_vs_small", f"RSS vs {sizes[0]} utts")]
    print(f"\nspeechlm_prepare tokenize, shard size {shard_size}, {args.threads} threads per process"
          f"{' (quick: small tokenizers)' if args.quick else ''}\n")
    print("| " + " | ".join(h for _, h in cols) + " |")
    print("|" + "|".join("---" for _ in cols) + "|")
    for r in rows:
        print("| " + " | ".join("" if r.get(k) is None else str(r[k]) for k, _ in cols) + " |")


if __name__ == "__main__":
    main()
