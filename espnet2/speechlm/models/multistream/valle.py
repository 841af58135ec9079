"""Vall-E: an autoregressive LM over stream 0 plus a non-autoregressive LM for streams 1..nq-1.

    AR:   h = body(E[seq[:, :, 0]])                      # causal, stream 0 of every frame
          p(seq[t+1, 0] | seq[<=t, 0]) = softmax(head_0(h_t))
    NAR:  z = nar_body(sum_j vis[t, j] * E[seq[t, j]] + S[k])   # bidirectional, one pass per k
          p(seq[t, k] | ...) = softmax(head_k(z_t))

The NAR stage for stream k sees every condition token (all streams) and, in the target
frames, only streams < k; S[k] is a learned stream-index embedding. "Visible" is decided
per token from the loss weights: a token is hidden from stage k iff it is a target
(w > 0) of a stream j >= k. At inference the prefix is all conditions and the generated
frames are all targets, so the same rule applies with "generated" in place of "w > 0".

Both stages share the joint-vocabulary embedding and the per-stream heads of the base
class (head 0 is the AR head, head k the NAR head of stream k), and both bodies come from
the same body class and config; the NAR copy only flips `causal=False` (plus optional
`nar_body_conf` overrides, e.g. fewer layers).

Training (`nar_streams`):
    "sample": each example trains the NAR on one stream k, drawn uniformly from the
              streams that have a target in it (Vall-E's recipe: one NAR pass per step);
    "all":    every stream k, one NAR pass each (nq - 1 passes, exact full loss).
In eval mode the forward always scores all streams, so the loss (e.g. a teacher-forced
log-likelihood) is deterministic. Either way the loss is sum(w * CE) / sum(w) over the
tokens actually predicted (AR stream-0 targets + the chosen NAR targets).

Generation: AR decoding of stream 0 with the shared loop (KV cache, any search method,
stream-0 modality masking), then greedy NAR filling, stream by stream, of the frames
whose stream-0 token belongs to a multi-stream tokenizer (ModalityTable rules; PAD elsewhere).

Continuous items (conditions, placeholders in stream 0): both stages see their projected
features in place of the placeholder embedding (`embed_rows`), in training and in
generation (AR prompt, and every NAR pass over the prefix).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn

from espnet2.speechlm.inference.decoding import PrecomputedFrame, decode
from espnet2.speechlm.inference.masking import ModalityTable
from espnet2.speechlm.inference.search import SearchConfig
from espnet2.speechlm.models.decode_weights import frozen_weights
from espnet2.speechlm.models.heads import HeadRanges
from espnet2.speechlm.models.multistream import MULTISTREAM_LMS
from espnet2.speechlm.models.multistream.abs_lm import AbsMultiStreamLM, Feats
from espnet2.speechlm.models.multistream.patterns import parallel_pattern
from espnet2.speechlm.vocab import PAD, SOS_EOS

NAR_STREAMS = ("sample", "all")


def bidirectional_copy(body: nn.Module, overrides: Optional[dict] = None) -> nn.Module:
    """A fresh body of the same class and config, with bidirectional attention."""
    cfg = getattr(body, "cfg", None)
    if cfg is None or not hasattr(cfg, "causal"):
        raise ValueError(f"valle needs a body with a bidirectional mode (a `causal` config field, "
                         f"e.g. 'builtin'); {type(body).__name__} has none")
    return type(body)(replace(cfg, **{**(overrides or {}), "causal": False}))


@MULTISTREAM_LMS.register("valle")
class ValleLM(AbsMultiStreamLM):
    def __init__(self, body: nn.Module, vocab_size: int, n_streams: int, shared_head: bool = False,
                 nar_streams: str = "sample", nar_body_conf: Optional[dict] = None,
                 head_ranges: Optional[HeadRanges] = None):
        super().__init__(body, vocab_size, n_streams, shared_head, head_ranges)
        if nar_streams not in NAR_STREAMS:
            raise ValueError(f"nar_streams must be one of {NAR_STREAMS}, got {nar_streams!r}")
        self.nar_streams = nar_streams
        self.nar_body = bidirectional_copy(body, nar_body_conf)
        assert self.nar_body.d_model == body.d_model, "the NAR body must keep d_model (shared embedding)"
        self.stream_embed = nn.Embedding(n_streams, body.d_model)  # S[k]: which stream the NAR predicts
        nn.init.normal_(self.stream_embed.weight, std=0.02)
        self.pattern = parallel_pattern(1)  # the AR decoding loop sees a one-stream sequence

    # ---- the two stages ----------------------------------------------------------------
    def nar_hidden(self, seq: torch.Tensor, is_target: torch.Tensor, k: torch.Tensor,
                   valid: torch.Tensor, feats: Optional[Feats] = None) -> torch.Tensor:
        """seq / is_target [M, T, nq], k [M] (stream to predict), valid [M, T] -> [M, T, D].

        Target tokens of streams >= k are hidden; everything else is summed per frame.
        feats: side features of the placeholders of continuous items (conditions: visible).
        """
        stream = torch.arange(self.n_streams, device=seq.device)  # [nq]
        visible = ~(is_target & (stream >= k[:, None, None]))  # [M, T, nq]
        x = self.embed_rows(seq, feats, visible) + self.stream_embed(k)[:, None]  # [M, T, D]
        return self.nar_body(x, key_valid=valid)

    def pick_nar_streams(self, weight: torch.Tensor) -> List[torch.Tensor]:
        """weight [B, T, nq] -> list of k [B] to run the NAR with (one entry per NAR pass).

        "sample" draws one stream per example among those with targets (uniform over
        1..nq-1 if it has none; its NAR weights are all 0 then and it adds nothing).
        """
        B, nq = weight.shape[0], self.n_streams
        has = (weight[..., 1:] > 0).any(dim=1)  # [B, nq-1]
        if not bool(has.any()):
            return []  # no multi-stream targets in the batch: AR only
        if self.nar_streams == "all" or not self.training:
            return [torch.full((B,), k, dtype=torch.long, device=weight.device)
                    for k in range(1, nq) if bool(has[:, k - 1].any())]
        probs = torch.where(has.any(dim=1, keepdim=True), has.float(), torch.ones_like(has, dtype=torch.float))
        return [torch.multinomial(probs, 1).squeeze(1) + 1]  # [B] in 1..nq-1

    def forward(self, seq: torch.Tensor, weight: torch.Tensor, lengths: torch.Tensor,
                feats: Optional[Feats] = None) -> Tuple[torch.Tensor, Dict[str, torch.Tensor], torch.Tensor]:
        T = int(lengths.max())
        seq, weight = seq[:, :T], weight[:, :T]  # [B, T, nq]
        B, nq = seq.shape[0], self.n_streams
        # every loss term is on the grid of frames 1..T-1 (frame 0, the task token, is a condition)
        h_ar = self.body(self.embed_rows(seq[:, :-1, :1], feats))  # [B, T-1, D]: stream 0 of frames 1..T-1
        states = [h_ar] * nq  # stream k's state; placeholder where no NAR pass predicts k
        used = weight.new_zeros(B, nq)  # [B, nq] which (example, stream) are scored
        used[:, 0] = 1.0
        valid = torch.arange(T, device=seq.device)[None] < lengths[:, None]  # [B, T]
        for k in self.pick_nar_streams(weight):  # k [B]
            z = self.nar_hidden(seq, weight > 0, k, valid, feats)[:, 1:]  # [B, T-1, D]
            for s in k.unique().tolist():
                rows = (k == s)[:, None, None]  # [B, 1, 1]
                states[s] = z if bool(rows.all()) else torch.where(rows, z, states[s])
            used[torch.arange(B, device=k.device), k] = 1.0
        return self.weighted_loss(states, seq[:, 1:], weight[:, 1:] * used[:, None, :])

    # ---- decoding hooks: AR stage on a one-stream view ---------------------------------
    def new_cache(self, batch: int, max_len: int):
        return self.body.new_cache(batch, max_len)

    def next_frame(self, rows, pos, valid, cache) -> PrecomputedFrame:
        """rows [N, T, 1] (stream 0) -> scores of stream 0 of the next frame."""
        h = self.body(self.embed_rows(rows[..., :1]), pos, valid, cache)[:, -1]  # [N, D]
        return PrecomputedFrame([self.head_logits(h, 0).float()])  # one stream: [N, V_0]

    @torch.inference_mode()
    def fill_streams(self, prefix: torch.Tensor, prefix_lengths: torch.Tensor,
                     hyps: List[List[torch.Tensor]], table: ModalityTable,
                     feats: Optional[Feats] = None) -> List[List[torch.Tensor]]:
        """NAR stage: stream-0 continuations [T_i, 1] -> [T_i, nq], greedy, one stream at a time.

        Every hypothesis becomes one right-padded row `prefix + continuation + eos`, the
        same layout as a training sequence. feats: the prompts' side features (per example
        in order; each hypothesis row gets its example's).
        """
        device, nq = prefix.device, self.n_streams
        table = table.to(device)
        owner = [(b, i) for b, h in enumerate(hyps) for i in range(len(h))]
        if not owner:
            return hyps
        L = [int(prefix_lengths[b]) for b, _ in owner]
        G = [hyps[b][i].shape[0] for b, i in owner]
        M, T = len(owner), max(l + g for l, g in zip(L, G)) + 1
        seq = torch.full((M, T, nq), PAD, dtype=torch.long, device=device)
        gen = torch.zeros(M, T, dtype=torch.bool, device=device)  # [M, T] generated frames
        for m, ((b, i), l, g) in enumerate(zip(owner, L, G)):
            seq[m, :l] = prefix[b, :l]
            seq[m, l: l + g, 0] = hyps[b][i][:, 0]
            seq[m, l + g, 0] = SOS_EOS
            gen[m, l: l + g] = True
        ends = torch.tensor([l + g + 1 for l, g in zip(L, G)], device=device)  # [M] incl. eos
        valid = torch.arange(T, device=device)[None] < ends[:, None]  # [M, T]
        side = None
        if feats:
            per_example = self.split_features(prefix, prefix_lengths, feats)
            side = {name: torch.cat([per_example[b][name] for b, _ in owner]) for name in per_example[0]}
        tok0 = seq[..., 0][gen]  # [n_gen] stream-0 tokens of the generated frames
        heads = table.for_heads([self.head_ids(k) for k in range(nq)])
        for k in range(1, nq):
            if bool(table.streamk[table.token_range[tok0], k, PAD].all()):  # no frame has a k-th stream: PAD stays
                continue
            allowed = heads.stream_mask(tok0, k)  # [n_gen, V_k] head-k columns
            k_rows = torch.full((M,), k, dtype=torch.long, device=device)
            z = self.nar_hidden(seq, gen[..., None].expand_as(seq), k_rows, valid, side)[gen]  # [n_gen, D]
            logits = self.head_logits(z, k).float().masked_fill(~allowed, float("-inf"))
            seq[..., k][gen] = heads.to_global(k, logits.argmax(dim=-1))
        out: List[List[torch.Tensor]] = [[None] * len(h) for h in hyps]
        for m, ((b, i), l, g) in enumerate(zip(owner, L, G)):
            out[b][i] = seq[m, l: l + g].clone()
        return out

    def generate(self, prefix: torch.Tensor, prefix_lengths: torch.Tensor, search: SearchConfig,
                 modality: ModalityTable, use_cache: bool = True, feats: Optional[Feats] = None
                 ) -> List[List[torch.Tensor]]:
        was_training = self.training
        self.eval()
        try:
            with frozen_weights():
                stream0 = self.decode_prompts(decode, prefix[..., :1], prefix_lengths, search,
                                              self.forbid_continuous(modality), use_cache, feats)
                return self.fill_streams(prefix, prefix_lengths, stream0, modality, feats)
        finally:
            self.train(was_training)
