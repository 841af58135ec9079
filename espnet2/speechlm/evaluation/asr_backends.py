"""Recognizers for ASR-based metrics (``tts_wer``).

``pocketsphinx`` (offline default): CMU PocketSphinx 5 with the US-English
acoustic/language model shipped inside the PyPI wheel. Weak but fully offline,
adequate for spotting broken TTS output; absolute WERs are high. Its cost is
dominated by the search, not by our code: with the default (wide) beams it runs
at about 0.4x real time on speech but 1.5-2x real time on noise-like audio (an
untrained TTS model's output), where beam pruning never bites and every frame
keeps ``maxhmmpf`` (30000) HMMs alive. Scoring in parallel (``--nj``) is the
result-preserving speed-up; ``maxhmmpf`` (e.g. 5000-10000) is a cheaper search
that may change a few hypotheses, and it is recorded in summary.json.
``whisper``: a transformers Whisper (or other seq2seq ASR) checkpoint loaded only
from a local folder.
"""

from __future__ import annotations

import builtins
from typing import Any, Callable, Dict, Optional

import numpy as np

from espnet2.speechlm.evaluation.base import Audio
from espnet2.speechlm.evaluation.data_io import resample
from espnet2.speechlm.evaluation.speaker_embed import require_local_model_dir
from espnet2.speechlm.registry import Registry

RECOGNIZERS: Registry[Callable[..., "Recognizer"]] = Registry("recognizer")


class Recognizer:
    description: str = ""

    def __call__(self, audio: Audio) -> str:
        raise NotImplementedError


@RECOGNIZERS.register("pocketsphinx")
class PocketSphinx(Recognizer):
    """``hmm``/``lm``/``dict``: model files (default: the bundled en-us model).
    ``decoder_options``: further PocketSphinx settings (``maxhmmpf``, ``beam``,
    ``fwdflat``, ...), passed as is; a non-default search changes the numbers, so
    it is part of ``description``."""

    def __init__(
        self, hmm: Optional[str] = None, lm: Optional[str] = None, dict: Optional[str] = None,
        decoder_options: Optional[Dict[str, Any]] = None,
    ):
        import pocketsphinx

        kwargs: Dict[str, Any] = {"samprate": 16000, "loglevel": "FATAL"}
        for key, val in (("hmm", hmm), ("lm", lm), ("dict", dict)):
            if val is not None:
                kwargs[key] = val
        options = builtins.dict(decoder_options or {})  # `dict` is the pronunciation-dictionary argument here
        clash = sorted(set(options) & {"samprate", "loglevel", "hmm", "lm", "dict"})
        if clash:
            raise ValueError(f"pocketsphinx decoder_options may not set {clash}: they are fixed or have their own option")
        try:
            self.decoder = pocketsphinx.Decoder(**kwargs, **options)
        except KeyError as e:  # pocketsphinx reports an unknown setting as KeyError(b'name')
            key = e.args[0].decode() if isinstance(e.args[0], bytes) else e.args[0]
            raise ValueError(f"pocketsphinx decoder_options: unknown setting {key!r}") from None
        self.description = "pocketsphinx (bundled en-us model)" if hmm is None else f"pocketsphinx ({hmm})"
        if options:
            self.description += " " + " ".join(f"{k}={v}" for k, v in sorted(options.items()))

    def __call__(self, audio: Audio) -> str:
        wav = resample(audio, 16000).wav
        pcm = (np.clip(wav, -1.0, 1.0) * 32767).astype("<i2").tobytes()
        # Without this the feature front end carries state over from the previous
        # utterance (measured: scores and sometimes words change), so a hypothesis
        # would depend on scoring order and on how utterances are split among --nj workers.
        self.decoder.reinit_feat()
        self.decoder.start_utt()
        self.decoder.process_raw(pcm, full_utt=True)
        self.decoder.end_utt()
        hyp = self.decoder.hyp()
        return hyp.hypstr if hyp is not None else ""


@RECOGNIZERS.register("whisper")
class LocalWhisper(Recognizer):
    def __init__(self, model_dir: Optional[str] = None, language: Optional[str] = "en", device: str = "cpu", max_new_tokens: int = 225):
        path = require_local_model_dir(model_dir, "tts_wer recognizer 'whisper'")
        from transformers import AutoModelForSpeechSeq2Seq, AutoProcessor

        self.processor = AutoProcessor.from_pretrained(path, local_files_only=True)
        self.model = AutoModelForSpeechSeq2Seq.from_pretrained(path, local_files_only=True).to(device).eval()
        self.device, self.language, self.max_new_tokens = device, language, max_new_tokens
        self.description = f"whisper ({path.name})"

    def __call__(self, audio: Audio) -> str:
        import torch

        wav = resample(audio, 16000).wav
        feats = self.processor(wav, sampling_rate=16000, return_tensors="pt").input_features.to(self.device)
        gen_kwargs = {"max_new_tokens": self.max_new_tokens}
        if self.language:
            gen_kwargs.update(language=self.language, task="transcribe")
        with torch.no_grad():
            ids = self.model.generate(feats, **gen_kwargs)
        return self.processor.batch_decode(ids, skip_special_tokens=True)[0].strip()


def build_recognizer(name: str, **options) -> Recognizer:
    return RECOGNIZERS.get(name)(**options)
