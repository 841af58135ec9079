"""Multi-scale LM (RQ-Transformer / UniAudio style): a global body over frames and a small
local Transformer over the streams of one frame.

    global:  h_t = body(sum_k E[seq[<=t, k]])                      # [B, T, D], one step per frame
    local:   z = local([h_t, E[s_0], ..., E[s_{nq-2}]])            # [nq, D] for frame t+1
             p(s_k | h_t, s_<k) = softmax(head_k(z_k))
Stream k of a frame is conditioned on streams < k of the *same* frame without any delay,
at the cost of nq small local steps per frame at inference.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn

from espnet2.speechlm.models.bodies.builtin import BuiltinBody, BuiltinBodyConfig
from espnet2.speechlm.models.heads import HeadRanges
from espnet2.speechlm.models.multistream import MULTISTREAM_LMS
from espnet2.speechlm.models.multistream.abs_lm import AbsMultiStreamLM, Feats
from espnet2.speechlm.models.multistream.patterns import parallel_pattern


@MULTISTREAM_LMS.register("multiscale")
class MultiScaleLM(AbsMultiStreamLM):
    def __init__(self, body: nn.Module, vocab_size: int, n_streams: int, shared_head: bool = False,
                 local_layers: int = 2, local_heads: int = 4, local_ff_mult: float = 2.75,
                 head_ranges: Optional[HeadRanges] = None):
        super().__init__(body, vocab_size, n_streams, shared_head, head_ranges)
        D = body.d_model
        self.local = BuiltinBody(BuiltinBodyConfig(
            d_model=D, n_layer=local_layers, n_head=local_heads, n_kv_head=local_heads,
            d_ff=int(local_ff_mult * D), max_len=n_streams + 1))
        self.pattern = parallel_pattern(n_streams)  # the global body reads whole frames

    def local_hidden(self, h: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        """h [M, D] (global state), prev [M, k] (streams < k of the frame) -> [M, k + 1, D]."""
        return self.local(torch.cat([h[:, None], self.embed(prev)], dim=1))

    def forward(self, seq: torch.Tensor, weight: torch.Tensor, lengths: torch.Tensor, feats: Optional[Feats] = None
                ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor], torch.Tensor]:
        T = int(lengths.max())
        seq, weight = seq[:, :T], weight[:, :T]
        h = self.body(self.embed_rows(seq[:, :-1], feats))  # [B, T-1, D]
        tgt, w = seq[:, 1:], weight[:, 1:]  # [B, T-1, nq]
        sel = (w > 0).any(dim=-1)  # [B, T-1] frames with something to learn
        z = self.local_hidden(h[sel], tgt[sel][:, :-1])  # [M, nq, D] (teacher forcing)
        return self.weighted_loss(z[:, None], tgt[sel][:, None], w[sel][:, None])

    # ---- decoding hooks --------------------------------------------------------------
    def new_cache(self, batch: int, max_len: int):
        return self.body.new_cache(batch, max_len)

    def next_frame(self, rows, pos, valid, cache) -> "LocalFrame":
        h = self.body(self.embed_rows(rows), pos, valid, cache)[:, -1]  # [N, D]
        return LocalFrame(self, h, use_cache=cache is not None)


class LocalFrame:
    """Scores stream k of the next frame given the streams already chosen in it.

    With `use_cache` the local Transformer keeps its own KV cache for the frame, so
    stream k feeds one new position (E[s_{k-1}]) instead of re-running all k + 1:
    nq local positions per frame instead of nq (nq + 1) / 2. Streams must then be asked
    for in order 0, 1, ... (as the decoding loop does); skipped ones are fed in one chunk.
    """

    def __init__(self, model: MultiScaleLM, h: torch.Tensor, use_cache: bool = False, cache=None, fed: int = 0):
        self.model, self.h = model, h  # h [N, D]
        self.use_cache = use_cache
        if use_cache and cache is None:
            cache = model.local.new_cache(h.shape[0], model.n_streams)
        self.cache, self.fed = cache, fed  # fed: local positions [h, E(s_0), ...] already in the cache

    def stream_logits(self, k: int, prev: torch.Tensor) -> torch.Tensor:
        """prev [N, >= k] streams 0..k-1 of this frame (global ids) -> logits of stream k [N, V_k]."""
        if not self.use_cache:
            z = self.model.local_hidden(self.h, prev[:, :k])[:, k]  # [N, D], recomputed from scratch
        else:
            if k < self.fed:  # position k is already in the cache
                raise RuntimeError("a cached LocalFrame scores each stream once, in increasing order")
            new = self.model.embed(prev[:, max(self.fed - 1, 0):k])  # [N, k - fed (+1), D]
            if self.fed == 0:
                new = torch.cat([self.h[:, None], new], dim=1)  # position 0 is the global state
            z = self.model.local(new, cache=self.cache)[:, -1]  # [N, D], position k
            self.fed = k + 1
        return self.model.head_logits(z, k).float()

    def select(self, idx: torch.Tensor) -> "LocalFrame":
        """Reorder rows (beam search). The cache is reordered in place: drop the old frame."""
        cache = self.cache.select(idx) if self.cache is not None else None
        return LocalFrame(self.model, self.h[idx], self.use_cache, cache, self.fed)
