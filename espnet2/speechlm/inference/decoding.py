"""The frame-by-frame decoding loop shared by every pattern-based multi-stream LM.

Layout. A codebook pattern places stream k of frame t at row t + shift[k]
(delay: shift[k] = k; parallel: all 0). The model consumes one row per step. At step j
(row L + j of an example with prefix length L) stream k decides frame g = j - shift[k]
of the continuation: g < 0 is a prefix frame (copied, not predicted), g >= 0 is new.
Because shift[0] = 0 <= shift[k], the stream-0 token of frame g is always known when
stream k needs it, which is what the modality mask of stream k depends on.

Batching. Prompts are left-padded so all rows advance in lock-step; `pos` and the key
validity mask make each row compute what it would alone. Rows leave the batch (and the
KV cache) as soon as their example is done.

Lengths are counted in continuation frames, eos excluded: eos is masked before
`min_new` frames and forced at frame `max_new`; an example is done once every stream of
the frames before eos has been emitted (eos frame + max shift).

Heads. A frame scorer returns logits over the columns of each stream's head (all V ids,
or the ids of a restricted head, `model.head_ids(k)`); masks and search run on those
columns and only the chosen tokens are mapped back to global ids.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields
from typing import List, Optional, Sequence

import torch

from espnet2.speechlm.inference.masking import ModalityTable
from espnet2.speechlm.inference.search import SEARCHES, SearchConfig
from espnet2.speechlm.inference import beam, sampling  # noqa: F401  (register strategies)
from espnet2.speechlm.vocab import PAD, SOS_EOS

log = logging.getLogger(__name__)

_NEVER = 1 << 30


@dataclass
class Hyps:
    """Per-row decoding state; every tensor's first dim is the row."""

    example: torch.Tensor  # [N] input example of the row
    frames: torch.Tensor  # [N, G, nq] continuation frames (undelayed), PAD where unknown
    tail: torch.Tensor  # [N, D, nq] the last D prefix frames (PAD before the sequence start)
    modality: torch.Tensor  # [N] currently opened tokenizer (stream-0 masking)
    eos_at: torch.Tensor  # [N] continuation frame holding eos, _NEVER if none yet
    score: torch.Tensor  # [N] summed log-prob of the chosen tokens
    min_new: torch.Tensor  # [N]
    max_new: torch.Tensor  # [N]
    pos: torch.Tensor  # [N] position of the next row fed to the model
    hist: Optional[torch.Tensor] = None  # [N, S, nq] all rows fed so far (uncached decoding only)
    hist_valid: Optional[torch.Tensor] = None  # [N, S]
    hist_pos: Optional[torch.Tensor] = None  # [N, S]

    def select(self, idx: torch.Tensor) -> "Hyps":
        return Hyps(**{f.name: None if getattr(self, f.name) is None else getattr(self, f.name)[idx]
                       for f in fields(self)})


