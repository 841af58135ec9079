"""Train a tiny model on toy data with the real Trainer (run as a subprocess by the tests).

usage: run_toy.py OUTPUT_DIR ['{"run.max_steps": 6, ...}'] [--runs JSON] [--no-resume] [--sleep SECONDS]

Uses the real TokenBatchSampler / collate and (by default) the real builtin model with
dropout, on ToyDataset. Prints "RESULT {json}" (run name -> summary) on rank 0.
"""

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(1, str(Path(__file__).parent))

import torch  # noqa: E402

from espnet2.speechlm.train import distributed as D  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("output_dir")
    p.add_argument("overrides", nargs="?", default="{}", help="config overrides of a single run")
    p.add_argument("--runs", default=None,
                   help='JSON list of {"name", "overrides", "model": builtin|toy, "nan_calls": [..]}, '
                        "trained one after another in this process, each in OUTPUT_DIR/<name>")
    p.add_argument("--no-resume", action="store_true")
    p.add_argument("--sleep", type=float, default=0.0, help="pause after every optimizer step")
    args = p.parse_args()
    D.init_distributed(use_cuda=False)
    torch.set_num_threads(1)
    runs = json.loads(args.runs) if args.runs else [{"name": "", "overrides": json.loads(args.overrides)}]
    results = {}
    for run in runs:
        try:
            results[run["name"]] = train_one(Path(args.output_dir) / run["name"], run, not args.no_resume, args.sleep)
        except Exception as e:  # reported, so one process can check several failure modes
            if len(runs) == 1:
                raise
            results[run["name"]] = {"error": f"{type(e).__name__}: {e}"}
    if D.is_main():
        print("RESULT " + json.dumps(results), flush=True)
    D.clean_exit(0)


def train_one(out: Path, run: dict, resume: bool, sleep: float) -> dict:
    from toy import NQ, VOCAB, ToyDataset, ToyLM, ToyPairDataset

    from espnet2.speechlm.data.dataset import TokenBatchSampler, collate
    from espnet2.speechlm.data.pairs import collate_pairs
    from espnet2.speechlm.models import build_speechlm, save_pretrained
    from espnet2.speechlm.train.config import load_config
    from espnet2.speechlm.train.trainer import DataBundle, Trainer

    overrides = {"data.batch_tokens": 96, "run.log_interval": 1, "run.valid_interval": 1000,
                 "run.save_interval": 1000, "run.peak_flops": 1e9, "run.plot_images": False,
                 "run.tensorboard": False, **run.get("overrides", {})}
    dpo = overrides.get("train.objective") == "dpo"
    init = out / "init"
    if dpo:  # policy and reference start from an exported model dir
        overrides.update({"train.init": str(init), "dpo.ref_model": str(init)})
    cfg = load_config(None, overrides)
    D.seed_everything(cfg.run.seed)
    if run.get("model", "builtin") == "toy":
        model = ToyLM(nan_calls=run.get("nan_calls", []))
    else:
        body = dict(d_model=32, n_layer=1, n_head=2, n_kv_head=2, d_ff=64, max_len=128, dropout=0.1)
        model = build_speechlm(run.get("arch", "delay"), "builtin", body, VOCAB, NQ)
        if dpo and D.is_main():
            torch.manual_seed(123)  # weights other than the ones seed_everything gives the policy
            save_pretrained(build_speechlm(run.get("arch", "delay"), "builtin", body, VOCAB, NQ), init)
        D.barrier()

    def bundle(n, seed, shuffle):
        ds = ToyPairDataset(n, seed) if dpo else ToyDataset(n, seed)
        sampler = TokenBatchSampler(ds.lengths, ds.sources, [1.0, 1.0], cfg.data.batch_tokens, seed=cfg.run.seed,
                                    shuffle=shuffle, num_replicas=D.world_size(), rank=D.rank(),
                                    every_batch=not shuffle)  # the valid bundle, as speechlm_train builds it
        return DataBundle(ds, sampler, collate_pairs if dpo else collate)

    trainer = Trainer(cfg, model, bundle(48, 0, True), out, valid=bundle(16, 1, False))
    if sleep:
        step = trainer._train_micro_batch

        def slow(*a, **k):
            done = step(*a, **k)
            time.sleep(sleep if done else 0)
            return done

        trainer._train_micro_batch = slow
    summary = trainer.fit(resume=resume)
    if dpo:  # the reference must not have moved: compare it with the file it was loaded from
        from safetensors.torch import load_file

        ref = trainer.engine.module.reference
        saved = load_file(str(init / "model.safetensors"))
        summary["ref_unchanged"] = all(torch.equal(v, saved[k]) for k, v in ref.state_dict().items() if k in saved)
        summary["ref_requires_grad"] = any(p.requires_grad for p in ref.parameters())
        summary["policy_changed"] = not all(
            torch.equal(v, saved[k]) for k, v in trainer.engine.module.policy.state_dict().items() if k in saved)
    return summary


if __name__ == "__main__":
    try:
        main()
    except Exception as e:
        import traceback

        traceback.print_exc()
        print(f"ERROR {type(e).__name__}: {e}", flush=True)
        D.clean_exit(3)
