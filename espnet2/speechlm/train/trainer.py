"""DeepSpeed training loop for SpeechLMs.

The model is plain PyTorch: ``forward(seq [B,T,nq], weight [B,T,nq], lengths [B]) ->
(loss, stats, weight_sum)``; everything distributed (ZeRO, bf16, gradient accumulation,
clipping) is applied here from outside.

Definitions used throughout:

- a *step* is one optimizer update; ``run.grad_accum`` micro-batches make a step
  (DeepSpeed scales each micro-batch loss by 1/grad_accum; the model's loss is already a
  weighted mean over its batch's target tokens).
- a *micro-batch* is one batch of the token sampler on one rank.
- a micro-batch whose loss is non-finite on any rank is skipped on every rank (no backward,
  no optimizer call); ``run.nonfinite_patience`` consecutive skips stop training with an error.
  Non-finite gradients of a finite loss are not detected here (fp32/bf16 do not overflow
  the way fp16 does).
- resume is exact: checkpoints are taken at step boundaries and hold the micro-batch
  position inside the epoch, the sampler and every RNG state, so a resumed run replays
  the same batches with the same dropout masks. When the output dir holds checkpoints but
  none verifies, training stops (it never starts again from step 0 over the old run).
- the training objective (``train.objective``) is ``lm`` (the model's own loss) or ``dpo``
  (``dpo.DPOModel`` wraps the model and a frozen reference, same forward contract).
- before DeepSpeed wraps it, ``prepare_model`` loads ``train.init``, applies Liger kernels,
  activation checkpointing and torch.compile (``run.*``); the model loss's per-row sums
  (``losses.per_example``) give per-task training loss / acc.
"""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from espnet2.speechlm.data.dataset import select_examples, side_inputs
from espnet2.speechlm.train import distributed as D
from espnet2.speechlm.train.checkpoint import (
    CheckpointManager, CorruptCheckpoints, load_weights, rng_state, set_rng_state,
)
from espnet2.speechlm.train.config import ConfigError, TrainConfig, dump_config
from espnet2.speechlm.train.mfu import MFUMeter, peak_flops
from espnet2.speechlm.train.reporter import Reporter

log = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """Too many consecutive non-finite losses: the run has diverged."""


@dataclass
class DataBundle:
    """A dataset with its (rank-aware, resumable) batch sampler and collate function."""

    dataset: Dataset
    sampler: Any  # TokenBatchSampler-like: set_epoch, __iter__, __len__, state_dict, load_state_dict
    collate: Callable[[List[dict]], dict]


# --- optimizer / schedule / DeepSpeed config ------------------------------------------------


