"""Offline built-in audio tokenizer: log-mel frames -> residual vector quantisation.

Why it exists: every recipe needs an audio tokenizer that works without
downloading a neural codec. This one is trained in the recipe from the
recipe's own audio (k-means, minutes on CPU) and decodes back to an
intelligible waveform with Griffin-Lim.

Pipeline (one frame = one hop of `hop_length` samples):

    wav [N] --STFT--> |X| [F, T] --mel fbank--> M [n_mels, T]
        --log, normalise--> z [T, n_mels] --RVQ--> codes [T, n_streams]

Residual VQ with codebooks C_1..C_K (each [codebook_size, n_mels]):

    r_0 = z
    c_k = argmin_j || r_{k-1} - C_k[j] ||^2          (stage k code)
    r_k = r_{k-1} - C_k[c_k]                         (what stage k+1 sees)
    z_hat = sum_k C_k[c_k]                           (dequantised frame)

Decoding reverses it: z_hat -> un-normalise -> exp -> mel -> linear magnitude
(|X| ~= max(pinv(fbank) @ mel, 0)) -> waveform (librosa Griffin-Lim phase estimate).
The clipped pseudo-inverse matches librosa's NNLS `mel_to_stft` to ~1e-6 relative
error on speech here but is ~100x faster, so decoding is dominated by Griffin-Lim.

Files written by `train` (no pickle):
    mel_rvq.json            config + format tag
    mel_rvq.safetensors     codebooks [n_streams, codebook_size, n_mels],
                            mean [n_mels], std [n_mels]
"""

from __future__ import annotations

from contextlib import contextmanager
import warnings
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np

from espnet2.speechlm.tokenizers.abs_tokenizer import AbsTokenizer, register_tokenizer
from espnet2.speechlm.tokenizers.audio_io import check_waveform, merge_load_conf, read_trained, save_trained

FORMAT = "espnet-speechlm-mel_rvq/1"
LOG_FLOOR = 1e-5  # magnitude floor before log: silence maps to log(1e-5) ~ -11.5


# --------------------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------------------
@dataclass
class MelRVQConfig:
    """Everything that fixes the token <-> audio mapping (saved next to the codebooks)."""

    sample_rate: int = 16000
    n_fft: int = 1024
    hop_length: int = 320  # 50 frames/s at 16 kHz (see bench/tokenizer_roundtrip_wer.py)
    win_length: Optional[int] = None  # None -> n_fft
    n_mels: int = 80
    fmin: float = 0.0
    fmax: Optional[float] = None  # None -> sample_rate / 2
    n_streams: int = 8
    codebook_size: int = 256
    griffin_lim_iters: int = 32

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    @property
    def bitrate(self) -> float:
        """bits/s if every code were stored with log2(codebook_size) bits."""
        return self.frame_rate * self.n_streams * float(np.log2(self.codebook_size))

    def validate(self) -> None:
        if self.n_streams < 1 or self.codebook_size < 2:
            raise ValueError(f"need n_streams >= 1 and codebook_size >= 2, got {self.n_streams}, {self.codebook_size}")
        if self.hop_length < 1 or self.n_fft < self.hop_length:
            raise ValueError(f"need 1 <= hop_length <= n_fft, got hop {self.hop_length}, n_fft {self.n_fft}")