def length_budget(lengths: torch.Tensor, cfg: SearchConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """[B] prefix lengths -> (min_new, max_new) continuation frames, 1 <= max, min <= max."""
    max_new = torch.floor(lengths.double() * cfg.max_len_ratio).long().clamp(1, cfg.max_new_tokens)
    min_new = torch.ceil(lengths.double() * cfg.min_len_ratio).long()
    return torch.minimum(min_new, max_new), max_new


def context_room(model, prompt_rows: int, max_shift: int) -> Optional[int]:
    """Continuation frames that fit the body's context after `prompt_rows` prompt rows (None:
    no known limit). The KV cache holds prompt + frames + eos frame + pattern tail + 1 rows."""
    context = getattr(getattr(model, "body", None), "context_len", None)
    if context is None:
        return None
    room = int(context) - prompt_rows - max_shift - 2
    if room < 1:
        raise ValueError(f"a prompt of {prompt_rows} rows leaves no room to generate in the model's context of "
                         f"{context} positions (body max_len); shorten the condition or use a longer-context model")
    return room


def left_pad_rows(rows: torch.Tensor, lengths: torch.Tensor):
    """Right-padded rows [B, T, nq] -> left-padded [B, P, nq], valid [B, P], pos [B, P]."""
    B, T, nq = rows.shape
    P = int(lengths.max())
    shift = P - lengths  # [B] pad count per row
    j = torch.arange(P, device=rows.device)[None]  # [1, P]
    src = (j - shift[:, None]).clamp(min=0)  # [B, P]
    out = rows.gather(1, src[..., None].expand(B, P, nq))
    valid = j >= shift[:, None]
    out = out.masked_fill(~valid[..., None], PAD)
    return out, valid, src * valid


def last_frames(prefix: torch.Tensor, lengths: torch.Tensor, D: int) -> torch.Tensor:
    """[B, T, nq] -> [B, D, nq]: frames L-D .. L-1 of each example (PAD before frame 0)."""
    B, T, nq = prefix.shape
    t = lengths[:, None] - D + torch.arange(D, device=prefix.device)[None]  # [B, D]
    out = prefix.gather(1, t.clamp(min=0)[..., None].expand(B, D, nq))
    return out.masked_fill((t < 0)[..., None], PAD)


@torch.inference_mode()
def decode(model, prefix: torch.Tensor, prefix_lengths: torch.Tensor, search: SearchConfig,
           table: ModalityTable, use_cache: bool = True) -> List[List[torch.Tensor]]:
    """Generate continuations. prefix [B, T0, nq] right-padded, prefix_lengths [B].

    Returns, per example, up to nbest tensors [T_i, nq] (undelayed, eos excluded).
    `model` must provide `pattern` (with `shifts`, `build`), `new_cache(batch, max_len)`
    and `next_frame(rows, pos, valid, cache)` returning a frame scorer with
    `stream_logits(k, prev [N, k]) -> [N, V_k]` (prev: global ids already chosen in this
    row) and `select(idx)` (see `PrecomputedFrame`); optionally `head_ids(k)` (the global id
    of each of the V_k columns, None = all V ids in order).
    """
    device = prefix.device
    shifts = list(model.pattern.shifts)
    assert shifts[0] == 0 and min(shifts) == 0, "stream 0 must not be delayed"
    D, nq = max(shifts), prefix.shape[2]
    B = prefix.shape[0]
    L = prefix_lengths.to(device).long()
    table = table.to(device)
    head_ids = getattr(model, "head_ids", lambda k: None)
    heads = table.for_heads([head_ids(k) for k in range(nq)])
    eos0 = int(heads.column0(torch.tensor([SOS_EOS], device=device)))
    strategy = SEARCHES.get(search.method)(search, device)
    W = strategy.width

    min_new, max_new = length_budget(L, search)
    room = context_room(model, int(L.max()), D)
    if room is not None and int(max_new.max()) > room:  # the model's context, not the search, is the limit
        log.info("length budget clamped to %d frames: the model's context holds no more after %d prompt rows",
                 room, int(L.max()))
        max_new = max_new.clamp(max=room)
        min_new = torch.minimum(min_new, max_new)
    G = int(max_new.max()) + 1  # continuation frames incl. the eos frame
    prompt, valid, pos = left_pad_rows(model.pattern.build(prefix, fill=PAD), L)  # [B, P, nq]
    P = prompt.shape[1]

    cache = model.new_cache(B, P + G + D + 1) if use_cache else None
    frame = model.next_frame(prompt, pos, valid, cache)  # scores of the row after the prompt
    rows = Hyps(
        example=torch.arange(B, device=device),
        frames=torch.full((B, G, nq), PAD, dtype=torch.long, device=device),
        tail=last_frames(prefix, L, D),
        modality=table.initial_modality(prefix, L),
        eos_at=torch.full((B,), _NEVER, dtype=torch.long, device=device),
        score=torch.zeros(B, device=device),
        min_new=min_new, max_new=max_new, pos=L.clone(),
        hist=None if use_cache else prompt, hist_valid=None if use_cache else valid,
        hist_pos=None if use_cache else pos,
    )
    idx = torch.arange(B, device=device).repeat_interleave(W)  # W copies per example
    rows, frame = rows.select(idx), frame.select(idx)
    rows.score = strategy.init_scores(B, device)
    if cache is not None:
        cache.select(idx)

    results: List[List[torch.Tensor]] = [[] for _ in range(B)]
    neg_inf = float("-inf")
    for j in range(G + D):
        # ---- stream 0: frame j --------------------------------------------------------
        ended = rows.eos_at < j
        forced0 = torch.full_like(rows.eos_at, -1)
        forced0 = forced0.masked_fill(j >= rows.max_new, SOS_EOS).masked_fill(ended, PAD)
        mask0 = heads.stream0_mask(rows.modality).clone()  # [N, V_0] head-0 columns
        mask0[:, eos0] &= j >= rows.min_new
        logits0 = frame.stream_logits(0, forced0.new_zeros(forced0.shape[0], 0))  # [N, V_0]; no stream chosen yet
        parent, col0, score = strategy.choose_first(logits0.masked_fill(~mask0, neg_inf), heads.column0(forced0),
                                                    rows.score, ended)
        tok0 = heads.to_global(0, col0)
        if parent is not None:  # beam: hypotheses were re-ranked / duplicated
            rows, frame = rows.select(parent), frame.select(parent)
            if cache is not None:
                cache.select(parent)
        rows.score = score
        if j < G:
            rows.frames[:, j, 0] = tok0
        rows.eos_at = torch.where((tok0 == SOS_EOS) & (rows.eos_at == _NEVER), j, rows.eos_at)
        rows.modality = table.update_modality(rows.modality, tok0)
        row = [tok0]
        # ---- streams 1..nq-1: frame j - shift[k] ------------------------------------------
        for k in range(1, nq):
            g = j - shifts[k]
            if g < 0:  # still emitting a prefix frame: copy it
                tok = rows.tail[:, D + g, k]
            elif g >= G:
                tok = torch.full_like(tok0, PAD)
            else:
                mask = heads.stream_mask(rows.frames[:, g, 0], k)  # [N, V_k]
                logits = frame.stream_logits(k, torch.stack(row, dim=1))  # [N, V_k]
                col, rows.score = strategy.choose_rest(logits.masked_fill(~mask, neg_inf), rows.score)
                tok = heads.to_global(k, col)
                rows.frames[:, g, k] = tok
            row.append(tok)
        # ---- retire finished rows, feed the new row -----------------------------------
        keep = strategy.finish(rows, j - D >= rows.eos_at, results)
        if keep.numel() == 0:
            break
        row = torch.stack(row, dim=1)[:, None]  # [N, 1, nq]
        if keep.numel() < rows.example.numel():
            rows, row = rows.select(keep), row[keep]
            if cache is not None:
                cache.select(keep)
        frame = _feed(model, rows, row, cache)
        rows.pos = rows.pos + 1
    strategy.flush(results)
    return results


class PrecomputedFrame:
    """Frame scorer for models whose streams are all scored from one hidden state."""

    def __init__(self, logits: Sequence[torch.Tensor]):
        self.logits = list(logits)  # per stream k: [N, V_k] (heads may differ in width)

    def stream_logits(self, k: int, prev: torch.Tensor) -> torch.Tensor:
        return self.logits[k]

    def select(self, idx: torch.Tensor) -> "PrecomputedFrame":
        return PrecomputedFrame([x[idx] for x in self.logits])


def _feed(model, rows: Hyps, row: torch.Tensor, cache):
    """Run one new row [N, 1, nq] through the model; return the next row's frame scorer."""
    if cache is not None:
        return model.next_frame(row, rows.pos[:, None], None, cache)
    rows.hist = torch.cat([rows.hist, row], dim=1)
    rows.hist_valid = torch.cat([rows.hist_valid, torch.ones_like(rows.hist_valid[:, :1])], dim=1)
    rows.hist_pos = torch.cat([rows.hist_pos, rows.pos[:, None]], dim=1)
    return model.next_frame(rows.hist, rows.hist_pos, rows.hist_valid, None)
