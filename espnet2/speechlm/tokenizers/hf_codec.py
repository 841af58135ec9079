"""Neural audio codecs from HuggingFace transformers: EnCodec, DAC and Mimi.

Why it exists: pretrained codecs give far better audio than the offline
`mel_rvq` tokenizer, and transformers already ships all three, so one small
adapter per family is enough. Registered names: `encodec`, `dac`, `mimi`.

    codec: {type: dac, conf: {model: descript/dac_16khz, n_streams: 8, device: auto}}

Conf options (all families):
    model               hub id or local folder written by `save_pretrained`
                        (default: the family's reference checkpoint)
    n_streams           codebooks kept: the first n quantizers of the residual stack.
                        EnCodec maps it to one of `config.target_bandwidths`
                        (24 kHz model: 2, 4, 8, 16, 32 streams = 1.5 ... 24 kbit/s)
    device              "cpu", "cuda" or "auto" (cuda when available)
    batch_size          waveforms encoded per forward pass
    random_init_config  dict of config overrides: build the model from the family's
                        config class with random weights (seed `seed`) instead of
                        loading; `{}` gives the real default architecture. For tests,
                        offline demos and speed benchmarks only.
    seed                seed of the random initialisation

Batching. Each waveform of N samples gives T = ceil(N / hop) frames. It is zero-padded
to T * hop samples (at least `min_samples`) plus `right_context` samples of silence,
and frames past T are dropped. `right_context` is 0 for causal encoders (EnCodec
24 kHz, Mimi: a frame only sees samples before its end) and an upper bound of the
encoder's right receptive field otherwise (DAC). `min_samples` matters for EnCodec's
reflect padding only: a layer whose input is shorter than its left pad reflects
differently, so very short clips are first lengthened with silence. So every kept
frame sees the same samples whatever else is in the batch, and batched tokens equal
one-by-one tokens in exact arithmetic. In float32 the kernels for different batch
shapes round differently (~1e-7 relative), which flips a code whose two nearest
centroids are closer than that: 1 frame in 380 on the random-weight 24 kHz EnCodec,
none on DAC and Mimi (2 s of noise each). `batch_size: 1` is bit-exact. The transformers feature
extractors are not used for this reason: they pad to the longest item only, which
changes the last frames of a non-causal encoder.

Not supported (NotImplementedError): stereo models and EnCodec models with
`normalize` or `chunk_length_s` set (the 48 kHz one): their per-chunk scales are
needed to decode but are not tokens.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

import numpy as np

from espnet2.speechlm.tokenizers.abs_tokenizer import AbsTokenizer, register_tokenizer
from espnet2.speechlm.tokenizers.audio_io import check_waveform, resolve_device

if TYPE_CHECKING:  # torch is imported lazily: importing the tokenizer registry must stay cheap
    import torch

META_FILE = "hf_codec.json"


def inference_mode(fn):
    """`torch.inference_mode()` as a decorator, without importing torch at module import."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        import torch

        with torch.inference_mode():
            return fn(*args, **kwargs)

    return wrapper


@dataclass
class HFCodecConf:
    """Options of every family (see the module docstring)."""

    model: Optional[str] = None
    n_streams: Optional[int] = None
    device: str = "cpu"
    batch_size: int = 8
    random_init_config: Optional[dict] = None
    seed: int = 0


def encoder_reach(encoder: "torch.nn.Module", full_kernel: bool = False) -> int:
    """Upper bound, in input samples, of how far any encoder output looks right of its frame.

    Walks the Conv1d layers in definition order (= forward order for these
    SEANet/DAC encoders): a layer with kernel k, dilation d and built-in padding p
    reaches (k - 1) * d - p of its own steps right of its anchor, i.e. that many
    times the product of the strides before it, in samples. With `full_kernel` the
    padding is ignored: then it bounds the whole span of the receptive field. The
    recurrent and attention layers of these encoders are causal and add nothing.
    """
    import torch

    reach, stride = 0, 1
    for m in encoder.modules():
        if isinstance(m, torch.nn.Conv1d):
            k, d, s = m.kernel_size[0], m.dilation[0], m.stride[0]
            p = 0 if full_kernel or not isinstance(m.padding, tuple) else m.padding[0]
            reach += max(0, (k - 1) * d - p) * stride
            stride *= s
    return reach


