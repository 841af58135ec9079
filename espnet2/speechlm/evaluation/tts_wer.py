"""Intelligibility of generated speech: transcribe with a recognizer, then WER
(and CER) against the reference text. Both sides are normalised the same way
(lowercase + no punctuation by default, since recognizers differ in casing).
The transcript is kept as a side output (``utt2asr_text``).

Recognizer settings go in ``recognizer_conf``, e.g. a cheaper PocketSphinx search
for long unintelligible outputs (see asr_backends.py)::

    - name: tts_wer
      recognizer_conf: {decoder_options: {maxhmmpf: 10000}}
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional

from espnet2.speechlm.evaluation.asr_backends import build_recognizer
from espnet2.speechlm.evaluation.base import METRICS, Audio, Metric, UttResult
from espnet2.speechlm.evaluation.text_norm import normalize_text
from espnet2.speechlm.evaluation.wer import char_errors, word_errors


@METRICS.register("tts_wer")
class TTSWER(Metric):
    name = "tts_wer"
    default_hyp = "wav.scp"
    default_ref = "text"
    higher_is_better = False

    def __init__(
        self, recognizer: str = "pocketsphinx", recognizer_conf: Optional[Dict[str, Any]] = None,
        model_dir: Optional[str] = None, lowercase: bool = True, remove_punctuation: bool = True,
    ):
        conf = dict(recognizer_conf or {})
        if model_dir is not None:
            conf["model_dir"] = model_dir
        self.recognizer = build_recognizer(recognizer, **conf)
        self.lowercase, self.remove_punctuation = lowercase, remove_punctuation

    def score(self, hyp: Audio, ref: str) -> UttResult:
        text = self.recognizer(hyp)
        h = normalize_text(text, self.lowercase, self.remove_punctuation)
        r = normalize_text(ref, self.lowercase, self.remove_punctuation)
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

    def info(self) -> Dict[str, object]:
        return {"recognizer": self.recognizer.description, "lowercase": self.lowercase, "remove_punctuation": self.remove_punctuation}
