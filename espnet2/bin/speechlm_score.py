#!/usr/bin/env python3
"""Score speech-LM inference outputs with a VERSA-style YAML config.

Example:
    python -m espnet2.bin.speechlm_score \\
        --score_config conf/score/tts.yaml \\
        --hyp_dir exp/speechlm_x/decode/tts_test --ref_dir dump/raw/test \\
        --task tts --out_dir exp/speechlm_x/decode/tts_test/score --nj 4

Writes utt2<metric> files, missing.txt and summary.json to --out_dir and
updates the RESULTS.md table (default: next to the decode dir).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import List, Optional


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Score speech-LM inference outputs (Kaldi-style text / wav.scp / logprob).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
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


def main(argv: Optional[List[str]] = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
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
