"""Any HuggingFace tokenizer as the text tokenizer (`AutoTokenizer.from_pretrained`).

This is how a pretrained text LLM body keeps its own tokenizer: local ids are the
HF tokenizer's ids, unchanged, so the body's embedding rows for text can be reused
as they are. Special tokens are not added (`add_special_tokens: false`), since the
joint vocabulary owns <sos/eos> and the indicators.

Config (recipe tokenizer entry, e.g. `text: {type: hf_text, conf: {model: meta-llama/Llama-3.2-1B}}`):
    model                  local folder or hub id (required unless model_dir holds a copy)
    trust_remote_code      default False
    add_special_tokens     default False
    skip_special_tokens    drop special tokens when decoding (default False)

"Training" (stage 3) only snapshots the tokenizer into model_dir with
`save_pretrained`, plus hf_text.json naming its source. Later loads read that
copy, so preparation, training, inference and an exported model all use exactly the
same ids, offline, even if the hub repo changes.

codebook_size is len(tokenizer) (vocabulary plus added tokens), or the largest id
+ 1 if a tokenizer has gaps in its ids; gaps show as `<unused_i>` in vocab.txt.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import numpy as np

from espnet2.speechlm.tokenizers.abs_tokenizer import AbsTokenizer, register_tokenizer
from espnet2.speechlm.tokenizers.label import check_str

META = "hf_text.json"


def _looks_like_path(ref: str) -> bool:
    return ref.startswith((".", "/", "~")) or ref.count("/") > 1


def load_hf_tokenizer(model: str, trust_remote_code: bool = False, **kwargs: Any):
    """AutoTokenizer.from_pretrained with errors that say what to do offline."""
    from transformers import AutoTokenizer

    local = Path(model).expanduser()
    if not local.is_dir() and (_looks_like_path(model) or local.exists()):
        raise FileNotFoundError(f"hf_text: {model} looks like a local path but is not an existing folder")
    try:
        return AutoTokenizer.from_pretrained(str(local) if local.is_dir() else model,
                                             trust_remote_code=trust_remote_code, **kwargs)
    except OSError as e:  # no network / not in cache / not a tokenizer folder
        where = "folder" if local.is_dir() else "hub id"
        raise OSError(
            f"hf_text: could not load a tokenizer from {where} {model!r} ({type(e).__name__}: {str(e)[:200]}). "
            "Offline, download it where there is network and pass the local folder as `model`."
        ) from e


def _visible(token: str) -> str:
    """Whitespace inside a token would break vocab.txt's `id token` lines."""
    return "".join(f"\\x{ord(c):02x}" if c.isspace() else c for c in token) or "<empty>"


@register_tokenizer("hf_text")
class HFTextTokenizer(AbsTokenizer):
    def __init__(self, tokenizer, add_special_tokens: bool = False, skip_special_tokens: bool = False):
        self.tok = tokenizer
        self.add_special_tokens = add_special_tokens
        self.skip_special_tokens = skip_special_tokens
        vocab = tokenizer.get_vocab()
        self.codebook_size = max(len(tokenizer), max(vocab.values(), default=-1) + 1)
        self.n_streams = 1

    def tokenize(self, items: Sequence[str]) -> list[np.ndarray]:
        """texts -> list of [n_tokens, 1] int64 HF ids (one batched call)."""
        if isinstance(items, str):
            raise TypeError("hf_text.tokenize takes a list of strings; wrap a single one as [text]")
        texts = [check_str(t, i, "hf_text") for i, t in enumerate(items)]
        if not texts:
            return []
        ids = self.tok(texts, add_special_tokens=self.add_special_tokens, return_attention_mask=False,
                       verbose=False)["input_ids"]
        return [np.asarray(x, dtype=np.int64).reshape(-1, 1) for x in ids]

    def detokenize(self, tokens: np.ndarray) -> str:
        ids = np.asarray(tokens).reshape(-1)
        if ids.size and (ids.min() < 0 or ids.max() >= self.codebook_size):
            raise ValueError(f"hf_text: token ids must lie in [0, {self.codebook_size})")
        return self.tok.decode(ids.tolist(), skip_special_tokens=self.skip_special_tokens,
                               clean_up_tokenization_spaces=False)

    def token_strings(self) -> list[str]:
        toks = self.tok.convert_ids_to_tokens(list(range(self.codebook_size)))
        return [f"<unused_{i}>" if t is None else _visible(t) for i, t in enumerate(toks)]

    # --- snapshot and loading -------------------------------------------------------------
    @classmethod
    def needs_training(cls) -> bool:
        return True  # only a snapshot of the tokenizer files, see the module docstring

    @classmethod
    def train(cls, items: Iterable[Any], out_dir: Path, model: Optional[str] = None,
              trust_remote_code: bool = False, **conf) -> "HFTextTokenizer":
        """Copy the tokenizer `model` into out_dir (the items are not used)."""
        if not model:
            raise ValueError("hf_text needs `model` in its conf: a local tokenizer folder or a hub id")
        tok = load_hf_tokenizer(model, trust_remote_code)
        out_dir = Path(out_dir)
        tok.save_pretrained(str(out_dir))
        (out_dir / META).write_text(json.dumps({"model": model, "trust_remote_code": trust_remote_code}, indent=1))
        return cls(tok, **_decode_conf(conf))

    @classmethod
    def load(cls, model_dir: Optional[Path], model: Optional[str] = None, trust_remote_code: bool = False,
             **conf) -> "HFTextTokenizer":
        """From the snapshot in model_dir if there is one, else from `model` (folder or hub id)."""
        if model_dir is not None and (Path(model_dir) / META).is_file():
            meta = json.loads((Path(model_dir) / META).read_text())
            if model and model != meta["model"]:
                raise ValueError(f"hf_text: model={model!r} in config but {model_dir} holds a copy of {meta['model']!r}")
            tok = load_hf_tokenizer(str(model_dir), trust_remote_code)
        elif model:
            tok = load_hf_tokenizer(model, trust_remote_code)
        else:
            raise ValueError("hf_text needs `model` in its conf: a local tokenizer folder or a hub id")
        return cls(tok, **_decode_conf(conf))


def _decode_conf(conf: dict) -> dict:
    unknown = set(conf) - {"add_special_tokens", "skip_special_tokens"}
    if unknown:
        raise ValueError(f"hf_text: unknown conf keys {sorted(unknown)}")
    return conf
