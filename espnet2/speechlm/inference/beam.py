"""Beam search over frames.

The beam branches on stream 0 only (the modality/content-deciding stream); streams
1..nq-1 of a hypothesis take their argmax given its stream-0 choice. A hypothesis'
score is the sum of log-probabilities of every token it chose (no length
normalisation; use `min_len_ratio` against too-short outputs).

With a delay pattern a hypothesis that emitted eos still needs a few steps to finish
its delayed streams; such "pending" hypotheses keep their beam slot until complete
(they expand to a single forced candidate and are ranked first). A complete one
moves to the finished list and its slot becomes free (score -inf). An example stops
when it has `nbest` finished hypotheses none of the live ones can beat (scores only
decrease), when no live hypothesis is left, or at the forced maximum length.
"""

from __future__ import annotations

import torch

from espnet2.speechlm.inference.search import SEARCHES, SearchConfig

_PRIORITY = 1e9  # ranking bonus that keeps pending hypotheses in the beam


@SEARCHES.register("beam")
class BeamSearch:
    def __init__(self, cfg: SearchConfig, device: torch.device):
        self.cfg = cfg
        self.width = cfg.beam_size
        self.finished: dict[int, list[tuple[float, torch.Tensor]]] = {}

    def init_scores(self, n_examples: int, device) -> torch.Tensor:
        # all copies of a prompt are identical: only the first may expand at step 0
        s = torch.full((n_examples, self.width), float("-inf"), device=device)
        s[:, 0] = 0.0
        return s.flatten()

    def choose_first(self, logits0: torch.Tensor, forced0: torch.Tensor, score: torch.Tensor, ended: torch.Tensor):
        """logits0 [N, V] masked, N = n_examples * W -> (parent [N], tok0 [N], score [N])."""
        N, V = logits0.shape
        W = self.width
        cand = score[:, None] + logits0.float().log_softmax(dim=-1)  # [N, V]
        forced = forced0 >= 0
        if forced.any():  # a forced row has exactly one candidate at unchanged score
            one = torch.full_like(cand, float("-inf"))
            one.scatter_(1, forced0.clamp(min=0)[:, None], score[:, None])
            cand = torch.where(forced[:, None], one, cand)
        pending = (ended & torch.isfinite(score)).float() * _PRIORITY  # [N]
        rank = (cand + pending[:, None]).view(-1, W * V)  # [Bx, W*V]
        top = rank.topk(W, dim=1).indices  # [Bx, W]
        new_score = cand.view(-1, W * V).gather(1, top)
        parent = top // V + torch.arange(0, N, W, device=top.device)[:, None]
        return parent.flatten(), (top % V).flatten(), new_score.flatten()

    def choose_rest(self, logits: torch.Tensor, score: torch.Tensor):
        lp = logits.float().log_softmax(dim=-1)
        tok = lp.argmax(dim=-1)
        return tok, score + lp.gather(1, tok[:, None]).squeeze(1)

    def finish(self, rows, done: torch.Tensor, results) -> torch.Tensor:
        W = self.width
        live = torch.isfinite(rows.score)
        for n in (done & live).nonzero().flatten().tolist():
            ex = int(rows.example[n])
            frames = rows.frames[n, : int(rows.eos_at[n])].clone()
            self.finished.setdefault(ex, []).append((float(rows.score[n]), frames))
        rows.score = rows.score.masked_fill(done, float("-inf"))  # free the slot
        score = rows.score.view(-1, W)  # [Bx, W]
        best_live = score.max(dim=1).values  # -inf when nothing is live
        keep = []
        for b in range(score.shape[0]):
            ex = int(rows.example[b * W])
            fin = sorted(self.finished.get(ex, []), key=lambda x: -x[0])
            stop = not torch.isfinite(best_live[b])
            if len(fin) >= self.cfg.nbest and fin[self.cfg.nbest - 1][0] >= float(best_live[b]):
                stop = True
            if stop:
                results[ex].extend(f for _, f in fin[: self.cfg.nbest])
                self.finished.pop(ex, None)
            else:
                keep.append(torch.arange(b * W, (b + 1) * W, device=score.device))
        return torch.cat(keep) if keep else torch.zeros(0, dtype=torch.long, device=score.device)

    def flush(self, results):
        for ex, fin in self.finished.items():
            results[ex].extend(f for _, f in sorted(fin, key=lambda x: -x[0])[: self.cfg.nbest])
        self.finished = {}
