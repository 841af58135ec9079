#!/usr/bin/env python3
"""Score speech-LM inference outputs with a VERSA-style YAML config.

Example:
    python -m espnet2.bin.speechlm_score \\
        --score_config conf/score/tts.yaml \\
        --hyp_dir exp/speechlm_x/decode/tts_test --ref_dir dump/raw/test \\
        --task tts --out_dir exp/speechlm_x/decode/tts_test/score --nj 4

Writes utt2<metric> files, missing.txt and summary.json to --out_dir and
updates the RESULTS.md table (default: next to the decode dir).

Subcommands for the resynthesis topline of a TTS-like task (see
espnet2/speechlm/evaluation/resynth.py; each has --help):

    python -m espnet2.bin.speechlm_score resynth --data_json dump/tts/test/data.json \
        --cache_dir dump/resynth                      # encode + decode the references (cached)
    python -m espnet2.bin.speechlm_score topline --score_config conf/score/tts.yaml \
        --data_json dump/tts/test/data.json --ref_dir dump/audio/test --task tts \
        --cache_dir dump/resynth --results_md exp/x/RESULTS.md   # + score it: row "tts (resynthesis topline)"
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import List, Optional

from espnet2.bin.cli import user_errors


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Score speech-LM inference outputs (Kaldi-style text / wav.scp / logprob).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        epilog="subcommands: `resynth` and `topline` (the resynthesis topline of a TTS task; "
        "`python -m espnet2.bin.speechlm_score resynth --help`)",
    )
    p.add_argument("--score_config", type=Path, required=True, help="YAML list of {name: metric, hyp: file, ref: file, ...options}")
    p.add_argument("--hyp_dir", type=Path, required=True, help="decode dir holding text / wav.scp / logprob")
    p.add_argument("--ref_dir", type=Path, default=None, help="reference data dir (text, wav.scp, utt2spk); defines the utterance list")
    p.add_argument("--task", type=str, required=True, help="task name, used as the RESULTS.md row label")
    p.add_argument("--out_dir", type=Path, default=None, help="where scores go (default: <hyp_dir>/score)")
    p.add_argument("--test_set", type=str, default=None, help="test-set label (default: basename of --ref_dir)")
    p.add_argument("--results_md", type=Path, default=None, help="RESULTS.md to update (default: <hyp_dir>/../RESULTS.md)")
    p.add_argument("--no_results_md", action="store_true", help="do not touch RESULTS.md")
    p.add_argument("--nj", type=int, default=1, help="worker processes scoring utterances in parallel; each loads the metrics' models once; results equal --nj 1")
    p.add_argument("--no_progress", action="store_true", help="disable the tqdm progress bar")
    p.add_argument("--list_metrics", action="store_true", help="print the available metrics and exit")
    p.add_argument("--log_level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p


def _resynth_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data_json", type=Path, required=True, help="the task's test data.json (names its target tokenizer and data dir)")
    p.add_argument("--cache_dir", type=Path, required=True, help="where resynthesized references are kept, by fingerprint (e.g. dump/resynth)")
    p.add_argument("--ref_dir", type=Path, default=None, help="reference data dir; None: the data.json's data dir")
    p.add_argument("--tokenizer_dir", type=Path, default=None, help="folder of trained tokenizers; None: the one recorded in data.json")
    p.add_argument("--overwrite", action="store_true", help="redo even when cached")
    p.add_argument("--no_progress", action="store_true", help="disable the tqdm progress bar")
    p.add_argument("--log_level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])


def get_resynth_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m espnet2.bin.speechlm_score resynth",
        description="Push the references of an audio-target task through its trained audio tokenizer "
        "(encode, then decode) into <cache_dir>/<tokenizer>_<fingerprint>/ (wav.scp + wav/); "
        "a re-run with the same tokenizer and references reuses it. Prints that folder.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _resynth_args(p)
    return p


def get_topline_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m espnet2.bin.speechlm_score topline",
        description="Resynthesis topline of a task whose target is codec audio and whose score config has "
        "tts_wer: resynthesize the references (cached), score them with the same config (cached) and "
        "write the RESULTS.md row '<task> (resynthesis topline)', right after the model's row. "
        "Other tasks: does nothing.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _resynth_args(p)
    p.add_argument("--score_config", type=Path, required=True, help="the task's score config (the model's)")
    p.add_argument("--task", type=str, required=True, help="task name; the row is '<task> (resynthesis topline)'")
    p.add_argument("--test_set", type=str, default=None, help="test-set label (default: basename of --ref_dir)")
    p.add_argument("--results_md", type=Path, default=None, help="RESULTS.md to update (none: only print)")
    p.add_argument("--nj", type=int, default=1, help="scoring worker processes")
    return p


def resynth_main(argv: List[str]) -> int:
    args = get_resynth_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(message)s")
    from espnet2.speechlm.evaluation.resynth import resynthesize

    out = resynthesize(args.data_json, args.cache_dir, ref_dir=args.ref_dir, tokenizer_dir=args.tokenizer_dir,
                       overwrite=args.overwrite, progress=not args.no_progress)
    print(out)
    return 0


def topline_main(argv: List[str]) -> int:
    args = get_topline_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(message)s")
    from espnet2.speechlm.evaluation.resynth import score_topline
    from espnet2.speechlm.evaluation.scorer import load_score_config

    ref_dir = args.ref_dir
    if ref_dir is None:
        from espnet2.speechlm.evaluation.resynth import audio_target

        target = audio_target(args.data_json)
        ref_dir = target.data_dir if target is not None else None
    if ref_dir is None:
        logging.info("%s: no resynthesis topline (its target is not audio from an audio tokenizer)", args.task)
        return 0
    summary = score_topline(
        load_score_config(args.score_config), args.data_json, ref_dir, args.cache_dir, task=args.task,
        test_set=args.test_set, results_md=args.results_md, tokenizer_dir=args.tokenizer_dir, nj=args.nj,
        overwrite=args.overwrite, progress=not args.no_progress,
    )
    if summary is not None:
        print(json.dumps({"task": summary["task"], "scores": summary["scores"], "n_scored": summary["n_scored"],
                          "n_total": summary["n_total"]}, indent=2))
    return 0


SUBCOMMANDS = {"resynth": resynth_main, "topline": topline_main}


@user_errors("speechlm_score")
def main(argv: Optional[List[str]] = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv and argv[0] in SUBCOMMANDS:
        return SUBCOMMANDS[argv[0]](argv[1:])
    if "--list_metrics" in argv:
        from espnet2.speechlm.evaluation import METRICS

        print("\n".join(METRICS.names()))
        return 0
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(message)s")

    from espnet2.speechlm.evaluation.scorer import load_score_config, score_dirs

    out_dir = args.out_dir or args.hyp_dir / "score"
    results_md = None if args.no_results_md else (args.results_md or args.hyp_dir.parent / "RESULTS.md")
    summary = score_dirs(
        load_score_config(args.score_config), args.hyp_dir, args.ref_dir, out_dir,
        task=args.task, test_set=args.test_set, results_md=results_md, progress=not args.no_progress,
        nj=args.nj,
    )
    print(json.dumps({"scores": summary["scores"], "n_scored": summary["n_scored"], "n_total": summary["n_total"]}, indent=2))
    if summary["missing_hypotheses"]:
        logging.warning(
            "%d of %d utterances have no readable hypothesis; see %s",
            len(summary["missing_hypotheses"]), summary["n_total"], out_dir / "missing.txt",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