class LRSchedule:
    """Multiplier of the base lr at a step (a picklable callable for LambdaLR)."""

    def __init__(self, kind: str, warmup_steps: int, total_steps: Optional[int], min_ratio: float = 0.0):
        if kind == "cosine" and not total_steps:
            raise ConfigError("optim.scheduler=cosine needs run.max_steps (or a sized sampler with max_epochs)")
        self.kind, self.warmup, self.total, self.min_ratio = kind, warmup_steps, total_steps, min_ratio

    def __call__(self, step: int) -> float:
        if self.kind == "constant":
            return 1.0
        if self.warmup and step < self.warmup:
            return (step + 1) / self.warmup
        if self.kind == "warmup_constant":
            return 1.0
        progress = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        return self.min_ratio + (1.0 - self.min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW; matrices (and embeddings) decay, biases and norm gains do not."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    groups = [{"params": decay, "weight_decay": cfg.optim.weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return torch.optim.AdamW(groups, lr=cfg.optim.lr, betas=tuple(cfg.optim.betas), eps=cfg.optim.eps)


def deep_merge(base: dict, extra: dict) -> dict:
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            deep_merge(base[k], v)
        else:
            base[k] = v
    return base


def build_ds_config(cfg: TrainConfig) -> dict:
    """The DeepSpeed config dict; ``deepspeed.extra`` is merged in last and wins."""
    ds = {
        "train_micro_batch_size_per_gpu": 1,  # batches are sized in tokens by the sampler
        "gradient_accumulation_steps": cfg.run.grad_accum,
        "gradient_clipping": cfg.optim.grad_clip,
        "zero_optimization": {"stage": cfg.deepspeed.zero_stage},
        "bf16": {"enabled": cfg.deepspeed.bf16},
        "zero_allow_untested_optimizer": True,  # we pass torch.optim.AdamW (no fused_adam JIT build)
        "steps_per_print": 2**31,
        "wall_clock_breakdown": False,
    }
    return deep_merge(ds, cfg.deepspeed.extra)


# --- model preparation ----------------------------------------------------------------------


def prepare_model(cfg: TrainConfig, model: nn.Module, use_cuda: bool) -> nn.Module:
    """What is applied to the plain model before DeepSpeed wraps it, in this order:
    initial weights, DPO reference (a frozen copy, before anything below touches the policy),
    Liger kernels, activation checkpointing, torch.compile, the DPO wrapper."""
    from espnet2.speechlm.train.apply import apply_activation_checkpointing, apply_compile
    from espnet2.speechlm.train.dpo import DPOModel, build_reference
    from espnet2.speechlm.train.liger import maybe_apply_liger

    run, main = cfg.run, D.is_main()
    if cfg.train.init:
        f = load_weights(model, cfg.train.init)  # also on resume: a DPO reference copied from it must match
        if main:
            log.info("initial weights from %s", f)
    reference = None
    if cfg.train.objective == "dpo":
        if not (cfg.train.init or cfg.dpo.ref_model) and main:
            log.warning("DPO from random weights: set train.init (and dpo.ref_model) to a trained model")
        reference = build_reference(model, cfg.dpo.ref_model)
    for m in (model, reference):
        patched = maybe_apply_liger(m, run.liger, use_cuda) if m is not None else None
        if patched and main and m is model:
            log.info("liger kernels: %s", "; ".join(patched))
    if run.activation_checkpointing:
        done = apply_activation_checkpointing(model)
        if main:
            log.info("activation checkpointing: %s", ", ".join(done))
    if run.compile:
        done = apply_compile(model, run.compile_backend)
        if main:
            log.info("torch.compile: %s", ", ".join(done))
    if reference is not None:
        model = DPOModel(model, reference, cfg.dpo.beta)
    return model


# --- data -----------------------------------------------------------------------------------


def _seed_worker(worker_id: int) -> None:
    seed = torch.initial_seed() % 2**32
    D.seed_everything(seed)


def make_loader(data: DataBundle, num_workers: int, seed: int, epoch: int, pin_memory: bool) -> DataLoader:
    # An explicit generator: creating the iterator must not draw from the global torch RNG,
    # or a resumed run would see different dropout masks than an uninterrupted one.
    g = torch.Generator().manual_seed(seed * 100003 + epoch)
    return DataLoader(
        data.dataset, batch_sampler=data.sampler, collate_fn=data.collate, num_workers=num_workers,
        pin_memory=pin_memory, generator=g, worker_init_fn=_seed_worker if num_workers else None,
    )


# --- trainer --------------------------------------------------------------------------------


@dataclass
class TrainState:
    step: int = 0  # optimizer steps done
    epoch: int = 0
    consumed: int = 0  # micro-batches of `epoch` already used (trained or skipped)
    nonfinite_total: int = 0
    nonfinite_run: int = 0  # consecutive
    last_valid_step: int = -1
    last_save_step: int = -1
    best_valid_loss: Optional[float] = None


class Trainer:
    def __init__(
        self,
        config: TrainConfig,
        model: nn.Module,
        train: DataBundle,
        output_dir: str | Path,
        valid: Optional[DataBundle] = None,
        use_cuda: bool = False,
    ):
        import deepspeed  # the environment (accelerator, op cache) is prepared by init_distributed

        self.cfg = config
        self.train_data, self.valid_data = train, valid
        self.output_dir = Path(output_dir)
        self.use_cuda = use_cuda
        self.state = TrainState()

        model = prepare_model(config, model, use_cuda)
        self.dpo = hasattr(model, "reference_to")
        optimizer = build_optimizer(model, config)
        schedule = LRSchedule(config.optim.scheduler, config.optim.warmup_steps, self._total_steps(),
                              config.optim.min_lr_ratio)
        self.engine, _, _, self.scheduler = deepspeed.initialize(
            model=model, optimizer=optimizer, config=build_ds_config(config),
            lr_scheduler=lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, schedule),
        )
        self.ckpt = CheckpointManager(self.output_dir / "checkpoints", config.run.keep_last_n,
                                      config.run.keep_best_k, config.run.verify_checksums)
        dtype = torch.bfloat16 if config.deepspeed.bf16 else torch.float32
        if self.dpo:
            self.engine.module.reference_to(self.engine.device, dtype)
        peak = peak_flops(dtype, use_cuda, config.run.peak_flops) if D.is_main() else None
        self.mfu = MFUMeter(self.engine.module, D.broadcast_object(peak), D.world_size())
        self.reporter: Optional[Reporter] = None

    # -- public ---------------------------------------------------------------------------
    def fit(self, resume: bool = True) -> Dict[str, Any]:
        resumed_from = self._maybe_resume(resume)
        if D.is_main():  # only now: a run that refuses to start leaves the old config in place
            dump_config(self.cfg, self.output_dir / "config.yaml")
        self.reporter = Reporter(self.output_dir, enabled=D.is_main(),
                                 resume_step=self.state.step if resumed_from else None,
                                 tensorboard=self.cfg.run.tensorboard, images=self.cfg.run.plot_images)
        try:
            self._train_loop()
            if self.valid_data is not None and self.state.last_valid_step != self.state.step:
                self._validate_and_report()
            if self.state.last_save_step != self.state.step:
                self._save()
        finally:
            if self.state.last_valid_step != self.state.step:
                self.reporter.plot()
            self.reporter.close()
        return {"step": self.state.step, "epoch": self.state.epoch, "nonfinite_skipped": self.state.nonfinite_total,
                "best_valid_loss": self.state.best_valid_loss, "resumed_from": str(resumed_from) if resumed_from else None}

    def validate(self) -> Dict[str, float]:
        """Token-weighted mean loss/acc per task and overall, over the whole validation set."""
        engine = self.engine
        engine.eval()
        sums: Dict[str, List[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])  # loss*w, acc*w, w
        units = self._valid_units()
        dummy: Optional[Tuple[str, dict]] = None
        with torch.no_grad():
            while True:
                unit = next(units, None)
                # All ranks run the same number of forwards (ZeRO-3 gathers weights collectively).
                if not D.all_reduce([float(unit is not None)], "max")[0]:
                    break
                real = unit is not None
                if not real and dummy is None:  # this rank got no validation batch at all
                    dummy = ("", self._to_device(self.valid_data.collate([self.valid_data.dataset[0]])))
                task, batch = unit if real else dummy
                loss, stats, wsum = engine(batch["seqs"], batch["weights"], batch["lengths"], **side_inputs(batch))
                dummy = (task, batch)
                if real:
                    w = float(wsum)
                    acc = float(stats["acc"]) if "acc" in stats else float("nan")
                    s = sums[task]
                    s[0] += float(loss.detach()) * w
                    s[1] += acc * w
                    s[2] += w
        engine.train()
        tasks = sorted(set(_gather_keys(list(sums))))
        totals = D.all_reduce([v for t in tasks for v in sums[t]] if tasks else [0.0])
        out, all_l, all_a, all_w = {}, 0.0, 0.0, 0.0
        for i, t in enumerate(tasks):
            lw, aw, w = totals[3 * i: 3 * i + 3]
            if w > 0:
                out[f"{t}/loss"], out[f"{t}/acc"] = lw / w, aw / w
            all_l, all_a, all_w = all_l + lw, all_a + aw, all_w + w
        if all_w > 0:
            out["loss"], out["acc"] = all_l / all_w, all_a / all_w
        return out

    # -- internals ------------------------------------------------------------------------
    def _total_steps(self) -> Optional[int]:
        run = self.cfg.run
        if run.max_steps is not None:
            return run.max_steps
        try:
            return max(1, len(self.train_data.sampler) * run.max_epochs // run.grad_accum)
        except TypeError:
            return None

    def _done(self) -> bool:
        run = self.cfg.run
        return (run.max_steps is not None and self.state.step >= run.max_steps) or (
            run.max_epochs is not None and self.state.epoch >= run.max_epochs
        )

    def _to_device(self, batch: dict) -> dict:
        dev = self.engine.device

        def move(v):
            if isinstance(v, dict):  # side features of continuous items: {name: tensor}
                return {k: move(x) for k, x in v.items()}
            return v.to(dev, non_blocking=True) if torch.is_tensor(v) else v

        return {k: move(v) for k, v in batch.items()}

    def _train_loop(self) -> None:
        from tqdm import tqdm

        st, run = self.state, self.cfg.run
        bar = tqdm(total=run.max_steps or self._total_steps(), initial=st.step, disable=not D.is_main(),
                   dynamic_ncols=True, mininterval=1.0, desc="train")
        window = self._new_window()
        while not self._done():
            sampler = self.train_data.sampler
            sampler.set_epoch(st.epoch)
            sampler.load_state_dict({"epoch": st.epoch, "consumed": st.consumed})
            loader = make_loader(self.train_data, self.cfg.data.num_workers, run.seed, st.epoch, self.use_cuda)
            if st.consumed == 0 and len(sampler) == 0:
                raise RuntimeError(f"epoch {st.epoch} has no batch on rank {D.rank()}: too little data for "
                                   f"{D.world_size()} ranks or data.batch_tokens={self.cfg.data.batch_tokens}")
            for batch in loader:
                st.consumed += 1
                stepped = self._train_micro_batch(self._to_device(batch), window)
                if not stepped:
                    continue
                st.step += 1
                bar.update(1)
                if st.step % run.log_interval == 0:
                    scalars = self._close_window(window)
                    bar.set_postfix(loss=f"{scalars.get('loss', float('nan')):.3f}", refresh=False)
                    window = self._new_window()
                t_pause = time.perf_counter()
                if self.valid_data is not None and st.step % run.valid_interval == 0:
                    self._validate_and_report()
                if st.step % run.save_interval == 0:
                    self._save()
                window["t0"] += time.perf_counter() - t_pause  # validation/saving is not training time
                if self._done():
                    break
            else:
                st.epoch += 1
                st.consumed = 0
        bar.close()

    def _train_micro_batch(self, batch: dict, window: dict) -> bool:
        """Forward/backward one micro-batch; True when it completed an optimizer step."""
        engine, st = self.engine, self.state
        loss, stats, wsum = engine(batch["seqs"], batch["weights"], batch["lengths"], **side_inputs(batch))
        if D.all_reduce([0.0 if torch.isfinite(loss).item() else 1.0], "max")[0]:
            st.nonfinite_total += 1
            st.nonfinite_run += 1
            log.warning("non-finite loss at step %d (micro-batch %d of epoch %d, ids %s): skipped (%d in a row)",
                        st.step + 1, st.consumed, st.epoch, batch.get("ids", [])[:4], st.nonfinite_run)
            if st.nonfinite_run >= self.cfg.run.nonfinite_patience:
                raise NonFiniteLossError(
                    f"{st.nonfinite_run} consecutive non-finite losses (run.nonfinite_patience="
                    f"{self.cfg.run.nonfinite_patience}) at step {st.step}: training diverged; "
                    "lower optim.lr, raise optim.warmup_steps or check the data"
                )
            return False
        st.nonfinite_run = 0
        boundary = engine.is_gradient_accumulation_boundary()
        engine.backward(loss)
        grad_norm = self._grad_norm_before_step() if boundary else None
        engine.step()
        window["loss"] += float(loss.detach())
        window["acc"] += float(stats.get("acc", float("nan")))
        window["n"] += 1
        for task, sums in task_sums(batch.get("tasks"), stats).items():
            acc_sums = window["tasks"][task]
            for i, v in enumerate(sums):
                acc_sums[i] += v
        for key in EXTRA_STATS:
            if key in stats:
                window["extra"][key] += float(stats[key])
        window["tokens"] += float(batch["lengths"].sum())
        window["flops"] += self.mfu.batch_flops(int(batch["lengths"].sum()), batch["seqs"].shape[1])
        if boundary:
            norm = engine.get_global_grad_norm()
            norm = grad_norm if norm is None else norm
            if norm is not None:
                window["grad_norm"] = float(norm)
        return boundary

    def _grad_norm_before_step(self) -> Optional[float]:
        """Global gradient norm for ZeRO-0 fp32, where DeepSpeed does not record it."""
        if self.cfg.deepspeed.zero_stage != 0 or self.cfg.deepspeed.bf16:
            return None
        norms = [p.grad.detach().float().norm() for p in self.engine.module.parameters() if p.grad is not None]
        return float(torch.stack(norms).norm()) if norms else None

    def _new_window(self) -> dict:
        return {"loss": 0.0, "acc": 0.0, "n": 0, "tokens": 0.0, "flops": 0.0, "grad_norm": float("nan"),
                "t0": time.perf_counter(), "tasks": defaultdict(lambda: [0.0, 0.0, 0.0]),
                "extra": defaultdict(float)}

    def _close_window(self, w: dict) -> Dict[str, float]:
        seconds = time.perf_counter() - w["t0"]
        loss, acc, n, tokens, flops = D.all_reduce([w["loss"], w["acc"], float(w["n"]), w["tokens"], w["flops"]])
        scalars = {"lr": self.scheduler.get_last_lr()[0] if self.scheduler else self.cfg.optim.lr,
                   "grad_norm": w["grad_norm"], "nonfinite_skipped": float(self.state.nonfinite_total),
                   "epoch": float(self.state.epoch)}
        if n:
            scalars.update(loss=loss / n, acc=acc / n)
            extra = [k for k in EXTRA_STATS if k in w["extra"]]  # the same keys on every rank (one objective)
            for k, v in zip(extra, D.all_reduce([w["extra"][k] for k in extra]) if extra else []):
                scalars[k] = v / n
        tasks = sorted(set(_gather_keys(list(w["tasks"]))))
        sums = D.all_reduce([v for t in tasks for v in w["tasks"][t]]) if tasks else []
        for i, t in enumerate(tasks):
            loss_sum, hit_sum, weight = sums[3 * i: 3 * i + 3]
            if weight > 0:
                scalars[f"{t}/loss"], scalars[f"{t}/acc"] = loss_sum / weight, hit_sum / weight
        scalars.update(self.mfu.report(tokens, flops, seconds))
        if self.reporter is not None:
            self.reporter.record("train", self.state.step, scalars)
        return scalars

    def _valid_units(self) -> Iterator[Tuple[str, dict]]:
        """Validation batches split by task, so per-task means need no per-example losses."""
        data = self.valid_data
        data.sampler.set_epoch(0)
        data.sampler.load_state_dict({"epoch": 0, "consumed": 0})  # always the whole set, in order
        loader = make_loader(data, self.cfg.data.num_workers, self.cfg.run.seed, 0, self.use_cuda)
        for batch in loader:
            tasks = batch["tasks"]
            for task in sorted(set(tasks)):
                idx = [i for i, t in enumerate(tasks) if t == task]
                if len(idx) == len(tasks):
                    sub = batch
                elif "n_pairs" in batch:  # DPO: rows are chosen x P, then rejected x P
                    from espnet2.speechlm.data.pairs import pair_rows

                    sub = pair_rows(batch, idx)
                else:
                    sub = select_examples(batch, idx)
                yield task, self._to_device(sub)

    def _validate_and_report(self) -> None:
        scores = self.validate()
        st = self.state
        st.last_valid_step = st.step
        if "loss" in scores and (st.best_valid_loss is None or scores["loss"] < st.best_valid_loss):
            st.best_valid_loss = scores["loss"]
        self._last_valid_loss = scores.get("loss")
        if self.reporter is not None:
            self.reporter.record("valid", st.step, scores)
            self.reporter.plot()
        if D.is_main():
            log.info("step %d valid %s", st.step, {k: round(v, 4) for k, v in scores.items()})

    def _trainer_state(self) -> Dict[str, Any]:
        st = self.state
        return {
            "step": st.step, "epoch": st.epoch, "consumed": st.consumed,
            "sampler": {"epoch": st.epoch, "consumed": st.consumed},
            "nonfinite_total": st.nonfinite_total, "nonfinite_run": st.nonfinite_run,
            "last_valid_step": st.last_valid_step,
            "best_valid_loss": st.best_valid_loss if st.best_valid_loss is not None else float("nan"),
            "rng": rng_state(),
        }

    def _model_state(self) -> Optional[Dict[str, torch.Tensor]]:
        """The plain model's weights (for DPO: the policy's, without the wrapper's prefix)."""
        if self.cfg.deepspeed.zero_stage == 3:
            state = self.engine._zero3_consolidated_16bit_state_dict()  # collective; full dict on rank 0
        else:
            state = self.engine.module.state_dict() if D.is_main() else None
        if state is not None and self.dpo:
            state = {k[len("policy."):]: v for k, v in state.items()}
        return state

    def _save(self) -> None:
        valid_loss = getattr(self, "_last_valid_loss", None) if self.state.last_valid_step == self.state.step else None
        self.state.last_save_step = self.state.step
        self.ckpt.save(self.engine, self.state.step, self._trainer_state(), self._model_state, valid_loss)

    def _find_checkpoint(self) -> Optional[str]:
        """The resumable checkpoint (rank 0 decides, every rank gets it). When the output dir
        holds checkpoints but all are damaged, every rank stops: starting again from step 0
        would overwrite log/ and the checkpoints of the run without a word."""
        found, damaged = None, None
        if D.is_main():
            try:
                p = self.ckpt.find_resumable()
                found = str(p) if p else None
            except CorruptCheckpoints as e:
                damaged = str(e)
        found, damaged = D.broadcast_object((found, damaged))
        if damaged:
            raise ConfigError(
                f"{damaged}\nRefusing to start again from step 0, which would overwrite {self.output_dir}/log "
                f"and {self.ckpt.root}. To start fresh, move {self.output_dir} away (or choose a new "
                f"--output_dir); to continue the run, put an intact checkpoint back into {self.ckpt.root}."
            )
        return found

    def _maybe_resume(self, resume: bool) -> Optional[Path]:
        found = self._find_checkpoint()
        if found is None:
            return None
        if not resume:
            raise ConfigError(
                f"{self.output_dir} already holds checkpoints ({found}); resume with --resume true "
                "or choose a new --output_dir"
            )
        ts = self.ckpt.load(self.engine, Path(found))
        if not ts.get("optimizer_restored", True):  # other world size: weights only
            self._fast_forward_schedule(int(ts["step"]))
        st = self.state
        st.step, st.epoch, st.consumed = int(ts["step"]), int(ts["epoch"]), int(ts["consumed"])
        st.nonfinite_total, st.nonfinite_run = int(ts["nonfinite_total"]), int(ts["nonfinite_run"])
        st.last_valid_step = int(ts["last_valid_step"])
        st.last_save_step = st.step
        best = float(ts["best_valid_loss"])
        st.best_valid_loss = None if math.isnan(best) else best
        set_rng_state(ts["rng"])
        if D.is_main():
            log.info("resumed from %s (step %d, epoch %d, micro-batch %d)", found, st.step, st.epoch, st.consumed)
        return Path(found)

    def _fast_forward_schedule(self, step: int) -> None:
        """Put a freshly started LambdaLR at ``step`` (its state was not restored)."""
        sched = self.scheduler
        sched.last_epoch = step
        for group, base, fn in zip(sched.optimizer.param_groups, sched.base_lrs, sched.lr_lambdas):
            group["lr"] = base * fn(step)
        sched._last_lr = [g["lr"] for g in sched.optimizer.param_groups]


# averaged per logging window when present (guided_attn: 0 for batches without a guided example)
EXTRA_STATS = ("margin", "chosen_reward", "rejected_reward", "guided_attn")


def task_sums(tasks: Optional[List[str]], stats: Dict[str, Any]) -> Dict[str, List[float]]:
    """{task: [loss_sum, hit_sum, weight]} of one micro-batch from the per-row sums of the loss.

    Rows are examples (or DPO pairs) for every architecture but multiscale, whose rows are
    frames: its batches are attributed only when they hold a single task.
    """
    if not tasks or "rows_logp" not in stats:
        return {}
    logp, hit, w = (stats[k].detach().float().cpu() for k in ("rows_logp", "rows_hit", "rows_weight"))
    if len(w) != len(tasks):
        if len(set(tasks)) != 1:
            return {}
        logp, hit, w, tasks = logp.sum()[None], hit.sum()[None], w.sum()[None], tasks[:1]
    out: Dict[str, List[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    for t, l, h, ww in zip(tasks, (-logp).tolist(), hit.tolist(), w.tolist()):
        s = out[t]
        s[0], s[1], s[2] = s[0] + l, s[1] + h, s[2] + ww
    return dict(out)


def _gather_keys(keys: List[str]) -> List[str]:
    """Union of string lists across ranks."""
    import torch.distributed as dist

    if D.world_size() == 1:
        return keys
    out: List[Any] = [None] * D.world_size()
    dist.all_gather_object(out, keys)
    return [k for ks in out for k in ks]
