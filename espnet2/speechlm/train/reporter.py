"""Local-only training logs: a JSON-lines history, TensorBoard scalars and PNG curves.

Everything is written by rank 0 under ``output_dir``::

    log/train.jsonl     one record per logging interval: {"step", "split": "train", "loss", "lr", ...}
    log/valid.jsonl     one record per validation: {"step", "split": "valid", "<task>/loss", ...}
    tensorboard/        the same scalars, as ``train/loss``, ``valid/<task>/acc``, ...
    images/curves.png   loss / acc (train and valid per task), lr, grad norm, tokens/s, MFU;
                        redrawn after each validation and at the end

No online service is contacted. On resume the history files are read back, records past
the resumed step are dropped (they belong to the abandoned part of the run), and logging
continues from there.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional

log = logging.getLogger(__name__)

# (panel title, metric name suffix) of images/curves.png
PANELS = [("loss", "loss"), ("acc", "acc"), ("lr", "lr"), ("grad norm", "grad_norm"),
          ("tokens/s", "tokens_per_s"), ("MFU", "mfu")]


def read_history(path: Path, up_to_step: Optional[int] = None) -> List[dict]:
    """Records of a JSON-lines file; a torn last line (killed mid-write) is ignored."""
    records = []
    if not path.is_file():
        return records
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if up_to_step is None or rec.get("step", 0) <= up_to_step:
            records.append(rec)
    return records


class Reporter:
    def __init__(self, output_dir: str | Path, enabled: bool = True, resume_step: Optional[int] = None,
                 tensorboard: bool = True, images: bool = True):
        self.dir = Path(output_dir)
        self.enabled = enabled
        self.history: Dict[str, List[dict]] = {"train": [], "valid": []}
        self.writer = None
        self.images = images
        if not enabled:
            return
        (self.dir / "log").mkdir(parents=True, exist_ok=True)
        for split in self.history:
            path = self._path(split)
            self.history[split] = read_history(path, resume_step if resume_step is not None else -1)
            path.write_text("".join(json.dumps(r) + "\n" for r in self.history[split]))  # truncate the abandoned tail
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                purge = resume_step + 1 if resume_step is not None else None
                self.writer = SummaryWriter(str(self.dir / "tensorboard"), purge_step=purge)
            except ImportError as e:  # tensorboard is optional
                log.warning("tensorboard is not available (%s); scalars go to log/*.jsonl only", e)

    def _path(self, split: str) -> Path:
        return self.dir / "log" / f"{split}.jsonl"

    def record(self, split: str, step: int, scalars: Dict[str, float]) -> None:
        if not self.enabled:
            return
        rec = {"step": step, "split": split, **{k: float(v) for k, v in scalars.items()}}
        self.history[split].append(rec)
        with open(self._path(split), "a") as f:
            f.write(json.dumps(rec) + "\n")
            f.flush()
        if self.writer is not None:
            for k, v in scalars.items():
                self.writer.add_scalar(f"{split}/{k}", float(v), step)
            self.writer.flush()

    def plot(self) -> None:
        """Redraw images/*.png from the in-memory history (matplotlib, Agg backend)."""
        if not (self.enabled and self.images) or not (self.history["train"] or self.history["valid"]):
            return
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        out = self.dir / "images"
        out.mkdir(parents=True, exist_ok=True)
        panels = [(name, self._curves(suffix)) for name, suffix in PANELS]
        panels = [(name, curves) for name, curves in panels if curves]
        cols = 3
        rows = (len(panels) + cols - 1) // cols
        fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
        for ax in axes.flat[len(panels):]:
            ax.axis("off")
        for ax, (name, curves) in zip(axes.flat, panels):
            for label, (xs, ys) in sorted(curves.items()):
                ax.plot(xs, ys, label=label, marker="." if len(xs) < 50 else None)
            ax.set_title(name, fontsize="small")
            ax.grid(alpha=0.3)
            ax.legend(fontsize="x-small")
        axes.flat[0].set_xlabel("step")
        fig.subplots_adjust(hspace=0.35, wspace=0.25)
        tmp = out / ".curves.png.tmp"
        fig.savefig(tmp, dpi=72, format="png")
        tmp.replace(out / "curves.png")
        plt.close(fig)

    def _curves(self, suffix: str) -> Dict[str, tuple]:
        curves: Dict[str, tuple] = defaultdict(lambda: ([], []))
        for split, records in self.history.items():
            for rec in records:
                for k, v in rec.items():
                    if k == suffix or k.endswith("/" + suffix):
                        xs, ys = curves[f"{split}/{k}"]
                        xs.append(rec["step"])
                        ys.append(v)
        return dict(curves)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
