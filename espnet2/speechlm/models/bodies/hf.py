"""A HuggingFace causal LM as a body: feeds `inputs_embeds`, returns the last hidden state.

The multi-stream wrapper owns the joint-vocabulary embedding and the output heads, so
the body keeps only the decoder stack (the LLM's base model, e.g. LlamaModel) and
drops the LLM's own input-embedding table, which a body fed with `inputs_embeds`
never reads.

Pretrained (`from_pretrained`, a local dir or hub id): the *causal* LM is loaded, and
its input embeddings and output layer are held aside (not registered, not saved) until
the builder grafts them into the joint vocabulary (`models.text_init`), or drops them.

Self-describing checkpoints: the resolved HF config is stored in `hf_config`, so a
model rebuilt from our config.json (from_pretrained=False) needs neither the hub nor
the original folder. Remote code is off unless asked for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from espnet2.speechlm.models.bodies import BODIES


@dataclass
class HFBodyConfig:
    model: str = ""  # local dir or hub id; with from_pretrained=False only its config is used
    model_type: str = ""  # build from scratch from `AutoConfig.for_model(model_type, **overrides)`
    overrides: dict = field(default_factory=dict)  # config fields to change (hidden_size, ...)
    from_pretrained: bool = True
    trust_remote_code: bool = False
    max_len: int = 4096  # only used to size our own bookkeeping
    dtype: str = "float32"  # weights dtype when loading pretrained; "auto" keeps the checkpoint's
    hf_config: dict = field(default_factory=dict)  # filled at build time: the full HF config (offline rebuild)


@dataclass
class PretrainedText:
    """A pretrained LLM's token rows, held until the builder grafts or drops them."""

    embed: nn.Module  # ids [*] -> input rows [*, D], with any scaling the LLM's embedding applies
    out_weight: torch.Tensor  # [N, D] output layer (logits = h @ out_weight^T)
    problem: str = ""  # why a graft would not reproduce the LLM's logits ("" = none)


class HFCache:
    """HF DynamicCache plus the key-validity mask the HF forward wants as attention_mask."""

    def __init__(self, batch: int, max_len: int, device):
        from transformers import DynamicCache

        self.hf = DynamicCache()
        self.valid = torch.zeros(batch, 0, dtype=torch.bool, device=device)

    @property
    def length(self) -> int:
        return self.valid.shape[1]

    def select(self, idx: torch.Tensor) -> "HFCache":
        self.hf.reorder_cache(idx)
        self.valid = self.valid.index_select(0, idx)
        return self


def _hf_config(cfg: HFBodyConfig):
    from transformers import AutoConfig

    kw = dict(trust_remote_code=cfg.trust_remote_code)
    if cfg.hf_config:  # rebuilt from our own checkpoint
        d = dict(cfg.hf_config)
        try:
            return AutoConfig.for_model(d.pop("model_type"), **d)
        except (KeyError, ValueError):  # a remote-code model type: ask its folder again
            if not cfg.model:
                raise
    if cfg.model:
        return AutoConfig.from_pretrained(cfg.model, **kw, **cfg.overrides)
    if cfg.model_type:
        return AutoConfig.for_model(cfg.model_type, **cfg.overrides)
    raise ValueError("hf body: set `model` (dir / hub id) or `model_type`")


def _drop_input_embeddings(model: nn.Module) -> None:
    """Unregister the base model's token-embedding table (we always feed inputs_embeds)."""
    try:
        emb = model.get_input_embeddings()
    except NotImplementedError:
        return
    for name, module in model.named_modules():
        if module is emb and name:
            parent, _, attr = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, attr, None)
            return


@BODIES.register("hf")
class HFBody(nn.Module):
    config_class = HFBodyConfig

    def __init__(self, cfg: HFBodyConfig):
        super().__init__()
        try:
            from transformers import AutoModel, AutoModelForCausalLM
        except ImportError as e:  # pragma: no cover
            raise ImportError("the 'hf' body needs `pip install transformers`") from e
        self.cfg = cfg
        kw = dict(trust_remote_code=cfg.trust_remote_code)
        text: Optional[PretrainedText] = None
        if cfg.model and cfg.from_pretrained:
            dtype = cfg.dtype if cfg.dtype == "auto" else getattr(torch, cfg.dtype)
            lm = AutoModelForCausalLM.from_pretrained(cfg.model, dtype=dtype, **kw, **cfg.overrides)
            self.model = lm.base_model
            text = self._text_weights(lm)
        else:
            self.model = AutoModel.from_config(_hf_config(cfg), **kw)
        cfg.hf_config = self.model.config.to_dict()
        _drop_input_embeddings(self.model)
        self.__dict__["_text"] = text  # plain attribute: never a parameter, never saved
        self.d_model = self.model.config.hidden_size

    @staticmethod
    def _text_weights(lm: nn.Module) -> Optional[PretrainedText]:
        """The token rows of a pretrained causal LM.

        A graft assumes logits = h @ W_out^T; that is checked on a few tokens, since some
        LLMs rescale or soft-cap their logits after the output layer, or give it a bias.
        """
        emb, out = lm.get_input_embeddings(), lm.get_output_embeddings()
        if emb is None or out is None or not isinstance(getattr(out, "weight", None), torch.Tensor):
            return None
        text = PretrainedText(emb, out.weight.detach())
        name = type(lm).__name__
        if getattr(out, "bias", None) is not None and bool(out.bias.detach().abs().max() > 0):
            text.problem = f"{name}'s output layer has a bias (our heads have none)"
            return text
        ids = torch.arange(min(8, out.weight.shape[0]), device=out.weight.device)[None]  # [1, <=8]
        with torch.no_grad():
            ref = lm(input_ids=ids).logits.float()
            mine = F.linear(lm.base_model(input_ids=ids).last_hidden_state, out.weight).float()
        if not torch.allclose(ref, mine, atol=1e-4, rtol=1e-3):
            text.problem = f"{name} transforms its logits after the output layer (a scale or soft-cap)"
        return text

    def pop_text_weights(self) -> Optional[PretrainedText]:
        """The pretrained LLM's token rows, once (then released); None when the body was not
        loaded from pretrained weights (built from a config or from our checkpoint)."""
        text, self.__dict__["_text"] = self._text, None
        return text

    def new_cache(self, batch: int, max_len: int, device=None, dtype=None) -> HFCache:
        return HFCache(batch, max_len, device or next(self.parameters()).device)

    def forward(self, x: torch.Tensor, pos: Optional[torch.Tensor] = None,
                key_valid: Optional[torch.Tensor] = None, cache: Optional[HFCache] = None) -> torch.Tensor:
        B, T, _ = x.shape
        if key_valid is None:
            key_valid = torch.ones(B, T, dtype=torch.bool, device=x.device)
        if cache is not None:
            cache.valid = torch.cat([cache.valid, key_valid], dim=1)  # [B, past + T]
            key_valid = cache.valid
        if pos is None:
            past = key_valid.shape[1] - T
            pos = torch.arange(past, past + T, device=x.device).expand(B, T)
        out = self.model(inputs_embeds=x, attention_mask=key_valid.long(), position_ids=pos,
                         past_key_values=cache.hf if cache is not None else None,
                         use_cache=cache is not None)
        return out.last_hidden_state  # [B, T, D], after the final norm
