"""A HuggingFace causal LM as a body: feeds `inputs_embeds`, returns the last hidden state.

We load the *base* model (`AutoModel`, e.g. LlamaModel) rather than the CausalLM, since
the multi-stream wrapper owns the output heads. Remote code is off unless asked for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn as nn

from espnet2.speechlm.models.bodies import BODIES


@dataclass
class HFBodyConfig:
    model: str = ""  # local dir or hub id; with from_pretrained=False only its config is used
    model_type: str = ""  # build from scratch from `AutoConfig.for_model(model_type, **overrides)`
    overrides: dict = field(default_factory=dict)  # config fields to change (hidden_size, ...)
    from_pretrained: bool = True
    trust_remote_code: bool = False
    max_len: int = 4096  # only used to size our own bookkeeping


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


@BODIES.register("hf")
class HFBody(nn.Module):
    config_class = HFBodyConfig

    def __init__(self, cfg: HFBodyConfig):
        super().__init__()
        try:
            from transformers import AutoConfig, AutoModel
        except ImportError as e:  # pragma: no cover
            raise ImportError("the 'hf' body needs `pip install transformers`") from e
        self.cfg = cfg
        kw = dict(trust_remote_code=cfg.trust_remote_code)
        if cfg.model and cfg.from_pretrained:
            self.model = AutoModel.from_pretrained(cfg.model, **kw, **cfg.overrides)
        else:
            if cfg.model:
                hf_cfg = AutoConfig.from_pretrained(cfg.model, **kw, **cfg.overrides)
            elif cfg.model_type:
                hf_cfg = AutoConfig.for_model(cfg.model_type, **cfg.overrides)
            else:
                raise ValueError("hf body: set `model` (dir / hub id) or `model_type`")
            self.model = AutoModel.from_config(hf_cfg, **kw)
        self.d_model = self.model.config.hidden_size

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
