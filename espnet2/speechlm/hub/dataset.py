"""Pack tokenized datasets (several data.json folders + the joint vocabulary) into one folder.

    <out_dir>/datasets.json           index: [{"task", "split", "path", "num_examples"}]
    <out_dir>/vocab.json, vocab.txt   the vocabulary the local ids are meant for
    <out_dir>/<task>/<split>/         data.json, skipped.txt, shards/ (copied as is)

Such a folder (or its hub copy) feeds `speechlm_train --train_data_json <out>/<task>/<split>/data.json`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Optional, Sequence

COLLECTION_INDEX = "datasets.json"


def pack_dataset(data_jsons: Sequence[Path], out_dir: Path, vocab_dir: Optional[Path] = None) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    for path in data_jsons:
        src = Path(path).parent
        meta = json.loads(Path(path).read_text())
        rel = Path(meta["task"]) / src.name
        dst = out / rel
        if dst.exists():
            shutil.rmtree(dst)
        missing = [s["path"] for s in meta["shards"] if not (src / s["path"] / "done").exists()]
        if missing:
            raise FileNotFoundError(f"{path}: shards {missing[:5]} are missing or unfinished")
        shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.tmp", "prepare.yaml"))
        entries.append({"task": meta["task"], "split": src.name, "path": str(rel / "data.json"),
                        "num_examples": meta["num_examples"]})
    if vocab_dir is not None:
        for name in ("vocab.json", "vocab.txt"):
            if (Path(vocab_dir) / name).exists():
                shutil.copy(Path(vocab_dir) / name, out / name)
    (out / COLLECTION_INDEX).write_text(json.dumps(entries, indent=2))
    return out
