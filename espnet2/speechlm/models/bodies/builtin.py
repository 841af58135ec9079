"""A small Llama-style decoder: RoPE, RMSNorm, SwiGLU, grouped-query attention.

Parameter names follow HuggingFace Llama (`layers.{i}.self_attn.q_proj`, `mlp.gate_proj`,
`input_layernorm`, `post_attention_layernorm`, `norm`) so Llama checkpoints map onto
this body by dropping the `model.` prefix (RoPE uses the same rotate-half layout).

Padding convention. Training batches are right-padded: padded positions sit after
every real one, so plain causal attention never lets a real query see them and no
mask is needed. Generation left-pads prompts so all rows advance in lock-step;
`key_valid [B, Tk]` marks the real keys and `pos [B, T]` gives each row its own
positions (counted from its first real token), so a left-padded row computes exactly
what it would compute alone.

`causal=False` makes a bidirectional encoder (every query sees every real key; used by
the Vall-E NAR stage). It has no KV cache, and right-padded batches then need
`key_valid`, since real queries could otherwise attend to the padding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from espnet2.speechlm.models.bodies import BODIES
from espnet2.speechlm.models.decode_weights import DecodeWeight, cpu_decoding

try:  # optional fast path, only used on CUDA for unmasked causal attention
    from flash_attn import flash_attn_func  # type: ignore
except Exception:  # pragma: no cover - not installed on CPU machines
    flash_attn_func = None


@dataclass
class BuiltinBodyConfig:
    d_model: int = 512
    n_layer: int = 8
    n_head: int = 8
    n_kv_head: int = 8  # < n_head gives grouped-query attention
    d_ff: int = 1376  # SwiGLU hidden size (Llama uses ~8/3 * d_model)
    max_len: int = 4096  # longest position RoPE tables are built for
    rope_theta: float = 10000.0
    dropout: float = 0.0
    norm_eps: float = 1e-5
    causal: bool = True  # False: bidirectional attention (no KV cache)

    def __post_init__(self):
        assert self.d_model % self.n_head == 0, "d_model must be divisible by n_head"
        assert self.n_head % self.n_kv_head == 0, "n_head must be a multiple of n_kv_head"


class KVCache:
    """Pre-allocated keys/values for every layer, shared write position for all rows.

    k, v: [n_layer, B, n_kv_head, S, head_dim]; valid: [B, S] marks real (non-pad) keys.
    Rows advance together (left-padded prompts), so one integer `length` suffices.
    `padded` remembers whether any written key is padding, so a batch without padding
    never builds a mask (and never syncs to ask).
    """

    def __init__(self, n_layer: int, batch: int, n_kv_head: int, max_len: int, head_dim: int,
                 device: torch.device, dtype: torch.dtype):
        self.k = torch.zeros(n_layer, batch, n_kv_head, max_len, head_dim, device=device, dtype=dtype)
        self.v = torch.zeros_like(self.k)
        self.valid = torch.zeros(batch, max_len, dtype=torch.bool, device=device)
        self.length = 0
        self.padded = False

    @property
    def max_len(self) -> int:
        return self.k.shape[3]

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write k, v [B, Hkv, T, Dh] at the current position; return all keys so far."""
        t0, t1 = self.length, self.length + k.shape[2]
        if t1 > self.max_len:
            raise RuntimeError(f"KV cache overflow: {t1} > {self.max_len} positions")
        ks, vs = self.k[layer, :, :, :t1], self.v[layer, :, :, :t1]  # views [B, Hkv, t1, Dh]
        ks[:, :, t0:] = k
        vs[:, :, t0:] = v
        return ks, vs

    def mark(self, t0: int, key_valid: Optional[torch.Tensor], T: int) -> None:
        """Record which of the keys t0 .. t0 + T - 1 are real (None: all of them)."""
        if key_valid is None:
            self.valid[:, t0:t0 + T] = True
        else:
            self.valid[:, t0:t0 + T] = key_valid
            self.padded = self.padded or not bool(key_valid.all())

    def select(self, idx: torch.Tensor) -> "KVCache":
        """Keep / reorder / duplicate batch rows (beam search, dropping finished rows)."""
        self.k = self.k.index_select(1, idx)
        self.v = self.v.index_select(1, idx)
        self.valid = self.valid.index_select(0, idx)
        if self.padded:  # dropping rows may have dropped the only padded ones
            self.padded = not bool(self.valid[:, :self.length].all())
        return self


