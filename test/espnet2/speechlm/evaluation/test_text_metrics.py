import math

import jiwer
import pytest
import sacrebleu

from espnet2.speechlm.evaluation import build_metric
from espnet2.speechlm.evaluation.text_norm import normalize_text

CASES = [
    ("the cat sat on the mat", "the cat sat on mat"),
    ("hello world", "hello there big world"),
    ("a b c d", "x y"),
    ("same words here", "same words here"),
]


@pytest.mark.parametrize("ref,hyp", CASES)
def test_wer_matches_jiwer(ref, hyp):
    wer = build_metric({"name": "wer"})
    assert wer.score(hyp, ref)["wer"] == pytest.approx(jiwer.wer(ref, hyp))


@pytest.mark.parametrize("ref,hyp", CASES)
def test_cer_matches_jiwer(ref, hyp):
    cer = build_metric({"name": "cer"})
    assert cer.score(hyp, ref)["cer"] == pytest.approx(jiwer.cer(ref, hyp))


def test_wer_hand_counts_and_corpus_aggregation():
    wer = build_metric({"name": "wer"})
    per_utt = {"a": wer.score("the cat sat on mat", "the cat sat on the mat"), "b": wer.score("x y z", "a b")}
    # a: 1 deletion / 6 words; b: 2 subs + 1 ins / 2 words -> corpus 4 / 8
    assert per_utt["a"]["wer"] == pytest.approx(1 / 6)
    assert per_utt["b"]["wer"] == pytest.approx(3 / 2)
    assert wer.summarize(per_utt, {})["wer"] == pytest.approx(4 / 8)


def test_normalisation_options():
    assert normalize_text("Hello, World! It's well-known.", lowercase=True, remove_punctuation=True) == "hello world its well known"
    raw = build_metric({"name": "wer"})
    norm = build_metric({"name": "wer", "lowercase": True, "remove_punctuation": True})
    assert raw.score("hello world", "Hello, world!")["wer"] == 1.0
    assert norm.score("hello world", "Hello, world!")["wer"] == 0.0


def test_empty_reference_and_hypothesis():
    wer = build_metric({"name": "wer"})
    assert wer.score("", "a b")["wer"] == 1.0
    assert wer.score("a", "")["_errors"] == 1


def test_unknown_option_is_rejected():
    with pytest.raises(TypeError, match="wer"):
        build_metric({"name": "wer", "lowercse": True})


def test_bleu_and_chrf_match_sacrebleu():
    hyps = ["the cat is on the mat", "there is a dog in the house"]
    refs = ["the cat sat on the mat", "a dog is in the house"]
    bleu, chrf = build_metric({"name": "bleu"}), build_metric({"name": "chrf"})
    pairs = {str(i): (h, r) for i, (h, r) in enumerate(zip(hyps, refs))}
    per_b = {u: bleu.score(h, r) for u, (h, r) in pairs.items()}
    per_c = {u: chrf.score(h, r) for u, (h, r) in pairs.items()}
    assert bleu.summarize(per_b, pairs)["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score)
    assert chrf.summarize(per_c, pairs)["chrf"] == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs]).score)
    assert bleu.score("a b c d", "a b c d")["bleu"] == pytest.approx(100.0)


def test_perplexity_hand_computed():
    ppl = build_metric({"name": "perplexity"})
    per = {"a": ppl.score((-10.0, 5)), "b": ppl.score((-2.0, 5))}
    assert per["a"]["perplexity"] == pytest.approx(math.exp(2.0))
    assert ppl.summarize(per, {})["perplexity"] == pytest.approx(math.exp(12.0 / 10))
    with pytest.raises(ValueError):
        ppl.score((-1.0, 0))
