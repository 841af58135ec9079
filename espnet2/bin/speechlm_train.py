#!/usr/bin/env python3
"""Train a speech LM with DeepSpeed (CPU processes or GPUs).

Examples::

    # one CPU process (a 1-rank gloo group; same code path as multi-GPU)
    python -m espnet2.bin.speechlm_train --ngpu 0 --train_config conf/train.yaml \\
        --train_data_json dump/asr/train/data.json dump/tts/train/data.json:0.5 \\
        --valid_data_json dump/asr/dev/data.json --vocab dump/vocab --output_dir exp/lm

    # two CPU processes / four GPUs on this machine (relaunches itself with torchrun)
    python -m espnet2.bin.speechlm_train --ngpu 0 --num_procs 2 ...
    python -m espnet2.bin.speechlm_train --ngpu 4 ...

    # several machines (DeepSpeed hostfile: "node1 slots=8" per line); run on the first one
    python -m espnet2.bin.speechlm_train --ngpu 8 --hostfile hostfile --master_port 29500 ...
    # or the same command on every machine (e.g. srun), torchrun per node
    python -m espnet2.bin.speechlm_train --ngpu 8 --hostfile hostfile --launcher torchrun --node_rank $SLURM_NODEID ...

    # preference optimisation: pairs prepared with a chosen + rejected template (data/pairs.py)
    python -m espnet2.bin.speechlm_train --set train.objective=dpo --set train.init=exp/lm/model \
        --train_data_json dump/tts_pref/train/data.json ...

A run continues from ``output_dir/checkpoints/latest`` when one exists (``--resume false``
refuses to touch such a directory). At the end ``output_dir/model/`` holds the inference
model (average of the best checkpoints), loadable with
``espnet2.speechlm.models.load_pretrained`` and no DeepSpeed.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import yaml

from espnet2.bin.cli import user_errors

log = logging.getLogger("speechlm_train")


def str2bool(value: str) -> bool:
    v = value.lower()
    if v in ("true", "1", "yes", "y"):
        return True
    if v in ("false", "0", "no", "n"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {value!r}")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train_config", type=Path, default=None, help="YAML training config (defaults when omitted)")
    p.add_argument("--train_data_json", nargs="+", required=True, metavar="PATH[:RATIO]",
                   help="training data.json files; RATIO = times the source is repeated per epoch (default 1)")
    p.add_argument("--valid_data_json", nargs="*", default=[], metavar="PATH", help="validation data.json files")
    p.add_argument("--vocab", type=Path, required=True, help="vocab.json or the folder holding it")
    p.add_argument("--output_dir", type=Path, required=True)
    p.add_argument("--ngpu", type=int, default=0, help="GPUs per machine; 0 trains on CPU processes")
    p.add_argument("--num_procs", type=int, default=1, help="CPU processes when --ngpu 0 (default 1)")
    p.add_argument("--resume", type=str2bool, default=True, help="continue from the latest checkpoint (default true)")
    p.add_argument("--seed", type=int, default=None, help="overrides run.seed")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config entry, e.g. --set run.max_steps=100 (value parsed as YAML)")
    p.add_argument("--no_export", action="store_true", help="skip writing output_dir/model at the end")
    g = p.add_argument_group("several machines")
    g.add_argument("--hostfile", type=Path, default=None,
                   help="DeepSpeed hostfile ('HOST slots=N' per line): train on every host listed")
    g.add_argument("--launcher", choices=["deepspeed", "torchrun"], default="deepspeed",
                   help="deepspeed: run once, ssh (pdsh) starts every host; torchrun: run on every host")
    g.add_argument("--master_addr", default=None, help="rendezvous host (default: the hostfile's first host)")
    g.add_argument("--master_port", type=int, default=29500)
    g.add_argument("--node_rank", type=int, default=None,
                   help="this host's index in the hostfile (--launcher torchrun; default $NODE_RANK / $SLURM_NODEID)")
    return p


def parse_overrides(items: List[str], seed: Optional[int]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set expects KEY=VALUE, got {item!r}")
        out[key] = yaml.safe_load(value)
    if seed is not None:
        out["run.seed"] = seed
    return out


def vocab_json_path(vocab: Path) -> Path:
    return vocab / "vocab.json" if vocab.is_dir() else vocab


def build_data(args_jsons: List[str], vocab, cfg, shuffle: bool, valid: bool):
    from espnet2.speechlm.data.dataset import (
        SpeechLMDataset, TokenBatchSampler, collate, parse_data_arg, sampling_ratios,
    )
    from espnet2.speechlm.data.pairs import PreferenceDataset, collate_pairs
    from espnet2.speechlm.train import distributed as D
    from espnet2.speechlm.train.trainer import DataBundle

    pairs = [parse_data_arg(a) for a in args_jsons]
    paths = [p for p, _ in pairs]
    check_loss_weights(cfg.data.loss_weights, vocab)
    loss_weights = cfg.data.loss_weights or None
    dpo = cfg.train.objective == "dpo"  # preference pairs (chosen + rejected targets) instead of sequences
    dataset = (PreferenceDataset if dpo else SpeechLMDataset)(paths, vocab, loss_weights=loss_weights,
                                                              max_len=cfg.data.max_len)
    tasks = [m.task for m in dataset.manifests]
    ratios = [1.0] * len(paths) if valid else sampling_ratios(tasks, [r for _, r in pairs], cfg.data.task_ratios)
    batch_tokens = (cfg.data.valid_batch_tokens or cfg.data.batch_tokens) if valid else cfg.data.batch_tokens
    warmup_sources = [] if valid else curriculum_sources(tasks, cfg)
    sampler = TokenBatchSampler(dataset.lengths, dataset.sources, ratios, batch_tokens, seed=cfg.run.seed,
                                shuffle=shuffle, num_replicas=D.world_size(), rank=D.rank(),
                                every_batch=valid,  # validation scores every example once
                                warmup_sources=warmup_sources,
                                warmup_batches=cfg.data.curriculum_steps * cfg.run.grad_accum if warmup_sources else 0)
    return DataBundle(dataset, sampler, collate_pairs if dpo else collate)


def curriculum_sources(tasks: List[str], cfg) -> List[int]:
    """Indices of the training data.json files that data.curriculum_tasks names (checked)."""
    from espnet2.speechlm.train.config import ConfigError

    names, steps = list(cfg.data.curriculum_tasks), int(cfg.data.curriculum_steps)
    if not names and not steps:
        return []
    if not names or steps <= 0:
        raise ConfigError(f"data.curriculum_tasks ({names}) and data.curriculum_steps ({steps}) go together: "
                          "set both (tasks and a positive step count) or neither")
    unknown = sorted(set(names) - set(tasks))
    if unknown:
        raise ConfigError(f"data.curriculum_tasks names tasks {unknown} that no training data.json holds "
                          f"(tasks: {sorted(set(tasks))})")
    return [i for i, t in enumerate(tasks) if t in names]


def check_loss_weights(loss_weights: Dict[str, Any], vocab) -> None:
    """data.loss_weights names tokenizers of the vocabulary, with one weight or one per stream:
    a misspelt name would otherwise train that tokenizer with weight 1.0."""
    from espnet2.speechlm.data.assemble import stream_weights
    from espnet2.speechlm.train.config import ConfigError, check_keys

    check_keys(loss_weights, [r.name for r in vocab.ranges], "data.loss_weights")
    for name in loss_weights:
        try:
            stream_weights(loss_weights, name, vocab.range(name).n_streams)
        except ValueError as e:
            raise ConfigError(f"data.loss_weights.{name}: {e}") from None


def check_body_conf(body: str, body_conf: Dict[str, Any]) -> None:
    """model.body_conf keys must be fields of the body's config (not a bare TypeError later)."""
    from dataclasses import fields, is_dataclass

    from espnet2.speechlm.models import BODIES
    from espnet2.speechlm.train.config import check_keys

    config_class = getattr(BODIES.get(body), "config_class", None)
    if is_dataclass(config_class):  # a user's body may take anything: it then checks for itself
        check_keys(body_conf, [f.name for f in fields(config_class)], "model.body_conf")


