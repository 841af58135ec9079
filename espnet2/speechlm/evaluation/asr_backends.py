"""Recognizers for ASR-based metrics (``tts_wer``).

``pocketsphinx`` (offline default): CMU PocketSphinx 5 with the US-English
acoustic/language model shipped inside the PyPI wheel. Weak but fully offline,
adequate for spotting broken TTS output; absolute WERs are high.
``whisper``: a transformers Whisper (or other seq2seq ASR) checkpoint loaded only
from a local folder.
"""

from __future__ import annotations

from typing import Callable, Optional

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
    def __init__(self, hmm: Optional[str] = None, lm: Optional[str] = None, dict: Optional[str] = None):
        import pocketsphinx

        kwargs = {"samprate": 16000, "loglevel": "FATAL"}
        for key, val in (("hmm", hmm), ("lm", lm), ("dict", dict)):
            if val is not None:
                kwargs[key] = val
        self.decoder = pocketsphinx.Decoder(**kwargs)
        self.description = "pocketsphinx (bundled en-us model)" if hmm is None else f"pocketsphinx ({hmm})"

    def __call__(self, audio: Audio) -> str:
        wav = resample(audio, 16000).wav
        pcm = (np.clip(wav, -1.0, 1.0) * 32767).astype("<i2").tobytes()
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
