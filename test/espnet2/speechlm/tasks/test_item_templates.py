"""Built-in templates with their real item tokenizers: index files -> readers -> tokenizers -> assemble."""

from __future__ import annotations

import numpy as np
import soundfile as sf

from espnet2.speechlm.data.assemble import Segment, assemble
from espnet2.speechlm.data.readers import ReadContext, get_reader
from espnet2.speechlm.tasks.template import load_template
from espnet2.speechlm.tokenizers import build_tokenizer, train_tokenizer
from espnet2.speechlm.vocab import PAD, SOS_EOS, JointVocabulary

SCORES = {"u1": "C4:0.50:la D#4:0.25:li rest:0.30", "u2": "A4:1.00:lu 62:0.20"}
TEXTS = {"u1": "a red car", "u2": "blue sky"}


def write_data(d):
    d.mkdir()
    rng = np.random.default_rng(0)
    lines = {"score": [], "text": [], "vision.scp": [], "wav.scp": []}
    for j, utt in enumerate(sorted(SCORES)):
        sf.write(d / f"{utt}.wav", (0.3 * np.sin(np.arange(3200 + 800 * j) * 0.05)).astype(np.float32), 16000)
        np.save(d / f"{utt}.npy", rng.integers(0, 32, size=5 + j).astype(np.int16))  # [T] vision tokens
        lines["score"].append(f"{utt} {SCORES[utt]}")
        lines["text"].append(f"{utt} {TEXTS[utt]}")
        lines["vision.scp"].append(f"{utt} {d / (utt + '.npy')}")
        lines["wav.scp"].append(f"{utt} {d / (utt + '.wav')}")
    for name, rows in lines.items():
        (d / name).write_text("\n".join(rows) + "\n")
    return {name: dict(r.split(" ", 1) for r in rows) for name, rows in lines.items()}


def test_svs_and_visual_tts_assemble_with_their_tokenizers(tmp_path):
    tables = write_data(tmp_path / "data")
    toks = {
        "music_score": train_tokenizer("music_score", list(SCORES.values()), tmp_path / "ms", max_duration=4.0),
        "vision": build_tokenizer("precomputed", None, codebook_size=32),
        "text": train_tokenizer("char", list(TEXTS.values()), tmp_path / "char"),
        "codec": build_tokenizer("toy_tokenizers:ToyAudioTokenizer", None, codebook_size=16),
    }
    for task in ("svs", "visual_tts"):
        t = load_template(task)
        vocab = JointVocabulary()
        vocab.add_task(task)
        for name in t.tokenizers:
            vocab.add_tokenizer(name, type(toks[name]).__name__, toks[name].codebook_size, toks[name].n_streams)
        ctx = ReadContext(tmp_path / "data", sample_rate=16000)
        for utt in sorted(SCORES):
            segs = []
            for j, it in enumerate(t.items):
                raw = get_reader(it.reader)(utt, tables[it.name][utt], ctx)
                tokens = toks[it.tokenizer].tokenize([raw])[0]
                segs.append(Segment(it.tokenizer, tokens, j >= len(t.conditions)))
            seq, w = assemble(vocab, task, segs)
            assert seq.shape == (2 + sum(1 + s.tokens.shape[0] for s in segs), 2) and seq.shape == w.shape
            assert seq[0, 0] == vocab.task(task) and seq[-1, 0] == SOS_EOS
            pos = 1
            for seg, it in zip(segs, t.items):
                n, k = seg.tokens.shape
                assert seq[pos, 0] == vocab.indicator(it.tokenizer)
                body = seq[pos + 1 : pos + 1 + n]
                assert (body[:, k:] == PAD).all()
                local = vocab.to_local(it.tokenizer, body[:, :k])
                np.testing.assert_array_equal(local, seg.tokens)
                if it.tokenizer == "music_score":  # the score comes back out of the sequence
                    assert toks["music_score"].detokenize(local) == SCORES[utt].replace("62:", "D4:")
                    assert n == 3 * len(SCORES[utt].split())
                if it.tokenizer == "vision":
                    np.testing.assert_array_equal(local[:, 0], np.load(tables["vision.scp"][utt]))
                assert (w[pos + 1 : pos + 1 + n, :k] > 0).all() == seg.is_target
                pos += 1 + n
            assert [s.tokenizer for s in segs if s.is_target] == ["codec"]
