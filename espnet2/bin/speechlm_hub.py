#!/usr/bin/env python3
"""Pack, upload and download speech-LM models and tokenized datasets.

Examples:
    python -m espnet2.bin.speechlm_hub pack --model_dir exp/m/train/model \\
        --results_md exp/m/RESULTS.md --out_dir packed/m
    python -m espnet2.bin.speechlm_hub pack --config exp/m/config.yaml \\
        --model_file exp/m/valid.acc.best.pth --vocab_files data/vocab.json \\
        --results_md exp/m/RESULTS.md --tasks asr tts --out_dir packed/m
    python -m espnet2.bin.speechlm_hub upload packed/m my-org/my-speechlm
    python -m espnet2.bin.speechlm_hub download my-org/my-speechlm --out_dir ./m
    python -m espnet2.bin.speechlm_hub upload_dataset dump/tokenized/train my-org/data
    python -m espnet2.bin.speechlm_hub download_dataset my-org/data --out_dir ./data

Credentials come only from HF_TOKEN or `huggingface-cli login`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import List, Optional

from espnet2.bin.cli import user_errors


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Share speech-LM models and datasets via the Hugging Face Hub.")
    sub = p.add_subparsers(dest="command", required=True)

    pk = sub.add_parser("pack", help="pack an experiment into a self-describing model folder")
    pk.add_argument("--out_dir", type=Path, required=True)
    pk.add_argument("--model_dir", type=Path, default=None, help="exported model dir (config.json, model.safetensors, vocab.json): copied as is")
    pk.add_argument("--config", type=Path, default=None, help="training config (.yaml or .json); with --model_file instead of --model_dir")
    pk.add_argument("--model_file", type=Path, default=None, help=".pth state dict or .safetensors")
    pk.add_argument("--vocab_files", type=Path, nargs="*", default=[])
    pk.add_argument("--tokenizer_dirs", type=Path, nargs="*", default=[])
    pk.add_argument("--task_templates", type=Path, nargs="*", default=[])
    pk.add_argument("--extra_files", type=Path, nargs="*", default=[])
    pk.add_argument("--results_md", type=Path, default=None)
    pk.add_argument("--name", default=None)
    pk.add_argument("--tasks", nargs="*", default=[])
    pk.add_argument("--datasets", nargs="*", default=[], help="training data names for the model card")
    pk.add_argument("--license", default=None)
    pk.add_argument("--description", default=None)
    pk.add_argument("--repo_id", default=None, help="future Hub id, shown in the model card")
    pk.add_argument("--overwrite", action="store_true")

    pd = sub.add_parser("pack_dataset", help="pack tokenized data.json folders + vocabulary into one folder")
    pd.add_argument("--data_json", type=Path, nargs="+", required=True)
    pd.add_argument("--vocab_dir", type=Path, default=None)
    pd.add_argument("--out_dir", type=Path, required=True)

    for cmd, kind in (("upload", "model"), ("upload_dataset", "dataset")):
        up = sub.add_parser(cmd, help=f"upload a {kind} folder")
        up.add_argument("local_dir", type=Path)
        up.add_argument("repo_id")
        up.add_argument("--private", action="store_true")
        up.add_argument("--commit_message", default=None)

    for cmd, kind in (("download", "model"), ("download_dataset", "dataset")):
        dl = sub.add_parser(cmd, help=f"fetch a {kind} (a local folder is used as is)")
        dl.add_argument("repo_id_or_local_dir")
        dl.add_argument("--out_dir", type=Path, default=None)
        dl.add_argument("--revision", default=None)
        dl.add_argument("--local_files_only", action="store_true", help="never contact the Hub")
    return p


@user_errors("speechlm_hub", extra=(RuntimeError, FileExistsError))  # hub failures are the user's to fix
def main(argv: Optional[List[str]] = None) -> int:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    from espnet2.speechlm import hub

    if args.command == "pack" and args.model_dir is not None:
        out = hub.pack_model_dir(
            args.model_dir, args.out_dir, args.results_md, args.name, args.tasks, args.datasets,
            args.license, args.description, args.repo_id, args.overwrite,
        )
    elif args.command == "pack":
        if args.config is None or args.model_file is None:
            logging.error("pack needs --model_dir, or --config and --model_file")
            return 2
        out = hub.pack_model(
            args.out_dir, args.config, args.model_file, args.vocab_files, args.tokenizer_dirs,
            args.task_templates, args.results_md, args.extra_files, args.name, args.tasks,
            args.datasets, args.license, args.description, args.repo_id, args.overwrite,
        )
    elif args.command == "pack_dataset":
        from espnet2.speechlm.hub.dataset import pack_dataset

        out = pack_dataset(args.data_json, args.out_dir, args.vocab_dir)
    elif args.command in ("upload", "upload_dataset"):
        fn = hub.upload_folder if args.command == "upload" else hub.upload_dataset
        out = fn(args.local_dir, args.repo_id, private=args.private, commit_message=args.commit_message)
    else:
        fn = hub.download_model if args.command == "download" else hub.download_dataset
        out = fn(args.repo_id_or_local_dir, revision=args.revision, out_dir=args.out_dir, local_files_only=args.local_files_only)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
