"""hf_text: a HuggingFace tokenizer loaded by path keeps its own ids; snapshot, decode, errors."""

from __future__ import annotations

import numpy as np
import pytest

from espnet2.speechlm.tokenizers import build_tokenizer, train_tokenizer
from espnet2.speechlm.tokenizers.hf_text import _visible

pytest.importorskip("transformers")

SENTENCES = ["hello world", "the cat sat on the mat", "héllo wörld, how are you?", "tab\tand\nnewline"]


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    """A tiny byte-level BPE tokenizer, trained offline and saved like a hub folder."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    raw.train_from_iterator(SENTENCES, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=raw, bos_token="<|endoftext|>", eos_token="<|endoftext|>")
    fast.add_tokens(["<extra>"])
    d = tmp_path_factory.mktemp("hf_tok")
    fast.save_pretrained(str(d))
    return d


@pytest.fixture(scope="module")
def reference(hf_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(hf_dir))


def test_ids_are_the_hf_ids(hf_dir, reference):
    tok = build_tokenizer("hf_text", None, model=str(hf_dir))
    assert tok.codebook_size == len(reference) and tok.n_streams == 1
    out = tok.tokenize(SENTENCES + ["an <extra> token", ""])
    for text, ids in zip(SENTENCES, out):
        assert ids.dtype == np.int64 and ids.ndim == 2 and ids.shape[1] == 1
        assert ids[:, 0].tolist() == reference(text, add_special_tokens=False)["input_ids"]
        assert tok.detokenize(ids) == text  # byte-level BPE is lossless
    assert out[-1].shape == (0, 1)
    assert reference.convert_tokens_to_ids("<extra>") in out[-2][:, 0]
    for text, ids in zip(SENTENCES, out):  # batched == one by one
        np.testing.assert_array_equal(tok.tokenize([text])[0], ids)


def test_special_tokens_option(hf_dir, reference):
    tok = build_tokenizer("hf_text", None, model=str(hf_dir))
    eos = reference.eos_token_id
    ids = tok.tokenize(["hello"])[0]
    with_eos = np.vstack([ids, [[eos]]])
    assert tok.detokenize(with_eos) == "hello<|endoftext|>"
    skip = build_tokenizer("hf_text", None, model=str(hf_dir), skip_special_tokens=True)
    assert skip.detokenize(with_eos) == "hello"


def test_token_strings_are_one_line_each(hf_dir, reference):
    tok = build_tokenizer("hf_text", None, model=str(hf_dir))
    strings = tok.token_strings()
    assert len(strings) == tok.codebook_size
    assert strings[0] == "<|endoftext|>" and strings[-1] == "<extra>"
    assert not any(c.isspace() for s in strings for c in s)
    assert _visible("a b\n") == "a\\x20b\\x0a" and _visible("") == "<empty>"


def test_snapshot_is_self_contained(hf_dir, tmp_path):
    import shutil

    src = tmp_path / "src"
    shutil.copytree(hf_dir, src)
    out = tmp_path / "tok"
    trained = train_tokenizer("hf_text", ["ignored"], out, model=str(src))
    shutil.rmtree(src)  # the source disappears (hub changed, offline): the snapshot still loads
    loaded = build_tokenizer("hf_text", out, model=str(src))
    assert loaded.token_strings() == trained.token_strings()
    for a, b in zip(trained.tokenize(SENTENCES), loaded.tokenize(SENTENCES)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="holds a copy of"):
        build_tokenizer("hf_text", out, model="other/model")


def test_errors(hf_dir, tmp_path, monkeypatch):
    tok = build_tokenizer("hf_text", None, model=str(hf_dir))
    with pytest.raises(TypeError, match="list of strings"):
        tok.tokenize("hello")
    with pytest.raises(TypeError, match="item 1 must be a str"):
        tok.tokenize(["a", 3])
    with pytest.raises(ValueError, match=r"ids must lie in \[0, "):
        tok.detokenize(np.array([[tok.codebook_size]]))
    with pytest.raises(ValueError, match="needs `model`"):
        build_tokenizer("hf_text", None)
    with pytest.raises(FileNotFoundError, match="looks like a local path"):
        build_tokenizer("hf_text", None, model=str(tmp_path / "missing" / "dir"))
    with pytest.raises(ValueError, match="unknown conf keys"):
        build_tokenizer("hf_text", None, model=str(hf_dir), add_bos=True)

    import transformers

    def offline(*a, **k):
        raise OSError("We couldn't connect to 'https://huggingface.co'")

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", offline)
    with pytest.raises(OSError, match="hub id 'org/llm'.*pass the local folder"):
        build_tokenizer("hf_text", None, model="org/llm")
