"""Stage 6 (joint vocabulary) and stage 7 (length statistics) from data.json manifests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np

from espnet2.speechlm.vocab import JointVocabulary


def build_vocab(data_jsons: Sequence[Path], out_dir: Path) -> JointVocabulary:
    """Add every task and tokenizer of the manifests to the vocabulary in `out_dir`.

    An existing vocab.json there is extended, never renumbered.
    """
    out_dir = Path(out_dir)
    vocab = JointVocabulary.load(out_dir) if (out_dir / "vocab.json").exists() else JointVocabulary()
    strings: Dict[str, List[str]] = {}
    for path in data_jsons:
        meta = json.loads(Path(path).read_text())
        vocab.add_task(meta["task"])
        for name in sorted(meta["tokenizers"]):
            info = meta["tokenizers"][name]
            vocab.add_tokenizer(name, info["type"], info["codebook_size"], info["n_streams"], info.get("stream_sizes"))
            if name not in strings:
                strings[name] = _token_strings(name, info)
    vocab.save(out_dir, strings)
    return vocab


def _token_strings(name: str, info: dict) -> List[str]:
    from espnet2.speechlm.data.prepare import TokenizerSpec, load_tokenizer

    model_dir = Path(info["dir"]).parent if info.get("dir") else None
    tok = load_tokenizer(TokenizerSpec(name, info["type"], info.get("conf") or {}), model_dir)
    return tok.token_strings()


def length_stats(data_json: Path) -> dict:
    """Write lengths.txt (`id assembled_length`) next to data.json and return a summary."""
    from espnet2.speechlm.data.dataset import Manifest

    m = Manifest(Path(data_json))
    rows = [(example_id, length) for _, _, example_id, length in m.examples()]
    lengths = np.array([l for _, l in rows], dtype=np.int64)
    out = Path(data_json).parent
    (out / "lengths.txt").write_text("".join(f"{i} {l}\n" for i, l in rows))
    summary = {
        "task": m.task,
        "num_examples": len(rows),
        "total_tokens": int(lengths.sum()),
        "min": int(lengths.min()) if len(rows) else 0,
        "mean": float(lengths.mean()) if len(rows) else 0.0,
        "p95": float(np.percentile(lengths, 95)) if len(rows) else 0.0,
        "max": int(lengths.max()) if len(rows) else 0,
    }
    (out / "stats.json").write_text(json.dumps(summary, indent=2))
    return summary
