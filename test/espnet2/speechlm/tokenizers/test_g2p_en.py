"""g2p_en: clear errors when the package or its NLTK data is missing; the call path on a stand-in g2p_en."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from espnet2.speechlm.tokenizers import TOKENIZERS, build_tokenizer
from espnet2.speechlm.tokenizers.g2p_en import G2PEnTokenizer, nltk_resources

CANNED = {  # what g2p_en.G2p() returns for these texts (format of g2p_en 2.1.0)
    "hello, world...": ["HH", "AH0", "L", "OW1", " ", ",", " ", "W", "ER1", "L", "D", " ", "..."],
    "a cat": ["AH0", " ", "K", "AE1", "T"],
    "odd": ["AA1", "D", " ", "<unk>", " ", "#"],
}


def fake_nltk(version: str, present: set):
    def find(res):
        if res not in present:
            raise LookupError(f"Resource {res} not found")
        return res

    return types.SimpleNamespace(__version__=version, data=types.SimpleNamespace(find=find, path=["/nowhere"]))


def fake_g2p_module(calls: list, init_error=None):
    class G2p:
        def __init__(self):
            if init_error:
                raise init_error

        def __call__(self, text):
            calls.append(text)
            return list(CANNED[text])

    mod = types.ModuleType("g2p_en")
    mod.G2p = G2p
    return mod


ALL = {"taggers/averaged_perceptron_tagger", "taggers/averaged_perceptron_tagger_eng", "corpora/cmudict"}


def test_missing_package_says_what_to_install(monkeypatch):
    assert "g2p_en" in TOKENIZERS
    monkeypatch.setitem(sys.modules, "nltk", None)  # as on a machine without g2p_en / nltk
    with pytest.raises(ImportError, match=r"pip install g2p_en.*nltk.download.*cmudict.*g2p_espeak"):
        build_tokenizer("g2p_en", None)


@pytest.mark.parametrize("version,missing", [
    ("3.8.1", ["taggers/averaged_perceptron_tagger", "corpora/cmudict"]),
    ("3.9.2", ["taggers/averaged_perceptron_tagger", "corpora/cmudict", "taggers/averaged_perceptron_tagger_eng"]),
])
def test_missing_nltk_data_is_found_before_g2p_en_imports(monkeypatch, version, missing):
    calls = []
    monkeypatch.setitem(sys.modules, "nltk", fake_nltk(version, set()))
    monkeypatch.setitem(sys.modules, "g2p_en", None)  # importing it would try the network: must not happen
    assert nltk_resources(version) == missing
    with pytest.raises(RuntimeError, match="NLTK data") as e:
        build_tokenizer("g2p_en", None)
    assert str(missing) in str(e.value) and "NLTK_DATA" in str(e.value)
    assert calls == []


def test_data_missing_inside_g2p_is_reported(monkeypatch):
    monkeypatch.setitem(sys.modules, "nltk", fake_nltk("3.9.2", ALL))
    monkeypatch.setitem(sys.modules, "g2p_en", fake_g2p_module([], LookupError("cmudict not found")))
    with pytest.raises(RuntimeError, match="NLTK data missing .*cmudict"):
        build_tokenizer("g2p_en", None)


def test_call_path_with_stand_in(monkeypatch):
    calls = []
    monkeypatch.setitem(sys.modules, "nltk", fake_nltk("3.9.2", ALL))
    monkeypatch.setitem(sys.modules, "g2p_en", fake_g2p_module(calls))
    tok = build_tokenizer("g2p_en", None)
    assert tok.codebook_size == 1 + 7 + 24 + 45  # <unk>, space + punctuation, consonants, stressed vowels
    texts = ["hello, world...", "", "a cat", "odd"]
    out = tok.tokenize(texts)
    assert calls == ["hello, world...", "a cat", "odd"]  # empty text never reaches g2p_en
    assert [o.shape for o in out] == [(15, 1), (0, 1), (5, 1), (6, 1)] and all(o.dtype == np.int64 for o in out)
    assert tok.phones(out[0]) == ["HH", "AH0", "L", "OW1", " ", ",", " ", "W", "ER1", "L", "D", " ", ".", ".", "."]
    assert tok.phones(out[3]) == ["AA1", "D", " ", "<unk>", " ", "<unk>"] and out[3][5, 0] == 0  # unknown symbols -> <unk>
    for t, ids in zip(texts, out):
        np.testing.assert_array_equal(tok.tokenize([t])[0], ids)
    drop = build_tokenizer("g2p_en", None, stress="drop")
    assert drop.codebook_size == 1 + 7 + 24 + 15
    assert drop.phones(drop.tokenize(["a cat"])[0]) == ["AH", " ", "K", "AE", "T"]
    assert "<space>" in tok.token_strings() and "AH0" in tok.token_strings()
    with pytest.raises(NotImplementedError, match="no decoder"):
        tok.detokenize(out[0])
    with pytest.raises(TypeError, match="list of strings"):
        tok.tokenize("a cat")
    with pytest.raises(ValueError, match="stress must be keep/drop"):
        build_tokenizer("g2p_en", None, stress="attach")
    with pytest.raises(ValueError, match="unknown conf keys"):
        build_tokenizer("g2p_en", None, language="en-us")


def test_injected_phonemizer_needs_no_package():
    tok = G2PEnTokenizer(phonemizer=lambda text: ["DH", "AH0"])
    assert tok.phones(tok.tokenize(["the"])[0]) == ["DH", "AH0"]
