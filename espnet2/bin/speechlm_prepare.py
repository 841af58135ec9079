"""Data preparation stages: tokenizer training (3), tokenization (5), vocabulary (6), statistics (7).

Examples:
  python -m espnet2.bin.speechlm_prepare train_tokenizers --data_dir dump/audio/train \\
      --tasks asr tts --tokenizer_config conf/tokenizers.yaml --tokenizer_dir exp/tokenizers
  python -m espnet2.bin.speechlm_prepare tokenize --data_dir dump/audio/train --task asr \\
      --tokenizer_config conf/tokenizers.yaml --tokenizer_dir exp/tokenizers --out_dir dump/asr/train --nj 2
  python -m espnet2.bin.speechlm_prepare vocab --data_json dump/*/train/data.json --out_dir dump/vocab
  python -m espnet2.bin.speechlm_prepare stats --data_json dump/*/train/data.json
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import List, Optional

import yaml

from espnet2.speechlm.data import prepare as prep
from espnet2.speechlm.data.stats import build_vocab, length_stats
from espnet2.speechlm.tasks.template import load_template


def _templates(names: List[str], task_dirs: List[str]):
    return [load_template(n, [Path(d) for d in task_dirs]) for n in names]


def cmd_train_tokenizers(a: argparse.Namespace) -> None:
    specs = prep.load_tokenizer_config(a.tokenizer_config)
    trained = prep.train_tokenizers(Path(a.data_dir), _templates(a.tasks, a.task_dir), specs,
                                    Path(a.tokenizer_dir), max_items=a.max_items, seed=a.seed)
    print(f"trained tokenizers: {trained or 'none needed'}")


def cmd_tokenize(a: argparse.Namespace) -> None:
    template = _templates([a.task], a.task_dir)[0]
    job = prep.PrepareJob(Path(a.data_dir), template, prep.load_tokenizer_config(a.tokenizer_config),
                          Path(a.tokenizer_dir), Path(a.out_dir), a.shard_size, a.batch_size,
                          a.max_seconds, a.max_frames)
    Path(a.out_dir).mkdir(parents=True, exist_ok=True)
    (Path(a.out_dir) / "prepare.yaml").write_text(yaml.safe_dump({k: v for k, v in vars(a).items() if k != "func"}))
    if a.job_index is not None:  # one job of a --cmd array: only its shards, no merge
        shards, _, tables = prep.plan(job)
        mine = [k for k in range(len(shards)) if k % a.num_jobs == a.job_index]
        prep.run_shards(job, shards, tables, nj=1, only=mine)
        return
    m = prep.prepare(job, nj=a.nj)
    print(f"{a.out_dir}/data.json: {m['num_examples']} examples, {m['num_skipped']} skipped "
          f"(see {a.out_dir}/skipped.txt)")


def cmd_vocab(a: argparse.Namespace) -> None:
    vocab = build_vocab([Path(p) for p in a.data_json], Path(a.out_dir))
    print(f"{a.out_dir}/vocab.json: {vocab.size} tokens, {len(vocab.tasks)} tasks, "
          f"tokenizers {[r.name for r in vocab.ranges]}")


def cmd_stats(a: argparse.Namespace) -> None:
    for p in a.data_json:
        print(json.dumps(length_stats(Path(p))))


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data_dir", required=True, help="Kaldi-style data dir (after stage 2)")
        p.add_argument("--tokenizer_config", required=True, help="YAML: name -> {type, conf}")
        p.add_argument("--tokenizer_dir", required=True, help="where trained tokenizers live")
        p.add_argument("--task_dir", nargs="*", default=[], help="dirs with user task templates (YAML)")

    p = sub.add_parser("train_tokenizers", help="stage 3: fit trainable tokenizers")
    common(p)
    p.add_argument("--tasks", nargs="+", required=True, help="task names or template YAML paths")
    p.add_argument("--max_items", type=int, default=2000, help="items sampled per tokenizer")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_train_tokenizers)

    p = sub.add_parser("tokenize", help="stage 5: tokenize a data dir into data.json + shards")
    common(p)
    p.add_argument("--task", required=True, help="task name or template YAML path")
    p.add_argument("--out_dir", required=True)
    p.add_argument("--nj", type=int, default=1, help="parallel processes (one shard each)")
    p.add_argument("--shard_size", type=int, default=1000, help="examples per shard")
    p.add_argument("--batch_size", type=int, default=16, help="items per tokenizer call")
    p.add_argument("--max_seconds", type=float, default=None, help="skip longer audio")
    p.add_argument("--max_frames", type=int, default=None, help="skip items with more frames")
    p.add_argument("--job_index", type=int, default=None, help="with --num_jobs: run one job's shards only")
    p.add_argument("--num_jobs", type=int, default=1)
    p.set_defaults(func=cmd_tokenize)

    p = sub.add_parser("vocab", help="stage 6: build or extend the joint vocabulary")
    p.add_argument("--data_json", nargs="+", required=True)
    p.add_argument("--out_dir", required=True)
    p.set_defaults(func=cmd_vocab)

    p = sub.add_parser("stats", help="stage 7: length statistics (lengths.txt, stats.json)")
    p.add_argument("--data_json", nargs="+", required=True)
    p.set_defaults(func=cmd_stats)
    return parser


def main(argv: Optional[List[str]] = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = get_parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, KeyError, FileNotFoundError, RuntimeError) as e:
        logging.getLogger("speechlm_prepare").error("%s", e)
        sys.exit(1)


if __name__ == "__main__":
    main()
