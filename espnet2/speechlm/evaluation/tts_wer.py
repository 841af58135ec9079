"""Intelligibility of generated speech: transcribe with a recognizer, then WER
(and CER) against the reference text. Both sides go through the same text
normalisation. The transcript is kept as a side output (``utt2asr_text``).

``recognizer: auto`` (default) is Whisper tiny.en through faster-whisper when it is
installed, else PocketSphinx (see asr_backends.py); ``recognizer_conf`` then takes
one option dict per candidate::

    - name: tts_wer
      recognizer: auto
      recognizer_conf: {pocketsphinx: {decoder_options: {maxhmmpf: 10000}}}

``normalizer``: ``whisper_en`` is Whisper's English text normaliser (numbers as
digits, contractions and British spellings expanded, fillers dropped: how Whisper
WERs are reported); ``basic`` lowercases and drops punctuation (``lowercase``,
``remove_punctuation``); ``auto`` (default) is ``whisper_en`` for a Whisper
recognizer, else ``basic``. The recognizer and normaliser used are named in
summary.json and below the RESULTS.md table.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, Mapping, Optional

from espnet2.speechlm.evaluation.asr_backends import build_recognizer
from espnet2.speechlm.evaluation.base import METRICS, Audio, Metric, UttResult
from espnet2.speechlm.evaluation.text_norm import normalize_text, whisper_english_normalizer, whisper_normalizer_available
from espnet2.speechlm.evaluation.wer import char_errors, word_errors

NORMALIZERS = ("auto", "whisper_en", "basic")


@METRICS.register("tts_wer")
class TTSWER(Metric):
    name = "tts_wer"
    default_hyp = "wav.scp"
    default_ref = "text"
    higher_is_better = False

    def __init__(
        self, recognizer: str = "auto", recognizer_conf: Optional[Dict[str, Any]] = None,
        model_dir: Optional[str] = None, normalizer: str = "auto", lowercase: bool = True, remove_punctuation: bool = True,
    ):
        if normalizer not in NORMALIZERS:
            raise ValueError(f"tts_wer normalizer must be one of {NORMALIZERS}, not {normalizer!r}")
        self.recognizer = build_recognizer(recognizer, model_dir=model_dir, **dict(recognizer_conf or {}))
        if normalizer == "auto":
            normalizer = "basic"
            if self.recognizer.whisper:
                if whisper_normalizer_available():
                    normalizer = "whisper_en"
                else:
                    logging.getLogger(__name__).warning(
                        "tts_wer: whisper-normalizer is not installed, so Whisper transcripts are scored with the basic "
                        "normalisation (lowercase, no punctuation): numbers and spellings may count as errors"
                    )
        self.normalizer = normalizer
        self._whisper_norm = whisper_english_normalizer() if normalizer == "whisper_en" else None
        self.lowercase, self.remove_punctuation = lowercase, remove_punctuation

    def normalize(self, text: str) -> str:
        if self._whisper_norm is not None:
            return " ".join(self._whisper_norm(text).split())
        return normalize_text(text, self.lowercase, self.remove_punctuation)

    def score(self, hyp: Audio, ref: str) -> UttResult:
        text = self.recognizer(hyp)
        h, r = self.normalize(text), self.normalize(ref)
        we, wn = word_errors(r, h)
        ce, cn = char_errors(r, h)
        return {
            "tts_wer": we / max(wn, 1), "tts_cer": ce / max(cn, 1), "asr_text": text,
            "_w_err": we, "_w_n": wn, "_c_err": ce, "_c_n": cn,
        }

    def summarize(self, per_utt: Mapping[str, UttResult], pairs) -> Dict[str, float]:
        if not per_utt:
            return {}
        tot = {k: sum(r[k] for r in per_utt.values()) for k in ("_w_err", "_w_n", "_c_err", "_c_n")}
        return {
            "tts_wer": tot["_w_err"] / max(tot["_w_n"], 1),
            "tts_cer": tot["_c_err"] / max(tot["_c_n"], 1),
        }

    def normalizer_description(self) -> str:
        if self.normalizer == "whisper_en":
            return "whisper_en (Whisper EnglishTextNormalizer)"
        parts = [p for p, on in (("lowercase", self.lowercase), ("no punctuation", self.remove_punctuation)) if on]
        return f"basic ({', '.join(parts) or 'as is'})"

    def info(self) -> Dict[str, object]:
        info: Dict[str, object] = {"recognizer": self.recognizer.description, "normalizer": self.normalizer}
        if self.normalizer == "basic":
            info.update(lowercase=self.lowercase, remove_punctuation=self.remove_punctuation)
        return info

    def note(self) -> Optional[str]:
        return f"recognizer {self.recognizer.description}; text normalizer {self.normalizer_description()}"
