"""Model-card (README.md) generation for packed models.

The card is rendered from the packed folder's ``meta.json`` and files so it is
always consistent with what is actually in the folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

import yaml


def _front_matter(meta: Dict[str, Any]) -> str:
    fm: Dict[str, Any] = {
        "library_name": "espnet",
        "tags": ["espnet", "speechlm", "audio"] + [f"task:{t}" for t in meta.get("tasks", [])],
    }
    if meta.get("license"):
        fm["license"] = meta["license"]
    if meta.get("datasets"):
        fm["datasets"] = list(meta["datasets"])
    if meta.get("language"):
        fm["language"] = meta["language"]
    return "---\n" + yaml.safe_dump(fm, sort_keys=False).strip() + "\n---\n"


def _architecture(meta: Dict[str, Any], config: Dict[str, Any]) -> List[str]:
    lines = []
    n = meta.get("n_parameters")
    if n:
        lines.append(f"- Parameters: {n:,} ({n / 1e6:.1f} M)")
    for key in ("model", "model_conf", "body", "body_conf", "corelm", "corelm_conf", "tokenizers", "encoder", "decoder"):
        if key in config:
            val = config[key]
            text = yaml.safe_dump(val, default_flow_style=True, width=10_000).strip() if not isinstance(val, str) else val
            lines.append(f"- `{key}`: {text[:400]}")
    if not lines:
        lines.append("- See `config.yaml`.")
    return lines


def render_model_card(folder: Path, meta: Dict[str, Any]) -> str:
    folder = Path(folder)
    config: Dict[str, Any] = {}
    if meta["files"].get("config"):
        with open(folder / meta["files"]["config"], encoding="utf-8") as f:
            config = yaml.safe_load(f) or {}  # JSON is valid YAML
    name = meta.get("name") or folder.name
    tasks = meta.get("tasks") or []
    out = [_front_matter(meta), f"# {name}", ""]
    out.append(meta.get("description") or "An ESPnet-SpeechLM model packed with `espnet2.bin.speechlm_hub pack`.")
    out += ["", "## Tasks", ""]
    out += [f"- `{t}`" for t in tasks] or ["- (not recorded)"]
    out += ["", "## Training data", ""]
    out += [f"- {d}" for d in meta.get("datasets", [])] or ["- (not recorded)"]
    out += ["", "## Architecture", ""] + _architecture(meta, config)
    out += ["", "## Results", ""]
    if meta["files"].get("results"):
        body = (folder / meta["files"]["results"]).read_text(encoding="utf-8").strip()
        lines = body.splitlines()
        if lines and lines[0].startswith("# "):
            lines = lines[1:]
        out += [l for l in lines if not l.startswith("<!-- speechlm-score")] + [""]
    else:
        out += ["No RESULTS.md was packed.", ""]
    out += ["## Files", ""]
    for role, paths in meta["files"].items():
        if paths:
            paths = paths if isinstance(paths, list) else [paths]
            out.append(f"- {role}: " + ", ".join(f"`{p}`" for p in paths))
    repo = meta.get("repo_id") or "<repo_id or local folder>"
    task = tasks[0] if tasks else "<task>"
    out += [
        "", "## How to run inference", "", "```bash",
        f"python -m espnet2.bin.speechlm_hub download {repo} --out_dir ./model",
        "python -m espnet2.bin.speechlm_inference --model_dir ./model \\",
        f"    --data_json dump/{task}/test/data.json --out_dir exp/decode/{task}_test",
        f"python -m espnet2.bin.speechlm_score --score_config conf/score/{task}.yaml \\",
        f"    --hyp_dir exp/decode/{task}_test --ref_dir <formatted test data dir> --task {task}",
        "```", "",
        "`download` uses a local folder as is and only contacts the Hugging Face Hub for a repo id.",
        "",
    ]
    return "\n".join(out)
