"""g2p_espeak beyond English: German, Spanish, French voices give their own phones, batched == one-by-one."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from espnet2.speechlm.tokenizers import build_tokenizer, train_tokenizer
from espnet2.speechlm.tokenizers.g2p import CLAUSE_SEP, EspeakPhonemizer, split_phones

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")

# language -> (training sentences, {word: phones its phonemisation must contain})
CASES = {
    "en-us": (["hello world, how are you?", "the cat sat on the mat."], {"hello": ["h", "oʊ"], "the cat": ["ð", "æ"]}),
    "de": (["Guten Morgen, wie geht es dir?", "Die Straße und die Brücke."],
           {"Straße": ["ʃ", "t", "ɑː", "s"], "Brücke": ["b", "y", "k"], "ich": ["ç"]}),
    "es": (["Buenos días, ¿cómo estás?", "El niño come pan."], {"niño": ["ɲ"], "buenos días": ["b", "w", "ð", "i"]}),
    "fr": (["Bonjour, comment ça va?", "Le garçon mange du pain."],
           {"bonjour": ["ɔ̃", "ʒ", "ʁ"], "pain": ["ɛ̃"]}),
}


def has_voice(lang: str) -> bool:
    try:
        EspeakPhonemizer(lang)
    except RuntimeError:
        return False
    return True


@pytest.fixture(scope="module", params=sorted(CASES))
def lang_tok(request, tmp_path_factory):
    lang = request.param
    if not has_voice(lang):
        pytest.skip(f"espeak-ng has no {lang} voice")
    return lang, train_tokenizer("g2p_espeak", CASES[lang][0], tmp_path_factory.mktemp(f"g2p_{lang}"), language=lang)


def test_language_specific_phones(lang_tok):
    lang, tok = lang_tok
    for word, phones in CASES[lang][1].items():
        got = tok.phonemize([word])[0]
        assert set(phones) <= set(got), (lang, word, got)
        assert "ˈ" in got  # stressed syllable marked in every language
    assert CLAUSE_SEP in tok.phonemize([CASES[lang][0][0]])[0]  # comma / question clause boundary


def test_batch_equals_one_by_one_and_inventory(lang_tok, tmp_path):
    lang, tok = lang_tok
    texts = CASES[lang][0] + list(CASES[lang][1]) + [""]
    batch = tok.tokenize(texts)
    for t, ids in zip(texts, batch):
        assert ids.dtype == np.int64 and ids.shape[1] == 1
        np.testing.assert_array_equal(tok.tokenize([t])[0], ids)
    for ids in batch[: len(CASES[lang][0])]:
        assert (ids != 0).all()  # every phone of the training text is in the inventory
    assert all("(" not in s for s in tok.token_strings())
    tok.inventory.save(tmp_path / "g2p.json", language=lang, stress="separate")
    loaded = build_tokenizer("g2p_espeak", tmp_path, language=lang)
    assert loaded.token_strings() == tok.token_strings()
    np.testing.assert_array_equal(loaded.tokenize(texts[:1])[0], batch[0])


def test_same_word_differs_by_language():
    if not (has_voice("de") and has_voice("es")):
        pytest.skip("needs the de and es voices")
    de, es = EspeakPhonemizer("de")(["Zeit"])[0], EspeakPhonemizer("es")(["Zeit"])[0]
    assert "ts" in de and de != es  # German z = /ts/


def test_language_switch_flags_are_not_phones(tmp_path):
    # espeak-ng -v fr reads English loanwords with the English voice and marks it "(en)" ... "(fr)"
    raw = ["ʒ_ə- s_y_ˌi_z a_l_ˈe o (en)_w_iː_k_ˈɛ_n_d_(fr)_ a_v_ˌɛ_k", "(fr)"]
    phones = split_phones(raw, "separate")
    assert not any("(" in p or ")" in p for p in phones)
    assert phones[-5:] == ["a", "v", "ˌ", "ɛ", "k"] and "w" in phones and CLAUSE_SEP not in phones
    if has_voice("fr"):
        tok = train_tokenizer("g2p_espeak", ["un weekend avec mon smartphone"], tmp_path, language="fr")
        assert all("(" not in s for s in tok.token_strings()) and "w" in tok.token_strings()