def data_embed_dims(dataset) -> Dict[str, int]:
    """Feature size of every continuous item of the training data (data.json `embed_dim`)."""
    dims: Dict[str, int] = {}
    for m in dataset.manifests:
        for name, dim in m.embed_dims.items():
            if dims.setdefault(name, dim) != dim:
                raise ValueError(f"{m.path}: continuous item {name!r} has embed_dim {dim}, "
                                 f"another data.json gives {dims[name]}")
    return dims


def build_model(cfg, vocab, embed_dims: Optional[Dict[str, int]] = None):
    """embed_dims: continuous items' feature sizes from the data, used where the config gives none."""
    from espnet2.speechlm.models import build_speechlm, vocab_build_args

    m = cfg.model
    check_body_conf(m.body, m.body_conf)
    arch_conf = dict(m.arch_conf)
    if embed_dims:
        given = dict(arch_conf.get("continuous") or {})
        for name, dim in embed_dims.items():
            if given.setdefault(name, dim) != dim:
                raise ValueError(f"model.arch_conf.continuous.{name} = {given[name]}, but the data's "
                                 f"features have embed_dim {dim}")
        arch_conf["continuous"] = given
    for option, key in (("guided_attention", "source_ranges"), ("history_dropout", "ranges")):
        if arch_conf.get(option):
            arch_conf[option] = tokenizer_id_ranges(arch_conf[option], vocab, f"model.arch_conf.{option}", key)
    if "head_ranges" in m.arch_conf and not m.restrict_heads:
        raise ValueError("model.restrict_heads is false but model.arch_conf.head_ranges is set: "
                         "drop head_ranges for full heads, or keep restrict_heads (explicit ranges win)")
    from_vocab = vocab_build_args(vocab, m.text_tokenizer, m.restrict_heads and "head_ranges" not in m.arch_conf)
    return build_speechlm(m.arch, m.body, dict(m.body_conf), vocab.size, vocab.max_streams, **from_vocab,
                          **arch_conf)