# --------------------------------------------------------------------------------------
# input checking
# --------------------------------------------------------------------------------------
# --------------------------------------------------------------------------------------
# features: waveform <-> log-mel
# --------------------------------------------------------------------------------------
@contextmanager
def quiet_short_input():
    """Clips shorter than n_fft are fine (zero-padded frames); silence librosa's warning."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="n_fft=.* is too large")
        yield


class LogMel:
    """wav [N] -> log-mel [T, n_mels] and back (mel inversion + Griffin-Lim)."""

    def __init__(self, cfg: MelRVQConfig):
        import librosa  # imported lazily: importing librosa costs seconds

        self.cfg = cfg
        self._librosa = librosa
        # [n_mels, 1 + n_fft // 2] triangular filters (Slaney-normalised, as librosa's default)
        self.fbank = librosa.filters.mel(
            sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.fmax
        ).astype(np.float32)
        self.fbank_pinv = np.linalg.pinv(self.fbank.astype(np.float64))  # [1 + n_fft // 2, n_mels]

    def n_frames(self, n_samples: int) -> int:
        """Centered STFT: one frame every hop, the first centered on sample 0."""
        return 1 + n_samples // self.cfg.hop_length

    def __call__(self, wav: np.ndarray) -> np.ndarray:
        cfg = self.cfg
        with quiet_short_input():
            spec = self._librosa.stft(
                wav, n_fft=cfg.n_fft, hop_length=cfg.hop_length, win_length=cfg.win_length, center=True
            )  # [F, T] complex
        mel = self.fbank @ np.abs(spec)  # [n_mels, T] magnitude mel
        return np.log(np.maximum(mel, LOG_FLOOR)).T.astype(np.float32)  # [T, n_mels]

    def invert(self, logmel: np.ndarray, n_iter: int, seed: int = 0) -> np.ndarray:
        """log-mel [T, n_mels] -> waveform [(T - 1) * hop]."""
        cfg = self.cfg
        if logmel.shape[0] <= 1:  # 0 or 1 frame: less than one hop of audio
            return np.zeros(0, dtype=np.float32)
        mel = np.exp(logmel.astype(np.float64)).T  # [n_mels, T]
        # least-norm |X| with fbank @ |X| ~= mel, clipped to be a magnitude
        mag = np.maximum(self.fbank_pinv @ mel, 0.0)  # [F, T]
        with quiet_short_input():
            wav = self._librosa.griffinlim(
                mag,
                n_iter=n_iter,
                hop_length=cfg.hop_length,
                win_length=cfg.win_length,
                n_fft=cfg.n_fft,
                center=True,
                length=(logmel.shape[0] - 1) * cfg.hop_length,
                random_state=seed,
            )
        return wav.astype(np.float32)


# --------------------------------------------------------------------------------------
# residual vector quantisation
# --------------------------------------------------------------------------------------
def nearest(x: np.ndarray, codebook: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """Index of the closest centroid for every row.

    x [N, D], codebook [K, D] -> [N] int64. Each row is coded on its own, so batching
    cannot change a code (up to float64 rounding in the matmul deciding an exact tie).
    ||x - c||^2 = ||x||^2 - 2 x.c + ||c||^2 and ||x||^2 is constant per row.
    """
    cb = codebook.astype(np.float64)
    c2 = (cb**2).sum(1)  # [K]
    out = np.empty(len(x), dtype=np.int64)
    for s in range(0, len(x), chunk):
        xs = x[s : s + chunk].astype(np.float64)  # [n, D]
        d = c2[None, :] - 2.0 * xs @ cb.T  # [n, K]
        out[s : s + chunk] = d.argmin(1)
    return out


def rvq_encode(z: np.ndarray, codebooks: np.ndarray) -> np.ndarray:
    """z [T, D], codebooks [K, C, D] -> codes [T, K]."""
    residual = z.astype(np.float64)
    codes = np.empty((len(z), len(codebooks)), dtype=np.int64)
    for k, cb in enumerate(codebooks):
        codes[:, k] = nearest(residual, cb)
        residual = residual - cb[codes[:, k]]
    return codes


def rvq_decode(codes: np.ndarray, codebooks: np.ndarray) -> np.ndarray:
    """codes [T, k] (k <= K, coarse-to-fine prefix) -> z_hat [T, D] = sum of centroids."""
    z = np.zeros((codes.shape[0], codebooks.shape[2]), dtype=np.float64)
    for k in range(codes.shape[1]):
        z += codebooks[k][codes[:, k]]
    return z.astype(np.float32)


def rvq_train(
    z: np.ndarray, n_streams: int, codebook_size: int, seed: int = 0, max_iter: int = 50
) -> np.ndarray:
    """Fit K k-means codebooks greedily on successive residuals. z [N, D] -> [K, C, D]."""
    from sklearn.cluster import MiniBatchKMeans

    residual = z.astype(np.float64)
    n_unique = len(np.unique(z, axis=0))
    books = []
    for k in range(n_streams):
        # fewer distinct frames than centroids: k-means would fail, so pad the codebook
        # with copies (those extra ids are simply never chosen by `nearest`)
        n_clusters = min(codebook_size, max(1, n_unique))
        km = MiniBatchKMeans(
            n_clusters=n_clusters,
            batch_size=max(1024, 4 * n_clusters),
            n_init=1,
            max_iter=max_iter,
            random_state=seed + k,
        ).fit(residual)
        cb = km.cluster_centers_
        if n_clusters < codebook_size:
            cb = np.concatenate([cb, np.repeat(cb[:1], codebook_size - n_clusters, axis=0)])
        books.append(cb)
        residual = residual - cb[nearest(residual, cb)]
    return np.stack(books).astype(np.float32)


# --------------------------------------------------------------------------------------
# the tokenizer
# --------------------------------------------------------------------------------------
@register_tokenizer("mel_rvq")
class MelRVQTokenizer(AbsTokenizer):
    """Log-mel + residual k-means codebooks; `n_streams` codes per frame."""

    def __init__(self, cfg: MelRVQConfig, codebooks: np.ndarray, mean: np.ndarray, std: np.ndarray):
        cfg.validate()
        if codebooks.shape != (cfg.n_streams, cfg.codebook_size, cfg.n_mels):
            raise ValueError(
                f"codebooks have shape {codebooks.shape}, config says "
                f"({cfg.n_streams}, {cfg.codebook_size}, {cfg.n_mels})"
            )
        self.cfg = cfg
        self.codebooks = codebooks.astype(np.float32)  # [K, C, n_mels]
        self.mean = mean.astype(np.float32)  # [n_mels]
        self.std = std.astype(np.float32)  # [n_mels]
        self.codebook_size = cfg.codebook_size
        self.n_streams = cfg.n_streams
        self.frame_rate = cfg.frame_rate
        self.sample_rate = cfg.sample_rate
        self.logmel = LogMel(cfg)

    # --- features ---------------------------------------------------------------------
    def features(self, wav: np.ndarray) -> np.ndarray:
        """wav [N] -> normalised log-mel [T, n_mels] (what the codebooks quantise)."""
        return (self.logmel(wav) - self.mean) / self.std

    def vocode(self, z: np.ndarray, n_iter: Optional[int] = None) -> np.ndarray:
        """normalised log-mel [T, n_mels] -> waveform [(T - 1) * hop]."""
        n_iter = self.cfg.griffin_lim_iters if n_iter is None else n_iter
        return self.logmel.invert(z * self.std + self.mean, n_iter=n_iter)

    def dequantize(self, tokens: np.ndarray) -> np.ndarray:
        """[T, k] codes (k <= n_streams, a coarse prefix is allowed) -> normalised log-mel [T, n_mels]."""
        tokens = np.asarray(tokens)
        if tokens.ndim != 2 or not 1 <= tokens.shape[1] <= self.n_streams:
            raise ValueError(f"mel_rvq: expected tokens [T, k<= {self.n_streams}], got shape {tokens.shape}")
        if tokens.size and (tokens.min() < 0 or tokens.max() >= self.codebook_size):
            raise ValueError(f"mel_rvq: token ids must lie in [0, {self.codebook_size})")
        return rvq_decode(tokens.astype(np.int64), self.codebooks)

    # --- AbsTokenizer -----------------------------------------------------------------
    def tokenize(self, items: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Batch of waveforms -> list of codes [T_i, n_streams].

        Features are computed per item (each has its own STFT padding); all frames are
        then quantised in one pass, which gives exactly the per-item result because
        every frame is coded independently.
        """
        if isinstance(items, np.ndarray):
            raise TypeError("mel_rvq.tokenize takes a list of waveforms; wrap a single one as [wav]")
        feats = [self.features(check_waveform(w, i, "mel_rvq")) for i, w in enumerate(items)]  # [T_i, n_mels]
        if not feats:
            return []
        codes = rvq_encode(np.concatenate(feats), self.codebooks)  # [sum T_i, K]
        bounds = np.cumsum([len(f) for f in feats])[:-1]
        return [np.ascontiguousarray(c) for c in np.split(codes, bounds)]

    def detokenize(self, tokens: np.ndarray) -> np.ndarray:
        """[T, k] codes -> float32 waveform of (T - 1) * hop samples at `sample_rate`."""
        return self.vocode(self.dequantize(tokens))

    def token_strings(self) -> list[str]:
        return [f"m{i}" for i in range(self.codebook_size)]

    # --- training and persistence -----------------------------------------------------
    @classmethod
    def needs_training(cls) -> bool:
        return True

    @classmethod
    def train(
        cls,
        items: Iterable[np.ndarray],
        out_dir: Path,
        max_frames: int = 200_000,
        seed: int = 0,
        kmeans_iters: int = 50,
        **conf,
    ) -> "MelRVQTokenizer":
        """Fit normalisation stats and RVQ codebooks on frames of `items`, save to out_dir.

        At most `max_frames` frames (a uniform random subset) go into k-means, which
        keeps training time bounded on large corpora.
        """
        unknown = set(conf) - {f.name for f in fields(MelRVQConfig)}
        if unknown:
            raise ValueError(
                f"mel_rvq: unknown option(s) {sorted(unknown)}; valid: "
                f"{[f.name for f in fields(MelRVQConfig)] + ['max_frames', 'seed', 'kmeans_iters']}"
            )
        cfg = MelRVQConfig(**conf)
        cfg.validate()
        logmel = LogMel(cfg)
        frames = [logmel(check_waveform(w, i, "mel_rvq")) for i, w in enumerate(items)]
        if not frames:
            raise ValueError("mel_rvq.train: got no waveforms")
        x = np.concatenate(frames)  # [N, n_mels]
        if len(x) > max_frames:
            x = x[np.sort(np.random.default_rng(seed).choice(len(x), max_frames, replace=False))]
        mean = x.mean(0)
        std = np.maximum(x.std(0), 1e-3)
        codebooks = rvq_train((x - mean) / std, cfg.n_streams, cfg.codebook_size, seed, kmeans_iters)
        tok = cls(cfg, codebooks, mean, std)
        tok.save(Path(out_dir))
        return tok

    def save(self, out_dir: Path) -> None:
        save_trained(out_dir, "mel_rvq", FORMAT, asdict(self.cfg),
                     {"codebooks": self.codebooks, "mean": self.mean, "std": self.std})

    @classmethod
    def load(cls, model_dir: Optional[Path], **conf) -> "MelRVQTokenizer":
        """Read a trained tokenizer; `griffin_lim_iters` in conf may override the saved one."""
        meta, arrays = read_trained(model_dir, "mel_rvq", FORMAT)
        merge_load_conf(meta, conf, "mel_rvq", runtime=("griffin_lim_iters",))
        return cls(MelRVQConfig(**meta), arrays["codebooks"], arrays["mean"], arrays["std"])
