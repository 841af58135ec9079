"""Tiny vocabulary, model and toy task for the model tests (unique name: importable from any test dir)."""

import torch

from espnet2.speechlm.models import build_speechlm
from espnet2.speechlm.vocab import PAD, SOS_EOS, JointVocabulary

TINY_BODY = dict(d_model=64, n_layer=2, n_head=4, n_kv_head=2, d_ff=128, max_len=256, dropout=0.0)


def tiny_vocab() -> JointVocabulary:
    v = JointVocabulary()
    v.add_task("tts")
    v.add_tokenizer("text", "x", 50, 1)
    v.add_tokenizer("codec", "y", 32, 4)
    return v


def tiny_model(arch: str, vocab: JointVocabulary, seed: int = 0, **arch_conf):
    torch.manual_seed(seed)
    return build_speechlm(arch, "builtin", TINY_BODY, vocab.size, vocab.max_streams, **arch_conf)


def toy_tts_batch(vocab: JointVocabulary, n: int = 4, n_text: int = 3, n_frames: int = 4, seed: int = 0):
    """`<task_tts> <text_start> x.. <codec_start> y.. <eos>`; loss on the codec item and eos.

    Returns seq [B, T, nq], weight [B, T, nq], lengths [B], prefix lengths [B], targets.
    Examples have different text lengths, so the batch is right-padded.
    """
    g = torch.Generator().manual_seed(seed)
    nq = vocab.max_streams
    text, codec = vocab.range("text"), vocab.range("codec")
    items, targets = [], []
    for i in range(n):
        L = n_text + (i % 2)  # ragged
        x = torch.randint(0, text.codebook_size, (L, 1), generator=g)
        y = torch.randint(0, codec.codebook_size, (n_frames, nq), generator=g)
        x, y = torch.as_tensor(vocab.to_global("text", x)), torch.as_tensor(vocab.to_global("codec", y))
        rows = [[vocab.task("tts")], [vocab.indicator("text")]] + [[int(t)] for t in x[:, 0]]
        rows += [[vocab.indicator("codec")]]
        seq = torch.full((len(rows) + n_frames + 1, nq), PAD)
        for t, r in enumerate(rows):
            seq[t, 0] = r[0]
        seq[len(rows): len(rows) + n_frames] = y
        seq[-1, 0] = SOS_EOS
        w = torch.zeros(seq.shape)
        w[len(rows) - 1, 0] = 1.0  # target indicator
        w[len(rows): len(rows) + n_frames] = 1.0
        w[-1, 0] = 1.0
        items.append((seq, w, len(rows)))
        targets.append(y)
    T = max(s.shape[0] for s, _, _ in items)
    seq = torch.full((n, T, nq), PAD)
    weight = torch.zeros(n, T, nq)
    for i, (s, w, _) in enumerate(items):
        seq[i, : len(s)], weight[i, : len(s)] = s, w
    lengths = torch.tensor([len(s) for s, _, _ in items])
    prefix_lengths = torch.tensor([p for _, _, p in items])
    return seq, weight, lengths, prefix_lengths, targets


def train_until_memorised(model, batch, max_steps: int = 300, lr: float = 3e-3):
    seq, weight, lengths = batch[:3]
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    model.train()
    for step in range(max_steps):
        loss, stats, _ = model(seq, weight, lengths)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if stats["acc"] == 1.0 and stats["loss"] < 0.05:
            break
    return stats
