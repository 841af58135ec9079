import numpy as np
import pytest

from espnet2.speechlm.data.assemble import Segment, assemble
from espnet2.speechlm.tasks.template import TaskTemplate, builtin_tasks, load_template
from espnet2.speechlm.vocab import PAD, SOS_EOS, JointVocabulary

# streams of the tokenizer names the built-in templates use
SHAPES = {"text": (20, 1), "g2p": (12, 1), "codec": (8, 3), "codec_ssl": (8, 4), "spk_id": (4, 1),
          "music_score": (10, 1), "vision": (6, 1), "spk_embedding": (1, 1)}


def test_every_builtin_assembles_correctly():
    names = builtin_tasks()
    assert {"asr", "tts", "textlm", "audiolm", "mt", "st", "s2st", "se", "tse", "svs", "visual_tts",
            "text_to_audio", "text_to_music", "audio_caption", "codec_ssl_asr", "codec_ssl_tts",
            "codec_ssl_audiolm", "codec_ssl_denoise"} <= set(names)
    for name in names:
        t = load_template(name)
        vocab = JointVocabulary()
        vocab.add_task(t.task)
        for tok in t.tokenizers:
            vocab.add_tokenizer(tok, "fake", *SHAPES[tok])
        rng = np.random.default_rng(0)
        segs = []
        for j, it in enumerate(t.items):
            cb, n = SHAPES[it.tokenizer]
            segs.append(Segment(it.tokenizer, rng.integers(0, cb, size=(3 + j, n)), j >= len(t.conditions)))
        seq, w = assemble(vocab, t.task, segs, loss_weights={"codec": 0.5})
        nq = vocab.max_streams
        assert seq.shape == w.shape == (sum(s.tokens.shape[0] + 1 for s in segs) + 2, nq), name
        assert seq[0, 0] == vocab.task(t.task) and (seq[0, 1:] == PAD).all()
        assert seq[-1, 0] == SOS_EOS and w[-1, 0] == 1
        pos = 1
        for seg in segs:
            assert seq[pos, 0] == vocab.indicator(seg.tokenizer), name
            assert w[pos, 0] == float(seg.is_target)
            body = seq[pos + 1 : pos + 1 + seg.tokens.shape[0]]
            n = seg.tokens.shape[1]
            np.testing.assert_array_equal(vocab.to_local(seg.tokenizer, body[:, :n]), seg.tokens)
            assert (body[:, n:] == PAD).all()
            wb = w[pos + 1 : pos + 1 + seg.tokens.shape[0]]
            expected = (0.5 if seg.tokenizer == "codec" else 1.0) if seg.is_target else 0.0
            assert (wb[:, :n] == expected).all() and (wb[:, n:] == 0).all(), name
            pos += 1 + seg.tokens.shape[0]


def test_user_template_from_yaml_dir(tmp_path):
    (tmp_path / "emotion_tts.yaml").write_text(
        "task: emotion_tts\nconditions:\n  - {name: emotion, tokenizer: emo, reader: label}\n"
        "  - {name: text, tokenizer: text}\ntargets:\n  - {name: wav.scp, tokenizer: codec, reader: audio}\n")
    t = load_template("emotion_tts", [tmp_path])
    assert t.task == "emotion_tts" and [i.name for i in t.conditions] == ["emotion", "text"]
    assert load_template(str(tmp_path / "emotion_tts.yaml")) == t


@pytest.mark.parametrize("body,match", [
    ("task: x\n", "at least one target"),
    ("task: x\ntargets:\n  - {name: text, tokenizer: text, reader: bogus}\n", "unknown reader"),
    ("task: x\ntargets:\n  - {name: text}\n", "bad item"),
    ("task: x\nfoo: 1\ntargets:\n  - {name: text, tokenizer: t}\n", "unknown template keys"),
    ("task: x\nconditions:\n  - {name: text, tokenizer: t}\ntargets:\n  - {name: text, tokenizer: t}\n", "used twice"),
])
def test_bad_templates_are_refused_with_file_name(tmp_path, body, match):
    p = tmp_path / "bad.yaml"
    p.write_text(body)
    with pytest.raises(ValueError, match=match) as e:
        load_template(str(p))
    assert "bad.yaml" in str(e.value)


def test_unknown_template_lists_builtins():
    with pytest.raises(FileNotFoundError, match="asr"):
        load_template("no_such_task")
