"""Training: DeepSpeed trainer and everything around it, applied from outside the model.

config.py       dataclass configs loaded from YAML (strict keys)
distributed.py  process group (1-rank gloo for a lone CPU process), seeding, clean exit
trainer.py      train / validation loop, non-finite skipping, LR schedules, DeepSpeed config
checkpoint.py   atomic, verified checkpoints; keep-last-N + best-k; averaging
export.py       the final inference folder (safetensors + config.json + vocab.json)
reporter.py     JSON-lines history, TensorBoard scalars, PNG curves
mfu.py          model FLOPs per token, peak FLOP/s, MFU
launch.py       N local processes via torchrun; several machines from a DeepSpeed hostfile
losses.py       the model's weighted loss with per-example sums (per-task curves, DPO log-probs)
dpo.py          DPO: frozen reference, sequence log-probs, the wrapper the engine trains
apply.py        activation checkpointing and torch.compile, applied from outside the model
liger.py        Liger kernels (CUDA): run.liger auto | on | off
"""
