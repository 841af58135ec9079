"""Is the built-in audio tokenizer still intelligible after tokenize -> detokenize?

Synthesises 30 English test sentences with flite (voice slt) and espeak-ng
(en-us) each (60 clips) into a temp dir, resamples them to 16 kHz, trains `mel_rvq` on *different*
sentences (several flite/espeak voices), and reports pocketsphinx WER on the
original audio and after the round trip. The "mel only" row skips quantisation
(mel -> Griffin-Lim) and so shows the vocoder's own share of the loss.

    tools/venv/bin/python bench/tokenizer_roundtrip_wer.py                 # default grid
    tools/venv/bin/python bench/tokenizer_roundtrip_wer.py --configs 320:8:256 400:8:256 --show

A config is hop:n_streams:codebook_size (n_fft 1024, 80 mels, 16 kHz).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SR = 16000

TEST_SENTENCES = [
    "the cat sat on the mat",
    "she sells sea shells by the sea shore",
    "please call me back after lunch",
    "the weather is nice today",
    "i would like a cup of coffee",
    "we are going to the park this afternoon",
    "the train leaves at seven in the morning",
    "can you open the window please",
    "my brother lives in new york",
    "the children are playing in the garden",
    "he bought a new car last week",
    "turn left at the next corner",
    "the meeting has been moved to friday",
    "it is raining again",
    "she reads a book every night",
    "the dog is barking at the mailman",
    "we need more time to finish the project",
    "the store closes at nine",
    "he plays the piano very well",
    "do you know where the station is",
    "the water in the lake is cold",
    "they went to the beach for the weekend",
    "i forgot my keys at home",
    "the price of gold went up",
    "our team won the game last night",
    "the president gave a long speech",
    "there are many stars in the sky",
    "the baby is sleeping now",
    "we had dinner at a small restaurant",
    "the old man walked slowly down the road",
]

TRAIN_SENTENCES = [
    "a quick brown fox jumps over the lazy dog",
    "the early bird catches the worm",
    "she walked into the room and sat down quietly",
    "many people travel by bus to work every day",
    "the library is open from eight to five",
    "he answered the phone on the second ring",
    "they painted the house blue last summer",
    "the river flows north through the valley",
    "could you pass the salt and pepper",
    "this is the best pizza in town",
    "my sister works at the hospital downtown",
    "the teacher explained the lesson again",
    "we watched a movie about space travel",
    "the company announced record profits this year",
    "a strong wind blew the leaves away",
    "please remember to lock the door",
    "the museum has a famous painting",
    "he runs five miles every morning",
    "our neighbors have three small cats",
    "the plane landed safely in the storm",
    "she wrote a letter to her grandmother",
    "the computer stopped working yesterday",
    "fresh bread smells wonderful",
    "the kids built a castle out of sand",
    "the doctor said i should rest",
    "what time does the show begin",
    "the farmer grows corn and wheat",
    "there is a hole in my shoe",
    "the police found the missing car",
    "we climbed to the top of the hill",
    "his answer was short and clear",
    "the music was too loud for me",
    "she laughed at the funny story",
    "the road was covered with snow",
    "they will arrive on tuesday evening",
    "the soup needs a little more salt",
    "every student must take the exam",
    "i saw a bright light in the distance",
    "the bank is next to the post office",
    "the garden is full of red roses",
]

TRAIN_VOICES = ["flite:slt", "flite:kal16", "flite:awb", "flite:rms", "espeak:en-us", "espeak:en-gb"]


# --- audio -------------------------------------------------------------------------------
def synthesize(text: str, voice: str, path: Path) -> np.ndarray:
    """Run flite / espeak-ng into path and return a 16 kHz float32 waveform [N]."""
    import librosa

    engine, name = voice.split(":")
    if engine == "flite":
        cmd = ["flite", "-voice", name, "-t", text, "-o", str(path)]
    else:
        cmd = ["espeak-ng", "-v", name, "-w", str(path), text]
    subprocess.run(cmd, check=True, capture_output=True)
    wav, _ = librosa.load(str(path), sr=SR, mono=True)
    return wav.astype(np.float32)


def recognise(wav: np.ndarray) -> str:
    """pocketsphinx 5 with its bundled en-us acoustic model, LM and dictionary."""

    dec = _decoder()
    pcm = (np.clip(wav, -1.0, 1.0) * 32767).astype(np.int16).tobytes()
    dec.start_utt()
    dec.process_raw(pcm, full_utt=True)
    dec.end_utt()
    hyp = dec.hyp()
    return hyp.hypstr if hyp is not None else ""


_DEC = None


def _decoder():
    global _DEC
    if _DEC is None:
        from pocketsphinx import Decoder

        _DEC = Decoder(samprate=SR, loglevel="FATAL")
    return _DEC


def recognise_all(wavs: list[np.ndarray], workers: int) -> list[str]:
    if workers <= 1:
        return [recognise(w) for w in wavs]
    with ProcessPoolExecutor(workers) as ex:
        return list(ex.map(recognise, wavs))


# --- scoring -----------------------------------------------------------------------------
def words(s: str) -> list[str]:
    return re.sub(r"[^a-z' ]", " ", s.lower()).split()


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    """Levenshtein distance over words (substitution = deletion = insertion = 1)."""
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


def wer(refs: list[str], hyps: list[str]) -> float:
    errs = sum(edit_distance(words(r), words(h)) for r, h in zip(refs, hyps))
    return 100.0 * errs / sum(len(words(r)) for r in refs)


# --- main --------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", nargs="+", default=["320:8:256", "400:8:256", "480:8:256", "320:6:256", "320:4:256"])
    ap.add_argument("--n-fft", type=int, default=1024)
    ap.add_argument("--gl-iters", type=int, default=32)
    ap.add_argument("--n-test", type=int, default=len(TEST_SENTENCES))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0, help="k-means seed")
    ap.add_argument("--no-mel-only", action="store_true", help="skip the unquantised mel -> Griffin-Lim rows")
    ap.add_argument("--show", action="store_true", help="print every hypothesis")
    args = ap.parse_args()

    from espnet2.speechlm.tokenizers.mel_rvq import MelRVQTokenizer

    tmp = Path(tempfile.mkdtemp(prefix="rt_wer_"))
    t0 = time.time()
    # test set: every sentence in both voices; clip 2i is flite, 2i+1 espeak-ng
    test_voices = ["flite:slt", "espeak:en-us"]
    sents = TEST_SENTENCES[: args.n_test]
    refs = [s for s in sents for _ in test_voices]
    test = [synthesize(s, v, tmp / f"test{i}_{j}.wav") for i, s in enumerate(sents) for j, v in enumerate(test_voices)]
    train = [
        synthesize(s, TRAIN_VOICES[(i + j) % len(TRAIN_VOICES)], tmp / f"train{i}_{j}.wav")
        for i, s in enumerate(TRAIN_SENTENCES)
        for j in range(2)
    ]
    dur_test = sum(len(w) for w in test) / SR
    dur_train = sum(len(w) for w in train) / SR
    print(f"# synthesized {len(sents)} sentences x {len(test_voices)} voices = {len(test)} test clips "
          f"({dur_test:.0f} s), {len(train)} train clips ({dur_train:.0f} s) in {time.time() - t0:.0f} s; "
          f"workdir {tmp}", flush=True)

    orig_hyps = recognise_all(test, args.workers)
    wer_orig = score(refs, orig_hyps)
    print(f"# original WER: all {wer_orig[0]:.1f}, flite slt {wer_orig[1]:.1f}, espeak-ng en-us {wer_orig[2]:.1f}",
          flush=True)

    rows = []
    header = (f"{'tokenizer':<22} {'frame_Hz':>8} {'streams':>7} {'bits/s':>6} | "
              f"{'WER_orig':>8} {'WER_rt':>6} {'delta':>6} | {'flite_orig':>10} {'flite_rt':>8} {'delta':>6} | "
              f"{'espk_orig':>9} {'espk_rt':>7} | {'enc_s':>5} {'dec_s':>5}")
    vocoded_hops = set()
    for spec in args.configs:
        hop, nq, cb = (int(v) for v in spec.split(":"))
        t1 = time.time()
        tok = MelRVQTokenizer.train(
            train, tmp / f"model_{spec.replace(':', '_')}", hop_length=hop, n_streams=nq,
            codebook_size=cb, n_fft=args.n_fft, griffin_lim_iters=args.gl_iters, seed=args.seed,
        )
        t_train = time.time() - t1
        variants = []
        if not args.no_mel_only and hop not in vocoded_hops:  # vocoder-only loss, once per hop
            vocoded_hops.add(hop)
            variants.append((f"mel only h{hop} (no VQ)", None))
        variants.append((f"mel_rvq h{hop} q{nq} c{cb}", tok))
        for name, q in variants:
            t1 = time.time()
            if q is None:
                codes = [tok.features(w) for w in test]  # unquantised normalised log-mel
            else:
                codes = tok.tokenize(test)
            enc = time.time() - t1
            t1 = time.time()
            outs = [tok.vocode(z) for z in codes] if q is None else [tok.detokenize(c) for c in codes]
            dec = time.time() - t1
            hyps = recognise_all(outs, args.workers)
            if args.show:
                for r, h0, h in zip(refs, orig_hyps, hyps):
                    print(f"  REF  {r}\n  ORIG {h0}\n  RT   {h}")
            w = score(refs, hyps)
            streams, bits = ("-", "-") if q is None else (str(nq), f"{tok.cfg.bitrate:.0f}")
            row = (f"{name:<22} {tok.frame_rate:8.1f} {streams:>7} {bits:>6} | "
                   f"{wer_orig[0]:8.1f} {w[0]:6.1f} {w[0] - wer_orig[0]:+6.1f} | "
                   f"{wer_orig[1]:10.1f} {w[1]:8.1f} {w[1] - wer_orig[1]:+6.1f} | "
                   f"{wer_orig[2]:9.1f} {w[2]:7.1f} | {enc:5.1f} {dec:5.1f}")
            rows.append(row)
            print(row, f"(train {t_train:.0f} s)" if q is not None else "", flush=True)

    print(f"\n# {len(sents)} sentences x 2 voices ({dur_test:.0f} s audio); k-means on {dur_train:.0f} s of "
          f"other sentences; n_fft {args.n_fft}, 80 mels, Griffin-Lim {args.gl_iters} iters; "
          "enc/dec = wall seconds for all clips")
    print(header)
    for r in rows:
        print(r)


def score(refs: list[str], hyps: list[str]) -> tuple[float, float, float]:
    """WER over all clips, flite clips (even), espeak-ng clips (odd)."""
    return wer(refs, hyps), wer(refs[0::2], hyps[0::2]), wer(refs[1::2], hyps[1::2])


if __name__ == "__main__":
    main()