class RMSNorm(nn.Module):
    """x / rms(x) * g: LayerNorm without centring or bias (computed in fp32)."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float32:  # one fused op, same arithmetic as below
            return F.rms_norm(x, self.weight.shape, self.weight, self.eps)
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return xf.type_as(x) * self.weight


class Rotary(nn.Module):
    """RoPE: rotate each (i, i + Dh/2) channel pair by angle pos * theta^(-2i/Dh).

    Tables are stored full width so the rotation is x * cos + swap_halves(x) * sin with
    sin's first half negated: out = [x1 cos - x2 sin, x2 cos + x1 sin] (rotate-half layout).
    """

    def __init__(self, head_dim: int, max_len: int, theta: float):
        super().__init__()
        inv_freq = theta ** (-torch.arange(0, head_dim, 2).float() / head_dim)  # [Dh/2]
        angles = torch.outer(torch.arange(max_len).float(), inv_freq)  # [max_len, Dh/2]
        self.register_buffer("cos", torch.cat([angles.cos(), angles.cos()], dim=-1), persistent=False)  # [max_len, Dh]
        self.register_buffer("sin", torch.cat([-angles.sin(), angles.sin()], dim=-1), persistent=False)

    @property
    def max_len(self) -> int:
        return self.cos.shape[0]

    def forward(self, pos: torch.Tensor, check: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """pos [B, T] -> cos, sin [B, T, 1, Dh] (broadcast over heads of a [B, T, H, Dh] tensor)."""
        if check and int(pos.max()) >= self.max_len:
            raise ValueError(f"position {int(pos.max())} >= max_len {self.max_len}")
        return self.cos[pos].unsqueeze(2), self.sin[pos].unsqueeze(2)

    def span(self, start: int, T: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Positions start .. start + T - 1 for every row: cos, sin [1, T, 1, Dh] (views, no gather)."""
        if start + T > self.max_len:
            raise ValueError(f"position {start + T - 1} >= max_len {self.max_len}")
        return self.cos[start:start + T, None][None], self.sin[start:start + T, None][None]


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [B, T, H, Dh]; rotate-half layout (HF Llama compatible), computed in fp32."""
    xf = x if x.dtype == torch.float32 else x.float()
    out = torch.addcmul(xf * cos, xf.roll(x.shape[-1] // 2, dims=-1), sin)
    return out if out.dtype == x.dtype else out.type_as(x)


class Attention(nn.Module):
    def __init__(self, cfg: BuiltinBodyConfig):
        super().__init__()
        self.n_head, self.n_kv_head = cfg.n_head, cfg.n_kv_head
        self.head_dim = cfg.d_model // cfg.n_head
        self.q_proj = nn.Linear(cfg.d_model, cfg.n_head * self.head_dim, bias=False)
        self.k_proj = nn.Linear(cfg.d_model, cfg.n_kv_head * self.head_dim, bias=False)
        self.v_proj = nn.Linear(cfg.d_model, cfg.n_kv_head * self.head_dim, bias=False)
        self.o_proj = nn.Linear(cfg.n_head * self.head_dim, cfg.d_model, bias=False)
        self.dropout = cfg.dropout
        self.causal = cfg.causal
        self._qkv, self._o = DecodeWeight.of(self.q_proj, self.k_proj, self.v_proj), DecodeWeight.of(self.o_proj)

    def project(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
        """x [B, T, D] -> rotated q [B, H, T, Dh], rotated k and v [B, Hkv, T, Dh]."""
        B, T, _ = x.shape
        Dh, H = self.head_dim, self.n_head
        q = apply_rotary(self.q_proj(x).view(B, T, H, Dh), cos, sin)
        k = apply_rotary(self.k_proj(x).view(B, T, -1, Dh), cos, sin)
        v = self.v_proj(x).view(B, T, -1, Dh)
        return q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)

    def forward(self, x, cos, sin, mask: Optional[torch.Tensor], cache: Optional[KVCache], layer: int):
        q, k, v = self.project(x, cos, sin)
        if cache is not None:
            k, v = cache.update(layer, k, v)  # [B, Hkv, Tk, Dh]
        return self.o_proj(self.attend(q, k, v, mask))

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
        """q [B, H, T, Dh], k / v [B, Hkv, Tk, Dh] -> [B, T, H * Dh]."""
        B, _, T, _ = q.shape
        p = self.dropout if self.training else 0.0
        if flash_attn_func is not None and q.is_cuda and mask is None and q.dtype in (torch.float16, torch.bfloat16):
            # flash-attn wants [B, T, H, Dh]; aligns causal to the bottom-right like the cached case
            y = flash_attn_func(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), dropout_p=p,
                                causal=self.causal)
            return y.reshape(B, T, -1)
        is_causal = self.causal and mask is None and T > 1  # unmasked: plain causal (T == Tk) or one query
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p, is_causal=is_causal,
                                           enable_gqa=self.n_kv_head != self.n_head)  # [B, H, T, Dh]
        return y.transpose(1, 2).reshape(B, T, -1)


class MLP(nn.Module):
    """SwiGLU: down(silu(gate(x)) * up(x))."""

    def __init__(self, cfg: BuiltinBodyConfig):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.d_model, cfg.d_ff, bias=False)
        self.up_proj = nn.Linear(cfg.d_model, cfg.d_ff, bias=False)
        self.down_proj = nn.Linear(cfg.d_ff, cfg.d_model, bias=False)
        self._gate_up, self._down = DecodeWeight.of(self.gate_proj, self.up_proj), DecodeWeight.of(self.down_proj)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    """Pre-norm block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, cfg: BuiltinBodyConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.mlp = MLP(cfg)
        self.drop = nn.Dropout(cfg.dropout) if cfg.dropout > 0 else nn.Identity()

    def forward(self, x, cos, sin, mask, cache, layer):
        if cpu_decoding(x):
            return self.decode(x, cos, sin, mask, cache, layer)
        x = x + self.drop(self.self_attn(self.input_layernorm(x), cos, sin, mask, cache, layer))
        return x + self.drop(self.mlp(self.post_attention_layernorm(x)))

    def decode(self, x, cos, sin, mask, cache, layer):
        """The same block for CPU inference (see models.decode_weights): [in, out] weight
        copies, q/k/v and gate/up each one matmul, q and k rotated together, and no module
        call per projection (at one new position per row a call costs about what its math does)."""
        a, mlp = self.self_attn, self.mlp
        B, T, _ = x.shape
        H, Hkv = a.n_head, a.n_kv_head
        qkv = a._qkv.matmul(self.input_layernorm(x)).view(B, T, H + 2 * Hkv, a.head_dim)
        qk = apply_rotary(qkv[:, :, :H + Hkv], cos, sin).transpose(1, 2)  # [B, H + Hkv, T, Dh]
        q, k, v = qk[:, :H], qk[:, H:], qkv[:, :, H + Hkv:].transpose(1, 2)
        if cache is not None:
            k, v = cache.update(layer, k, v)  # [B, Hkv, Tk, Dh]
        x = x + a._o.matmul(a.attend(q, k, v, mask))
        gate, up = mlp._gate_up.matmul(self.post_attention_layernorm(x)).chunk(2, dim=-1)
        return x + mlp._down.matmul(F.silu(gate) * up)