def tokenizer_id_ranges(conf: Dict[str, Any], vocab, where: str, key: str) -> Dict[str, Any]:
    """An option that names tokenizers (`tokenizers: [phn]`) gets their id ranges under `key`
    (guided_attention.source_ranges, history_dropout.ranges): the model knows ids, not names."""
    from espnet2.speechlm.train.config import ConfigError

    conf = dict(conf)
    names = conf.pop("tokenizers", None)
    if names is None:
        return conf
    known = [r.name for r in vocab.ranges]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(f"{where}.tokenizers: {unknown} are not tokenizers of the vocabulary ({known})")
    conf[key] = [[vocab.range(n).offset, vocab.range(n).offset + vocab.range(n).size] for n in names]
    return conf


def model_assets(dataset, output_dir: Path) -> Dict[str, Path]:
    """Tokenizer dirs, tokenizer settings and task templates of the training data, to ship
    inside the model folder. `tokenizers.yaml` records every tokenizer's type and conf, also
    of those with nothing trained (a speaker embedder's settings), so new data can be
    prepared as the model's was."""
    assets: Dict[str, Path] = {}
    settings: Dict[str, Dict[str, Any]] = {}
    tdir = Path(output_dir) / "templates"
    tdir.mkdir(parents=True, exist_ok=True)
    for m in dataset.manifests:
        for name, info in m.meta["tokenizers"].items():
            settings[name] = {"type": info["type"], "conf": info.get("conf") or {}}
            if info.get("dir") and Path(info["dir"]).is_dir():
                assets[f"tokenizers/{name}"] = Path(info["dir"])
        path = tdir / f"{m.task}.yaml"
        template = getattr(m, "lm_template", m.template)  # preference data: the task without rejected items
        path.write_text(yaml.safe_dump(template.to_dict(), sort_keys=False))
        assets[f"templates/{m.task}.yaml"] = path
    record = Path(output_dir) / "tokenizers.yaml"
    record.write_text("# The tokenizers this model's training data was prepared with (type and conf)\n"
                      + yaml.safe_dump(settings, sort_keys=True))
    assets["tokenizers.yaml"] = record
    return assets


