"""Training configuration: plain dataclasses, loaded from YAML with strict key checking.

A YAML file mirrors the dataclass tree::

    model:     {arch: delay, body: builtin, body_conf: {...}, arch_conf: {...}}
    train:     {objective: lm, init: null}          # lm | dpo; init: weights to start from
    dpo:       {beta: 0.1, ref_model: null}         # only read when train.objective is dpo
    optim:     {lr: 3.0e-4, warmup_steps: 1000, scheduler: cosine, grad_clip: 1.0}
    data:      {batch_tokens: 8192, loss_weights: {codec: 0.0625}}
    run:       {max_steps: 100000, valid_interval: 2000, save_interval: 2000,
                activation_checkpointing: false, compile: false, liger: auto}
    deepspeed: {zero_stage: 1, bf16: true, extra: {...}}

Unknown keys are an error that names the full path (``optim.lrr``) and the known keys,
so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple

import yaml

SCHEDULERS = ("constant", "warmup_constant", "cosine")
OBJECTIVES = ("lm", "dpo")
LIGER_MODES = ("auto", "on", "off")


class ConfigError(ValueError):
    """A training config that cannot be used as written."""


@dataclass
class ModelConfig:
    """Arguments of ``build_speechlm`` except vocab_size / n_streams (taken from the vocabulary)."""

    arch: str = "delay"
    body: str = "builtin"
    body_conf: Dict[str, Any] = field(default_factory=dict)
    arch_conf: Dict[str, Any] = field(default_factory=dict)
    text_tokenizer: Optional[str] = None  # range holding a pretrained LLM's own ids: graft its rows (hf body)
    restrict_heads: bool = True  # each stream's head scores only the ids it can hold (false: full heads)


@dataclass
class ObjectiveConfig:
    """What is optimised (the ``train:`` section)."""

    objective: str = "lm"  # lm: next-token loss on targets | dpo: preference pairs (see ``dpo:``)
    # Weights the model starts from (not used when resuming): an exported model dir, a
    # checkpoint dir (checkpoints/step_N) or a .safetensors file. Safetensors only, never pickle.
    init: Optional[str] = None


@dataclass
class DPOConfig:
    """Direct preference optimisation (train.objective: dpo)."""

    beta: float = 0.1  # strength of the implicit KL anchor to the reference model
    # Frozen reference: an exported model dir, a checkpoint dir or a .safetensors file with the
    # same architecture as the policy; None = a frozen copy of the policy at the start (train.init).
    ref_model: Optional[str] = None


@dataclass
class OptimConfig:
    lr: float = 3.0e-4
    betas: Tuple[float, float] = (0.9, 0.95)
    eps: float = 1.0e-8
    weight_decay: float = 0.01
    warmup_steps: int = 0
    scheduler: str = "warmup_constant"  # constant | warmup_constant | cosine
    min_lr_ratio: float = 0.0  # cosine floor, as a fraction of lr
    grad_clip: float = 1.0  # 0 disables clipping


@dataclass
class DataConfig:
    batch_tokens: int = 8192  # per rank, per micro-batch (padded positions T * B)
    valid_batch_tokens: Optional[int] = None  # defaults to batch_tokens
    max_len: Optional[int] = None
    num_workers: int = 0
    loss_weights: Dict[str, Any] = field(default_factory=dict)  # tokenizer name -> weight, or one per stream
    # task name -> sampling ratio of its training data.json (an explicit `path:ratio` wins; default 1)
    task_ratios: Dict[str, float] = field(default_factory=dict)
    # a curriculum: the first `curriculum_steps` optimizer steps sample only `curriculum_tasks`
    # (e.g. [asr], so that ASR learns to follow the audio before TTS shares the model), then the full mix
    curriculum_tasks: List[str] = field(default_factory=list)
    curriculum_steps: int = 0


@dataclass
class RunConfig:
    max_steps: Optional[int] = None  # optimizer steps; None = until max_epochs (1 when neither is set)
    max_epochs: Optional[int] = None  # None = until max_steps; training stops at whichever comes first
    log_interval: int = 10
    valid_interval: int = 1000  # steps; validation also runs at the end
    save_interval: int = 1000  # steps; a checkpoint is also saved at the end
    keep_last_n: int = 2
    keep_best_k: int = 3  # by validation loss; the exported model averages them
    seed: int = 0
    grad_accum: int = 1
    nonfinite_patience: int = 10  # consecutive non-finite losses before giving up
    peak_flops: Optional[float] = None  # per rank; None = table (CUDA) or measured (CPU)
    verify_checksums: bool = True  # sha256 of every checkpoint file, checked on resume
    tensorboard: bool = True
    plot_images: bool = True  # images/curves.png after each validation
    activation_checkpointing: bool = False  # recompute each body block in backward (less memory, ~1/3 more compute)
    compile: bool = False  # torch.compile the body blocks before DeepSpeed wraps the model
    compile_backend: str = "inductor"  # torch.compile backend ("aot_eager" compiles fast, for checks)
    liger: str = "auto"  # Liger kernels on CUDA: auto (when installed) | on (error when unavailable) | off


@dataclass
class DeepSpeedConfig:
    zero_stage: int = 1
    bf16: bool = False
    extra: Dict[str, Any] = field(default_factory=dict)  # merged last into the DeepSpeed config


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    train: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    dpo: DPOConfig = field(default_factory=DPOConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    run: RunConfig = field(default_factory=RunConfig)
    deepspeed: DeepSpeedConfig = field(default_factory=DeepSpeedConfig)

    def validate(self) -> "TrainConfig":
        if self.run.max_steps is None and self.run.max_epochs is None:
            self.run.max_epochs = 1  # neither limit given: one pass over the data
        checks = [
            (self.optim.scheduler in SCHEDULERS, f"optim.scheduler must be one of {SCHEDULERS}, got {self.optim.scheduler!r}"),
            (self.optim.lr > 0, "optim.lr must be > 0"),
            (self.optim.warmup_steps >= 0, "optim.warmup_steps must be >= 0"),
            (self.optim.grad_clip >= 0, "optim.grad_clip must be >= 0 (0 disables clipping)"),
            (self.deepspeed.zero_stage in (0, 1, 2, 3), "deepspeed.zero_stage must be 0, 1, 2 or 3"),
            (self.data.batch_tokens > 0, "data.batch_tokens must be > 0"),
            (self.run.grad_accum >= 1, "run.grad_accum must be >= 1"),
            ((self.run.max_steps or 1) >= 1 and (self.run.max_epochs or 1) >= 1, "run.max_steps / run.max_epochs must be >= 1"),
            (min(self.run.log_interval, self.run.valid_interval, self.run.save_interval) >= 1, "run.*_interval must be >= 1"),
            (self.run.keep_last_n >= 1, "run.keep_last_n must be >= 1 (resume needs the latest checkpoint)"),
            (self.run.keep_best_k >= 0, "run.keep_best_k must be >= 0"),
            (self.run.nonfinite_patience >= 1, "run.nonfinite_patience must be >= 1"),
            (self.train.objective in OBJECTIVES,
             f"train.objective must be one of {OBJECTIVES}, got {self.train.objective!r}"),
            (self.dpo.beta > 0, "dpo.beta must be > 0"),
            (self.run.liger in LIGER_MODES, f"run.liger must be one of {LIGER_MODES}, got {self.run.liger!r}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        return self


# --- dict <-> dataclass ---------------------------------------------------------------


def _convert(value: Any, tp: Any, path: str) -> Any:
    """Check (and lightly coerce) one YAML value against a type annotation."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, path)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(value, inner[0], path)
    if tp is Any:
        return value
    if origin in (dict, Dict):
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {type(value).__name__}")
        _, vt = typing.get_args(tp) or (Any, Any)
        return {k: _convert(v, vt, f"{path}.{k}") for k, v in value.items()}
    if origin in (tuple, Tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {type(value).__name__}")
        args = typing.get_args(tp)
        if origin in (tuple, Tuple) and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{path}: expected {len(args)} values, got {len(value)}")
            return tuple(_convert(v, a, f"{path}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        return type(value)(value)
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):  # YAML 1.1 reads "3e-4" as a string
        try:
            return float(value)
        except ValueError:
            pass
    if tp in (int, float, str, bool) and not (isinstance(value, tp) and not (tp is int and isinstance(value, bool))):
        raise ConfigError(f"{path}: expected {tp.__name__}, got {value!r}")
    return value


def check_keys(data: Dict[Any, Any], known: Iterable[str], path: str = "", source: str = "") -> None:
    """ConfigError naming every unknown key's full path (`path.key`) and the known keys.

    For every mapping whose keys select something (dataclass fields, tokenizer names, task
    names): a typo there must stop the run, never fall back to a default. `source`: the file.
    """
    known = sorted(set(known))
    unknown = sorted(set(data) - set(known), key=str)
    if unknown:
        where = [f"{path}.{k}" if path else str(k) for k in unknown]
        raise ConfigError(f"{source + ': ' if source else ''}unknown config key(s) {', '.join(where)}; "
                          f"known at this level: {', '.join(known) or '(none)'}")


def from_dict(cls: type, data: Any, path: str = "") -> Any:
    """Build dataclass ``cls`` from a nested mapping; unknown keys raise ConfigError."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path or 'config'}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    check_keys(data, [f.name for f in dataclasses.fields(cls)], path)
    kwargs = {k: _convert(v, hints[k], f"{path}.{k}" if path else k) for k, v in data.items()}
    return cls(**kwargs)


def load_config(path: Optional[str | Path], overrides: Optional[Dict[str, Any]] = None) -> TrainConfig:
    """Read a YAML training config (None = all defaults), apply dotted overrides, validate."""
    data: Dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"training config {path} does not exist")
        data = yaml.safe_load(path.read_text()) or {}
    for dotted, value in (overrides or {}).items():
        node = data
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return from_dict(TrainConfig, data).validate()


def to_dict(config: TrainConfig) -> Dict[str, Any]:
    def plain(x: Any) -> Any:
        if isinstance(x, tuple):
            return [plain(v) for v in x]
        if isinstance(x, dict):
            return {k: plain(v) for k, v in x.items()}
        if isinstance(x, list):
            return [plain(v) for v in x]
        return x

    return plain(asdict(config))


def dump_config(config: TrainConfig, path: str | Path) -> None:
    """Write the resolved config (every default filled in) atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
    tmp.replace(path)
