"""A random tiny model and prompts ending in a target indicator, for decoding tests (unique module name)."""

import torch

from espnet2.speechlm.models import build_speechlm
from espnet2.speechlm.vocab import PAD, JointVocabulary

TINY_BODY = dict(d_model=32, n_layer=2, n_head=4, n_kv_head=2, d_ff=64, max_len=512)


def tiny_vocab() -> JointVocabulary:
    v = JointVocabulary()
    v.add_task("tts")
    v.add_tokenizer("text", "x", 50, 1)
    v.add_tokenizer("codec", "y", 32, 4)
    return v


def random_model(arch: str, vocab: JointVocabulary, seed: int = 0):
    torch.manual_seed(seed)
    return build_speechlm(arch, "builtin", TINY_BODY, vocab.size, vocab.max_streams).eval()


def prompts(vocab: JointVocabulary, target: str = "codec", text_lens=(5, 2, 8), seed: int = 0):
    """`<task_tts> <text_start> x.. <target_start>`, right-padded -> prefix [B, T, nq], lengths [B]."""
    g = torch.Generator().manual_seed(seed)
    lo, hi = vocab.range("text").stream_range(0)
    B, nq = len(text_lens), vocab.max_streams
    lengths = torch.tensor([n + 3 for n in text_lens])
    prefix = torch.full((B, int(lengths.max()), nq), PAD)
    for b, n in enumerate(text_lens):
        prefix[b, 0, 0] = vocab.task("tts")
        prefix[b, 1, 0] = vocab.indicator("text")
        prefix[b, 2: 2 + n, 0] = torch.randint(lo, hi, (n,), generator=g)
        prefix[b, 2 + n, 0] = vocab.indicator(target)
    return prefix, lengths