def train(args: argparse.Namespace) -> Dict[str, Any]:
    """Runs on every rank inside an initialised process group."""
    from espnet2.speechlm.train import distributed as D
    from espnet2.speechlm.train.config import load_config, to_dict
    from espnet2.speechlm.train.export import export_model, select_weights
    from espnet2.speechlm.train.trainer import Trainer
    from espnet2.speechlm.vocab import JointVocabulary

    cfg = load_config(args.train_config, parse_overrides(args.overrides, args.seed))
    D.seed_everything(cfg.run.seed)
    vocab = JointVocabulary.load(args.vocab)
    train_data = build_data(args.train_data_json, vocab, cfg, shuffle=True, valid=False)
    valid_data = build_data(args.valid_data_json, vocab, cfg, shuffle=False, valid=True) if args.valid_data_json else None
    embed_dims = data_embed_dims(train_data.dataset)
    model = build_model(cfg, vocab, embed_dims)
    if D.is_main():
        n = sum(p.numel() for p in model.parameters())
        log.info("model %s/%s: %.2fM parameters; %d train / %s valid examples; world size %d",
                 cfg.model.arch, cfg.model.body, n / 1e6, len(train_data.dataset),
                 len(valid_data.dataset) if valid_data else 0, D.world_size())
    trainer = Trainer(cfg, model, train_data, args.output_dir, valid=valid_data, use_cuda=args.ngpu > 0)
    summary = trainer.fit(resume=args.resume)
    D.barrier()
    if D.is_main() and not args.no_export:
        state, used = select_weights(trainer.ckpt, cfg.run.keep_best_k)
        out = export_model(args.output_dir / "model", lambda: build_model(cfg, vocab, embed_dims), state,
                           vocab_json_path(args.vocab), extra={"averaged_checkpoints": used, "train_config": to_dict(cfg)},
                           assets=model_assets(train_data.dataset, args.output_dir))
        summary["exported"] = str(out)
        log.info("exported %s (average of %s)", out, ", ".join(used))
    D.barrier()
    return summary


@user_errors("speechlm_train")
def main(argv: Optional[List[str]] = None) -> int:
    args = get_parser().parse_args(argv)
    from espnet2.speechlm.train import distributed as D
    from espnet2.speechlm.train.config import load_config

    load_config(args.train_config, parse_overrides(args.overrides, args.seed))  # fail fast, before any launch
    use_cuda = args.ngpu > 0
    nproc = args.ngpu if use_cuda else args.num_procs
    if args.hostfile is not None and not D.launched_by_launcher():
        from espnet2.speechlm.train.launch import launch_multi_node, multi_node_command, parse_hostfile

        cmd = multi_node_command(args.launcher, args.hostfile, "espnet2.bin.speechlm_train",
                                 list(argv if argv is not None else sys.argv[1:]), args.master_addr,
                                 args.master_port, args.node_rank)
        print("launching: " + " ".join(cmd), file=sys.stderr, flush=True)
        return launch_multi_node(cmd, use_cuda, max(parse_hostfile(args.hostfile).values()))
    if nproc > 1 and not D.launched_by_launcher():
        from espnet2.speechlm.train.launch import launch

        return launch(nproc, "espnet2.bin.speechlm_train", list(argv if argv is not None else sys.argv[1:]), use_cuda)
    D.init_distributed(use_cuda)
    logging.basicConfig(
        level=logging.INFO if D.is_main() else logging.WARNING,
        format=f"%(asctime)s [rank{D.rank()}] %(levelname)s %(name)s: %(message)s",
    )
    summary = train(args)
    if D.is_main():
        log.info("done: %s", summary)
    return 0


if __name__ == "__main__":
    code = 1
    try:
        code = main()
    except SystemExit as e:  # argparse / usage errors
        code = e.code if isinstance(e.code, int) else 1
        if not isinstance(e.code, int) and e.code is not None:
            print(e.code, file=sys.stderr)
    except Exception:
        logging.getLogger("speechlm_train").exception("training failed")
        code = 1
    finally:
        from espnet2.speechlm.train.distributed import clean_exit

        clean_exit(code)
