import torch
from decode_testkit import prompts

from espnet2.speechlm.inference import ModalityTable
from espnet2.speechlm.vocab import PAD, SOS_EOS


def test_table_ranges(vocab):
    t = ModalityTable.from_vocab(vocab)
    text, codec = vocab.range("text"), vocab.range("codec")
    i_text, i_codec = vocab.indicator("text"), vocab.indicator("codec")
    m = t.stream0_mask(torch.tensor([0, 1, t.none_index]))  # text, codec, nothing opened
    allowed = [set(row.nonzero().flatten().tolist()) for row in m]
    always = {SOS_EOS, *vocab.indicators.values()}
    assert allowed[0] == always | set(range(*text.stream_range(0)))
    assert allowed[1] == always | set(range(*codec.stream_range(0)))
    assert allowed[2] == always
    assert vocab.task("tts") not in allowed[0] | allowed[1]
    codec_tok = torch.tensor([codec.stream_range(0)[0] + 3])
    for k in range(1, 4):
        got = set(t.stream_mask(codec_tok, k)[0].nonzero().flatten().tolist())
        assert got == set(range(*codec.stream_range(k)))
        for s0 in [text.stream_range(0)[0], SOS_EOS, i_codec, i_text, PAD]:
            assert t.stream_mask(torch.tensor([s0]), k)[0].nonzero().flatten().tolist() == [PAD]


def test_initial_modality_is_latest_indicator(vocab):
    t = ModalityTable.from_vocab(vocab)
    prefix, lengths = prompts(vocab, target="codec")
    assert t.initial_modality(prefix, lengths).tolist() == [1, 1, 1]
    prefix, lengths = prompts(vocab, target="text")
    assert t.initial_modality(prefix, lengths).tolist() == [0, 0, 0]
    assert t.initial_modality(prefix[:, :1], torch.ones(3, dtype=torch.long)).tolist() == [t.none_index] * 3


def test_final_target_cannot_switch_modality(vocab):
    table = ModalityTable.from_vocab(vocab)
    final = table.final_target(vocab, "text")
    r_text = [r.name for r in vocab.ranges].index("text")
    indicators = list(vocab.indicators.values())
    assert table.stream0[r_text, indicators].all()
    assert not final.stream0[r_text, indicators].any()
    lo, hi = vocab.range("text").stream_range(0)
    assert final.stream0[r_text, lo:hi].all() and final.stream0[r_text, SOS_EOS]
    r_codec = [r.name for r in vocab.ranges].index("codec")
    assert final.stream0[r_codec, indicators].all()  # other modalities unchanged