@BODIES.register("builtin")
class BuiltinBody(nn.Module):
    config_class = BuiltinBodyConfig

    def __init__(self, cfg: BuiltinBodyConfig):
        super().__init__()
        self.cfg = cfg
        self.d_model = cfg.d_model
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.n_layer))
        self.norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.rotary = Rotary(cfg.d_model // cfg.n_head, cfg.max_len, cfg.rope_theta)
        # Activation checkpointing, switched on from outside by the trainer (a training
        # concern, not part of the saved config): each block's activations are recomputed
        # in backward instead of stored. Never used with a KV cache or without autograd.
        self.grad_checkpointing = False
        self.apply(self._init)
        for name, p in self.named_parameters():  # GPT-2 style: scale residual writers by depth
            if name.endswith(("o_proj.weight", "down_proj.weight")):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init(m: nn.Module):
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.02)

    @property
    def context_len(self) -> int:
        """Longest sequence (prompt + generation) the RoPE tables cover."""
        return self.rotary.max_len

    def new_cache(self, batch: int, max_len: int, device=None, dtype=None) -> KVCache:
        if not self.cfg.causal:
            raise ValueError("a bidirectional (causal=False) body has no KV cache")
        if max_len > self.rotary.max_len:
            raise ValueError(f"a KV cache of {max_len} positions exceeds the body's max_len {self.rotary.max_len}")
        p = next(self.parameters())
        c = self.cfg
        return KVCache(c.n_layer, batch, c.n_kv_head, max_len, c.d_model // c.n_head,
                       device or p.device, dtype or p.dtype)

    def forward(self, x: torch.Tensor, pos: Optional[torch.Tensor] = None,
                key_valid: Optional[torch.Tensor] = None, cache: Optional[KVCache] = None) -> torch.Tensor:
        """x [B, T, D] -> h [B, T, D].

        pos [B, T]: per-row positions (default: 0.. or continuing the cache).
        key_valid [B, T]: False for left-padding positions of *these* T inputs; with a
        cache, earlier validity is remembered in `cache.valid`.
        """
        if not self.cfg.causal:
            return self._forward_bidirectional(x, pos, key_valid, cache)
        B, T, _ = x.shape
        past = cache.length if cache is not None else 0
        if pos is None:  # the same positions in every row
            cos, sin = self.rotary.span(past, T)
        else:  # a cache no longer than the RoPE table keeps every position in range (see new_cache)
            cos, sin = self.rotary(pos, check=cache is None)
        mask = None
        if cache is not None:
            cache.mark(past, key_valid, T)
            key_valid = cache.valid[:, :past + T] if cache.padded else None
        if key_valid is not None and not bool(key_valid.all()):
            mask = self._mask(key_valid, T, past)
        elif past > 0 and T > 1:  # chunk after a cache without padding: offset causal mask
            mask = self._mask(torch.ones(B, past + T, dtype=torch.bool, device=x.device), T, past)
        for i, layer in enumerate(self.layers):
            x = self._run_layer(layer, x, cos, sin, mask, cache, i)
        if cache is not None:
            cache.length += T
        return self.norm(x)

    def _forward_bidirectional(self, x: torch.Tensor, pos: Optional[torch.Tensor],
                               key_valid: Optional[torch.Tensor], cache) -> torch.Tensor:
        """Every query sees every real key (and itself, so a padded query is never empty)."""
        if cache is not None:
            raise ValueError("a bidirectional (causal=False) body cannot use a KV cache")
        B, T, _ = x.shape
        cos, sin = self.rotary.span(0, T) if pos is None else self.rotary(pos)
        mask = None
        if key_valid is not None and not bool(key_valid.all()):
            eye = torch.eye(T, dtype=torch.bool, device=x.device)  # [T, T]
            mask = (key_valid[:, None, :] | eye).unsqueeze(1)  # [B, 1, T, T]
        for i, layer in enumerate(self.layers):
            x = self._run_layer(layer, x, cos, sin, mask, None, i)
        return self.norm(x)

    def _run_layer(self, layer: DecoderLayer, x, cos, sin, mask, cache, i: int) -> torch.Tensor:
        if self.grad_checkpointing and cache is None and torch.is_grad_enabled():
            # non-reentrant: accepts inputs that need no grad (cos, sin, mask), and restores the
            # RNG state so the recomputed dropout masks are the ones of the forward pass
            return checkpoint(layer, x, cos, sin, mask, None, i, use_reentrant=False)
        return layer(x, cos, sin, mask, cache, i)

    @staticmethod
    def _mask(key_valid: torch.Tensor, T: int, past: int) -> torch.Tensor:
        """[B, 1, T, Tk] bool: query i (absolute past+i) sees key j <= past+i that is real.

        A padded query would see nothing (NaN softmax), so every query also sees itself.
        """
        Tk = key_valid.shape[1]
        qi = torch.arange(past, past + T, device=key_valid.device)[:, None]  # [T, 1]
        kj = torch.arange(Tk, device=key_valid.device)[None, :]  # [1, Tk]
        causal = kj <= qi  # [T, Tk]
        return ((causal & key_valid[:, None, :]) | (kj == qi)).unsqueeze(1)  # [B, 1, T, Tk]

