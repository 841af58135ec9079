import pytest
import torch

pytest.importorskip("transformers")

from lm_testkit import toy_tts_batch  # noqa: E402

from espnet2.speechlm.inference import ModalityTable, SearchConfig  # noqa: E402
from espnet2.speechlm.models import build_speechlm, load_pretrained, save_pretrained  # noqa: E402

HF_CONF = dict(model_type="llama", overrides=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                                    num_attention_heads=4, num_key_value_heads=2, vocab_size=8))


def _model(vocab):
    torch.manual_seed(0)
    return build_speechlm("delay", "hf", HF_CONF, vocab.size, vocab.max_streams).eval()


def test_hf_body_trains_and_decodes(vocab, tmp_path):
    model = _model(vocab)
    seq, weight, lengths, prefix_lengths, _ = toy_tts_batch(vocab, n=3)
    loss, stats, _ = model(seq, weight, lengths)
    loss.backward()
    assert torch.isfinite(loss)
    table = ModalityTable.from_vocab(vocab)
    cfg = SearchConfig(method="greedy", max_len_ratio=1.5)
    cached = model.generate(seq, prefix_lengths, cfg, table)
    uncached = model.generate(seq, prefix_lengths, cfg, table, use_cache=False)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(cached, uncached))
    save_pretrained(model, tmp_path / "m")
    loaded = load_pretrained(tmp_path / "m").eval()
    assert torch.allclose(loaded(seq, weight, lengths)[0], model(seq, weight, lengths)[0], atol=1e-6)