def codebooks_from_frames(frames: "torch.Tensor", n_books: int, size: int) -> list["torch.Tensor"]:
    """Random residual codebooks fitted to latent frames [N, D] -> n_books x [size, D].

    Random-weight models only. Codebook k is drawn from a diagonal Gaussian fitted to
    the residual left by codebooks 1..k-1, so codes vary with the input as with a
    trained model; the transformers init (all-zero codebooks) would give code 0
    everywhere. Independent draws keep entries apart: near-duplicate entries would
    let float rounding between batch shapes flip codes.
    """
    import torch

    residual, books = frames.float(), []
    for _ in range(n_books):
        book = residual.mean(0) + residual.std(0).clamp(min=1e-6) * torch.randn(size, frames.shape[1])
        residual = residual - book[torch.cdist(residual, book).argmin(1)]
        books.append(book)
    return books


class HFCodecTokenizer(AbsTokenizer):
    """Shared logic; a subclass says how its family encodes, decodes and counts streams."""

    family: str = ""
    default_model: str = ""

    def __init__(self, **conf: Any):
        valid = [f.name for f in fields(HFCodecConf)]
        unknown = sorted(set(conf) - set(valid))
        if unknown:
            raise ValueError(f"{self.family}: unknown option(s) {unknown}; valid: {valid}")
        self.conf = HFCodecConf(**conf)
        if self.conf.model is not None and self.conf.random_init_config is not None:
            raise ValueError(f"{self.family}: give either `model` (load weights) or `random_init_config`, not both")
        if self.conf.batch_size < 1:
            raise ValueError(f"{self.family}: batch_size must be >= 1, got {self.conf.batch_size}")
        self.device = resolve_device(self.conf.device, self.family)
        self.model = self._build_model().to(self.device).eval()
        cfg = self.model.config
        self.check_config(cfg)
        self.sample_rate = int(cfg.sampling_rate)
        self.hop_length = self.hop(cfg)
        self.frame_rate = self.sample_rate / self.hop_length
        self.codebook_size = int(cfg.codebook_size)
        self.n_streams = self.pick_n_streams(self.conf.n_streams)
        self.right_context = 0 if self.is_causal(cfg) else self._round_up(encoder_reach(self.model.encoder))
        self.min_samples = self._round_up(encoder_reach(self.model.encoder, True)) if self.reflects(cfg) else 0

    # --- family hooks -----------------------------------------------------------------
    @staticmethod
    def classes() -> tuple[type, type]:
        """(config class, model class) from transformers."""
        raise NotImplementedError

    def hop(self, cfg) -> int:
        """Samples per output frame."""
        raise NotImplementedError

    def is_causal(self, cfg) -> bool:
        return False

    def reflects(self, cfg) -> bool:
        """True if the encoder pads with reflection (short inputs then need `min_samples`)."""
        return False

    def check_config(self, cfg) -> None:
        if getattr(cfg, "audio_channels", 1) != 1:
            raise NotImplementedError(
                f"{self.family}: only mono models are supported, got {cfg.audio_channels} channels"
            )

    def pick_n_streams(self, n: Optional[int]) -> int:
        raise NotImplementedError

    def randomize_codebooks(self, model) -> None:
        """Families whose `_init_weights` zeroes the codebooks (all codes 0) refill them here."""

    def encode(self, x: "torch.Tensor") -> "torch.Tensor":
        """[B, 1, L] float -> [B, n_streams, T] codes."""
        raise NotImplementedError

    def decode(self, codes: "torch.Tensor") -> "torch.Tensor":
        """[B, k, T] codes -> [B, L] float."""
        raise NotImplementedError

    # --- model ------------------------------------------------------------------------
    def _build_model(self):
        import torch

        config_cls, model_cls = self.classes()
        overrides = self.conf.random_init_config
        if overrides is not None:
            unknown = sorted(k for k in overrides if not hasattr(config_cls(), k))  # configs accept any key
            if unknown:
                raise ValueError(
                    f"{self.family}: bad random_init_config: {config_cls.__name__} has no field(s) {unknown}"
                )
            try:
                config = config_cls(**overrides)
            except (TypeError, ValueError) as e:
                raise ValueError(f"{self.family}: bad random_init_config {overrides}: {e}") from None
            with torch.random.fork_rng(devices=[]):  # leave the caller's RNG untouched
                torch.manual_seed(self.conf.seed)
                model = model_cls(config)
                self.randomize_codebooks(model)
            return model
        src = str(self.conf.model or self.default_model)
        if src.startswith(("/", ".", "~")) and not Path(src).expanduser().is_dir():
            raise FileNotFoundError(f"{self.family}: model folder {src} does not exist")
        src = str(Path(src).expanduser()) if src.startswith("~") else src
        try:
            return model_cls.from_pretrained(src, dtype=torch.float32)
        except OSError as e:
            raise OSError(
                f"{self.family}: cannot load {src!r} ({e}). Without network access, download it elsewhere "
                "and pass the local folder as `model`, or set `random_init_config: {}` for random weights."
            ) from e

    def _round_up(self, n: int) -> int:
        return -(-n // self.hop_length) * self.hop_length

    def save_pretrained(self, path: Path) -> None:
        """Write the model as a transformers folder (loadable with `model: <path>`)."""
        self.model.save_pretrained(str(path))

    @property
    def bitrate(self) -> float:
        """bit/s of the token stream (log2(codebook_size) bits per code)."""
        return self.frame_rate * self.n_streams * math.log2(self.codebook_size)

    def describe(self) -> dict:
        return {
            "family": self.family,
            "model": None if self.conf.random_init_config is not None else (self.conf.model or self.default_model),
            **{k: v for k, v in asdict(self.conf).items() if k not in ("model", "device")},
            "sample_rate": self.sample_rate,
            "frame_rate": self.frame_rate,
            "codebook_size": self.codebook_size,
            "n_streams_used": self.n_streams,
            "bitrate": self.bitrate,
        }

    # --- AbsTokenizer -----------------------------------------------------------------
    @inference_mode
    def tokenize(self, items: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Mono waveforms at `sample_rate` -> list of int64 codes [ceil(N_i / hop), n_streams]."""
        import torch

        if isinstance(items, (np.ndarray, torch.Tensor)):
            raise TypeError(f"{self.family}.tokenize takes a list of waveforms; wrap a single one as [wav]")
        wavs = [check_waveform(w, i, self.family) for i, w in enumerate(items)]
        out: list[Optional[np.ndarray]] = [None] * len(wavs)
        order = sorted(range(len(wavs)), key=lambda i: len(wavs[i]))  # similar lengths share a batch
        for start in range(0, len(order), self.conf.batch_size):
            idx = order[start : start + self.conf.batch_size]
            n_frames = [-(-len(wavs[i]) // self.hop_length) for i in idx]
            n_samples = max(max(n_frames) * self.hop_length, self.min_samples) + self.right_context
            x = torch.zeros(len(idx), 1, n_samples)  # [B, 1, L]
            for b, i in enumerate(idx):
                x[b, 0, : len(wavs[i])] = torch.from_numpy(wavs[i])
            codes = self.encode(x.to(self.device))  # [B, n_streams, T]
            if codes.shape[1] != self.n_streams or codes.shape[2] < max(n_frames):
                raise RuntimeError(
                    f"{self.family}: encoder gave codes {tuple(codes.shape)} for {x.shape[-1]} samples, expected "
                    f"[{len(idx)}, {self.n_streams}, >= {max(n_frames)}] (hop {self.hop_length})"
                )
            codes = codes.to("cpu", torch.int64)
            for b, i in enumerate(idx):
                out[i] = codes[b, :, : n_frames[b]].T.contiguous().numpy()  # [T_i, n_streams]
        return out  # type: ignore[return-value]

    @inference_mode
    def detokenize(self, tokens: np.ndarray) -> np.ndarray:
        """[T, k] codes (k <= n_streams, a coarse prefix is allowed) -> float32 waveform [T * hop]."""
        import torch

        tokens = np.asarray(tokens)
        if tokens.ndim != 2 or not 1 <= tokens.shape[1] <= self.n_streams:
            raise ValueError(f"{self.family}: expected tokens [T, k <= {self.n_streams}], got shape {tokens.shape}")
        if not np.issubdtype(tokens.dtype, np.integer):
            raise TypeError(f"{self.family}: tokens must be integers, got dtype {tokens.dtype}")
        if tokens.shape[0] == 0:
            return np.zeros(0, dtype=np.float32)
        if tokens.min() < 0 or tokens.max() >= self.codebook_size:
            raise ValueError(f"{self.family}: token ids must lie in [0, {self.codebook_size})")
        codes = torch.from_numpy(tokens.astype(np.int64).T.copy())[None].to(self.device)  # [1, k, T]
        wav = self.decode(codes)[0, : tokens.shape[0] * self.hop_length]  # [T * hop]
        return wav.float().cpu().numpy()

    @classmethod
    def load(cls, model_dir: Optional[Path], **conf) -> "HFCodecTokenizer":
        """Build from conf; model_dir (the recipe's per-tokenizer dir) gets a note of what was loaded."""
        tok = cls(**conf)
        if model_dir is not None:
            try:
                Path(model_dir).mkdir(parents=True, exist_ok=True)
                (Path(model_dir) / META_FILE).write_text(json.dumps(tok.describe(), indent=2))
            except OSError:  # a read-only model dir must not stop inference
                pass
        return tok


# --------------------------------------------------------------------------------------
# families
# --------------------------------------------------------------------------------------
@register_tokenizer("encodec")
class EncodecTokenizer(HFCodecTokenizer):
    """EnCodec (Meta). n_streams picks the bandwidth: 24 kHz model, 75 Hz, 1024 codes."""

    family = "encodec"
    default_model = "facebook/encodec_24khz"

    @staticmethod
    def classes():
        from transformers import EncodecConfig, EncodecModel

        return EncodecConfig, EncodecModel

    def hop(self, cfg) -> int:
        return int(np.prod(cfg.upsampling_ratios))

    def is_causal(self, cfg) -> bool:
        return bool(cfg.use_causal_conv)

    def reflects(self, cfg) -> bool:
        return cfg.pad_mode == "reflect"

    def check_config(self, cfg) -> None:
        super().check_config(cfg)
        if cfg.normalize or cfg.chunk_length_s is not None:
            raise NotImplementedError(
                "encodec: models with normalize/chunk_length_s (e.g. encodec_48khz) need per-chunk scales to "
                "decode, which are not tokens; use a 24 kHz-style model"
            )

    def pick_n_streams(self, n: Optional[int]) -> int:
        q = self.model.quantizer
        self.bandwidths = {q.get_num_quantizers_for_bandwidth(b): b for b in self.model.config.target_bandwidths}
        if n is None:  # 6 kbit/s on the 24 kHz model, the usual choice for speech LMs
            n = 8 if 8 in self.bandwidths else max(self.bandwidths)
        if n not in self.bandwidths:
            raise ValueError(
                f"encodec: n_streams={n} matches no bandwidth of this model; valid n_streams -> kbit/s: "
                f"{dict(sorted(self.bandwidths.items()))}"
            )
        self.bandwidth = self.bandwidths[n]
        return n

    def randomize_codebooks(self, model) -> None:
        import torch

        with torch.no_grad():
            probe = 0.1 * torch.randn(1, model.config.audio_channels, 64 * self.hop(model.config))
            frames = model.encoder(probe)[0].T  # [T, D]
            layers = model.quantizer.layers
            for layer, book in zip(layers, codebooks_from_frames(frames, len(layers), model.config.codebook_size)):
                layer.codebook.embed.copy_(book)
                layer.codebook.embed_avg.copy_(book)

    def encode(self, x: "torch.Tensor") -> "torch.Tensor":
        out = self.model.encode(x, bandwidth=self.bandwidth, return_dict=True)
        return out.audio_codes[0]  # [1 chunk, B, nq, T] -> [B, nq, T]

    def decode(self, codes: "torch.Tensor") -> "torch.Tensor":
        return self.model.decode(codes[None], [None], return_dict=True).audio_values[:, 0]  # [B, L]


@register_tokenizer("dac")
class DacTokenizer(HFCodecTokenizer):
    """Descript Audio Codec. Non-causal encoder, hence a right-context tail when batching."""

    family = "dac"
    default_model = "descript/dac_16khz"

    @staticmethod
    def classes():
        from transformers import DacConfig, DacModel

        return DacConfig, DacModel

    def hop(self, cfg) -> int:
        return int(cfg.hop_length)

    def pick_n_streams(self, n: Optional[int]) -> int:
        total = self.model.config.n_codebooks
        n = total if n is None else n
        if not 1 <= n <= total:
            raise ValueError(f"dac: n_streams must be in [1, {total}], got {n}")
        return n

    def encode(self, x: "torch.Tensor") -> "torch.Tensor":
        return self.model.encode(x, n_quantizers=self.n_streams, return_dict=True).audio_codes  # [B, nq, T]

    def decode(self, codes: "torch.Tensor") -> "torch.Tensor":
        return self.model.decode(audio_codes=codes, return_dict=True).audio_values  # [B, L]


@register_tokenizer("mimi")
class MimiTokenizer(HFCodecTokenizer):
    """Kyutai Mimi: 12.5 Hz, stream 0 is the semantic (distilled) codebook."""

    family = "mimi"
    default_model = "kyutai/mimi"

    @staticmethod
    def classes():
        from transformers import MimiConfig, MimiModel

        return MimiConfig, MimiModel

    def hop(self, cfg) -> int:
        return int(cfg.frame_size)

    def is_causal(self, cfg) -> bool:
        return bool(cfg.use_causal_conv)  # its transformer is always causal

    def check_config(self, cfg) -> None:
        super().check_config(cfg)
        if self.model.encoder is None or self.model.decoder is None:
            raise NotImplementedError("mimi: the model must have both an encoder and a decoder")

    def pick_n_streams(self, n: Optional[int]) -> int:
        cfg = self.model.config
        n = min(8, cfg.num_quantizers) if n is None else n  # 8 = what Moshi models
        if not max(1, cfg.num_semantic_quantizers) <= n <= cfg.num_quantizers:
            lo, hi = cfg.num_semantic_quantizers, cfg.num_quantizers
            raise ValueError(f"mimi: n_streams must be in [{lo}, {hi}], got {n}")
        return n

    def randomize_codebooks(self, model) -> None:
        import torch

        q = model.quantizer
        with torch.no_grad():
            probe = 0.1 * torch.randn(1, model.config.audio_channels, 64 * self.hop(model.config))
            latents = model.encoder(probe).latents  # [1, hidden, T]
            for rvq in (q.semantic_residual_vector_quantizer, q.acoustic_residual_vector_quantizer):
                frames = (rvq.input_proj(latents) if rvq.input_proj is not None else latents)[0].T  # [T, D]
                for layer, book in zip(rvq.layers, codebooks_from_frames(frames, len(rvq.layers), q.codebook_size)):
                    cb = layer.codebook
                    cb.embed_sum.copy_(book)
                    cb.cluster_usage.fill_(1.0)
                    cb._embed = None  # cached embed_sum / usage

    def encode(self, x: "torch.Tensor") -> "torch.Tensor":
        return self.model.encode(x, num_quantizers=self.n_streams, return_dict=True).audio_codes  # [B, nq, T]

    def decode(self, codes: "torch.Tensor") -> "torch.Tensor":
        return self.model.decode(codes, return_dict=True).audio_values[:, 0]  # [B, L]
