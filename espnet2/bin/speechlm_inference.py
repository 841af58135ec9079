"""Inference: generate targets for a test data.json and write Kaldi-style outputs.

  python -m espnet2.bin.speechlm_inference --model_dir exp/x/train/model \\
      --data_json dump/asr/test/data.json --inference_config conf/decode.yaml --out_dir exp/x/decode/asr_test

Writes `text` (text targets) or `wav.scp` + wav/ (audio targets), `token` (local ids),
and with `logprob: true` a `logprob` file (`id sum_logprob n_tokens`, teacher-forced on
the reference target) from which stage 10 computes perplexity.
The inference config maps task names to search settings (see SearchConfig), e.g.
  asr: {method: greedy, max_len_ratio: 0.5}
  tts_spkid: {method: top_k, top_k: 30, temperature: 0.9, max_len_ratio: 20}
  textlm: {logprob: true, generate: false}
A `default` entry applies to every task. A task name that is neither `default`, a built-in
task nor one of the model's, and any unknown setting, is an error (never ignored).
A hypothesis holding an id outside its target tokenizer's range is listed in `failed`.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import asdict, fields
from pathlib import Path
from typing import Dict, Iterable, List, Optional

import numpy as np
import torch
import yaml
from tqdm import tqdm

from espnet2.bin.cli import user_errors
from espnet2.speechlm.data.dataset import SpeechLMDataset, collate_feats
from espnet2.speechlm.data.prepare import TokenizerSpec, load_tokenizer
from espnet2.speechlm.inference.masking import ModalityTable
from espnet2.speechlm.inference.outputs import OutOfRangeToken, OutputWriter, target_tokens
from espnet2.speechlm.inference.search import SearchConfig
from espnet2.speechlm.tasks.template import builtin_tasks
from espnet2.speechlm.train.config import ConfigError, check_keys
from espnet2.speechlm.vocab import PAD, JointVocabulary

log = logging.getLogger("speechlm_inference")


SWITCHES = ("generate", "logprob")  # per-task keys besides SearchConfig's fields


def read_inference_config(config_path: Optional[str], known_tasks: Iterable[str] = ()) -> Dict[str, dict]:
    """The inference YAML (task -> settings), every entry checked, not only the decoded task's:
    a misspelt task name or setting would otherwise decode silently with the defaults.

    Known task names: `default`, the built-in tasks and `known_tasks` (the model's).
    """
    conf = (yaml.safe_load(Path(config_path).read_text()) if config_path else None) or {}
    if not isinstance(conf, dict):
        raise ConfigError(f"{config_path}: expected a mapping of task -> settings, got {type(conf).__name__}")
    check_keys(conf, {"default", *builtin_tasks(), *known_tasks}, source=str(config_path))
    settings = {f.name for f in fields(SearchConfig)} | set(SWITCHES)
    for task, entry in conf.items():
        if not isinstance(entry, dict):
            raise ConfigError(f"{config_path}: {task}: expected a mapping of settings, got {entry!r}")
        check_keys(entry, settings, str(task), source=str(config_path))
    return conf


def task_settings(config_path: Optional[str], task: str, overrides: dict,
                  known_tasks: Iterable[str] = ()) -> tuple[SearchConfig, bool, bool]:
    """(search config, generate?, logprob?) for a task from the inference YAML."""
    conf = read_inference_config(config_path, [task, *known_tasks])
    entry = {**conf.get("default", {}), **conf.get(task, {}), **overrides}
    generate = bool(entry.pop("generate", True))
    logprob = bool(entry.pop("logprob", False))
    return SearchConfig(**entry), generate, logprob


def find_tokenizer(name: str, info: dict, model_dir: Path):
    """Prefer tokenizers packed with the model, else the dir recorded in data.json."""
    packed = Path(model_dir) / "tokenizers"
    base = packed if (packed / name).exists() else (Path(info["dir"]).parent if info.get("dir") else None)
    return load_tokenizer(TokenizerSpec(name, info["type"], info.get("conf") or {}), base)


def load_model_and_vocab(model_dir: Path, device: str):
    from espnet2.speechlm.models import load_pretrained

    model = load_pretrained(model_dir, device=device).eval()
    vocab_path = Path(model_dir) / "vocab.json"
    if not vocab_path.exists():
        raise FileNotFoundError(f"{vocab_path} missing: a model dir carries the vocabulary it was trained with")
    return model, JointVocabulary.load(vocab_path)


def prompt_features(examples: List[dict], device) -> Optional[dict]:
    """Side features of the prompts' continuous items, example by example (None without any)."""
    if not any("feats" in e for e in examples):
        return None
    return {n: x.to(device) for n, x in collate_feats(examples)[0].items()}


def pad_prefixes(prefixes: List[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    longest = max(p.shape[0] for p in prefixes)
    batch = torch.full((len(prefixes), longest, prefixes[0].shape[1]), PAD, dtype=torch.long)
    for b, p in enumerate(prefixes):
        batch[b, : p.shape[0]] = torch.from_numpy(p)
    return batch, torch.tensor([p.shape[0] for p in prefixes])


@torch.inference_mode()
def teacher_forced_logprob(model, example: dict, vocab: JointVocabulary, device: str) -> tuple[float, int]:
    """Sum log-probability of the reference target tokens (indicators excluded) and their count."""
    seq = torch.from_numpy(example["seq"])[None].to(device)
    weight = torch.from_numpy(example["weight"])[None].to(device)
    indicators = torch.tensor(sorted(vocab.indicators.values()), device=device)
    weight[..., 0][torch.isin(seq[..., 0], indicators)] = 0.0
    weight = (weight > 0).float()  # unit weights: a plain log-likelihood
    feats = prompt_features([example], device)  # continuous items; the call is unchanged without any
    side = {"feats": feats} if feats is not None else {}
    loss, _, weight_sum = model(seq, weight, torch.tensor([seq.shape[1]], device=device), **side)
    n = int(weight_sum.item())
    return -float(loss.item()) * n, n


def run(args: argparse.Namespace) -> None:
    device = args.device
    model, vocab = load_model_and_vocab(Path(args.model_dir), device)
    dataset = SpeechLMDataset([args.data_json], vocab)
    manifest = dataset.manifests[0]
    overrides = {"nbest": args.nbest} if args.nbest else {}
    search, generate, logprob = task_settings(args.inference_config, manifest.task, overrides, vocab.tasks)
    out = OutputWriter(Path(args.out_dir), search.nbest)
    (Path(args.out_dir) / "inference.yaml").write_text(
        yaml.safe_dump({**{k: v for k, v in vars(args).items()}, "search": asdict(search),
                        "generate": generate, "logprob": logprob}))
    target = manifest.template.targets[0].tokenizer
    info = manifest.meta["tokenizers"][target]
    tokenizer = find_tokenizer(target, info, Path(args.model_dir))
    modality = ModalityTable.from_vocab(vocab, model.vocab_size, model.n_streams)
    if len(manifest.template.targets) == 1:  # the target item, then <sos/eos>: nothing else may open
        modality = modality.final_target(vocab, target)
    order = sorted(range(len(dataset)), key=lambda i: int(dataset.lengths[i]))
    if logprob:
        for i in tqdm(order, desc="logprob", unit="utt"):
            lp, n = teacher_forced_logprob(model, dataset[i], vocab, device)
            out.write_logprob(dataset.example_id(i), lp, n)
    if generate:
        bar = tqdm(total=len(order), desc=f"generate {manifest.task}", unit="utt")
        for start in range(0, len(order), args.batch_size):
            examples = [dataset.prefix(i) for i in order[start : start + args.batch_size]]
            prefix, lengths = pad_prefixes([e["prefix"] for e in examples])
            feats = prompt_features(examples, device)  # continuous items (speaker embedding, ...)
            side = {"feats": feats} if feats is not None else {}
            hyps = model.generate(prefix.to(device), lengths.to(device), search, modality, **side)
            for e, nbest in zip(examples, hyps):
                for rank, rows in enumerate(nbest):
                    write_hypothesis(out, e["id"], rank, rows.cpu().numpy(), vocab, target, tokenizer)
            bar.update(len(examples))
        bar.close()
    out.close()
    log.info("wrote %s", args.out_dir)


def write_hypothesis(out: OutputWriter, example_id: str, rank: int, rows: np.ndarray, vocab, target, tokenizer):
    """One hypothesis to the outputs; one with an out-of-range id is listed in `failed`, never altered."""
    try:
        tokens = target_tokens(vocab, target, rows)
    except OutOfRangeToken as e:
        which = "" if rank == 0 else f"nbest {rank + 1}, "
        reason = f"out-of-range token ({which}{e})"
        log.warning("%s: %s", example_id, reason)
        out.write_failure(example_id, reason)
        return
    if tokens.shape[0] == 0:
        out.write_failure(example_id, "empty hypothesis")
        decoded = "" if tokenizer.sample_rate is None else None
    else:
        try:
            decoded = tokenizer.detokenize(tokens)
        except NotImplementedError:
            decoded = None
        except ValueError as e:  # e.g. a codec id its codec cannot decode: this utterance fails, not the set
            log.warning("%s: detokenize failed: %s", example_id, e)
            out.write_failure(example_id, f"detokenize failed ({e})")
            return
    out.write(example_id, rank, decoded, tokenizer.sample_rate, tokens)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model_dir", required=True, help="exported model dir (config.json, model.safetensors, vocab.json)")
    p.add_argument("--data_json", required=True, help="test data.json")
    p.add_argument("--inference_config", default=None, help="YAML: task -> search settings")
    p.add_argument("--out_dir", required=True)
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--nbest", type=int, default=None, help="overrides the config's nbest")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return p


@user_errors("speechlm_inference")
def main(argv: Optional[List[str]] = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run(get_parser().parse_args(argv))


if __name__ == "__main__":
    main()
