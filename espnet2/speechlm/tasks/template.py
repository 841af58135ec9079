"""Task templates: a task is an ordered list of condition items and target items.

A template is data (YAML), never Python code:

    task: tts
    conditions:
      - {name: text, tokenizer: text, reader: text}
    targets:
      - {name: wav.scp, tokenizer: codec, reader: audio}

`name` is the Kaldi-style index file the item is read from, `tokenizer` the name
of a tokenizer in the recipe's tokenizer config (it is also the name of the
item's indicator token), `reader` how one line's content becomes a raw item.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, List, Optional, Union

import yaml

BUILTIN_DIR = Path(__file__).parent / "templates"
READERS = ("text", "audio", "label", "spk_prompt", "npy")


@dataclass(frozen=True)
class Item:
    name: str
    tokenizer: str
    reader: str = "text"

    def __post_init__(self):
        if self.reader not in READERS:
            raise ValueError(f"item {self.name!r}: unknown reader {self.reader!r}; known: {READERS}")


@dataclass(frozen=True)
class TaskTemplate:
    task: str
    conditions: List[Item] = field(default_factory=list)
    targets: List[Item] = field(default_factory=list)
    description: str = ""

    @property
    def items(self) -> List[Item]:
        return list(self.conditions) + list(self.targets)

    @property
    def tokenizers(self) -> List[str]:
        return sorted({it.tokenizer for it in self.items})

    def to_dict(self) -> dict:
        return asdict(self)

    def check_conditions_only(self, continuous: Iterable[str], source: str = "") -> None:
        """Continuous items (placeholder + side features; `tokenizers.continuous`) cannot be
        targets: nothing predicts or decodes them. `continuous`: their tokenizer names."""
        names = set(continuous)
        for it in self.targets:
            if it.tokenizer in names:
                raise ValueError(
                    f"template {self.task!r}{f' ({source})' if source else ''}: target item {it.name!r} uses the "
                    f"continuous tokenizer {it.tokenizer!r}; a continuous item (placeholder token + side "
                    "features) can only be a condition")

    @classmethod
    def from_dict(cls, d: dict, source: str = "<dict>") -> "TaskTemplate":
        unknown = set(d) - {"task", "conditions", "targets", "description"}
        if unknown:
            raise ValueError(f"{source}: unknown template keys {sorted(unknown)}")
        if "task" not in d or not d.get("targets"):
            raise ValueError(f"{source}: a template needs `task` and at least one target")
        try:
            conds = [Item(**it) for it in d.get("conditions") or []]
            targets = [Item(**it) for it in d["targets"]]
        except (TypeError, ValueError) as e:
            raise ValueError(f"{source}: bad item ({e}); items take name, tokenizer, reader") from e
        names = [it.name for it in conds + targets]
        if len(set(names)) != len(names):
            raise ValueError(f"{source}: an index file is used twice in {names}")
        return cls(d["task"], conds, targets, d.get("description", ""))


def builtin_tasks() -> List[str]:
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.yaml"))


def load_template(name_or_path: Union[str, Path], search_dirs: Optional[List[Path]] = None) -> TaskTemplate:
    """A YAML path, a task name found in `search_dirs` (e.g. the recipe's conf/tasks), or a built-in."""
    candidates = [Path(name_or_path)]
    for d in list(search_dirs or []) + [BUILTIN_DIR]:
        candidates.append(Path(d) / f"{name_or_path}.yaml")
    for path in candidates:
        if path.suffix in (".yaml", ".yml") and path.is_file():
            return TaskTemplate.from_dict(yaml.safe_load(path.read_text()), source=str(path))
    raise FileNotFoundError(
        f"no task template {name_or_path!r}: not a YAML file, and not built in ({', '.join(builtin_tasks())})"
    )
