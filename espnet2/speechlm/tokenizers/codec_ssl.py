"""Joint codec + SSL tokenizer: one SSL-unit stream and n codec streams per frame.

Why it exists: the codec_ssl_* task templates model "what is said" (SSL units)
and "how it sounds" (codec codes) in the same frames, so one item carries both:

    wav [N] --ssl--> units [T_s, 1]      (e.g. ssl_kmeans, 50 Hz)
            --codec--> codes [T_c, n]    (e.g. mel_rvq 50 Hz, encodec 75 Hz, mimi 12.5 Hz)
    tokens [T_c, 1 + n] = [units resampled onto the codec frames | codes]

Frame rates: the codec grid is kept (T = codec length, so the codec decodes the
tokens unchanged); codec frame j (time j / r_c) takes the SSL unit of the nearest
SSL frame by time, round(j * r_s / r_c), clipped to the SSL sequence. Both grids
start at t = 0; a backend's sub-frame offset (e.g. half a conv window) is ignored.

Codebooks: the joint vocabulary gives every stream of a tokenizer the same
`codebook_size` ids, so this tokenizer reports max(ssl, codec) codebook sizes, and
`stream_codebook_sizes` (ssl, codec, ..., codec): the vocabulary keeps them as the range's
`stream_sizes`, so no head or modality mask lets a stream emit an id it does not have.
Stream 0 keeps the SSL tokenizer's local ids [0, ssl.codebook_size) and streams
1..n the codec's local ids [0, codec.codebook_size); ids above a stream's own size
never occur in prepared data (and the codec rejects them at decoding).

Conf (each sub-tokenizer by registered name, e.g. ssl_kmeans + mel_rvq/encodec/dac/mimi):

    codec_ssl: {type: codec_ssl, conf: {ssl:   {type: ssl_kmeans, conf: {...}},
                                        codec: {type: mel_rvq,    conf: {...}}}}

Files written by `train`: codec_ssl.json (the two specs), ssl/ and codec/ for the
sub-tokenizers that need training (a pretrained codec keeps no folder here).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Iterable, Optional, Sequence

import numpy as np

from espnet2.speechlm.tokenizers.abs_tokenizer import TOKENIZERS, AbsTokenizer, register_tokenizer

FORMAT = "espnet-speechlm-codec_ssl/1"
PARTS = ("ssl", "codec")


def check_spec(part: str, spec: Any) -> Dict[str, Any]:
    """`{type: name, conf: {...}}` -> normalised dict, or a clear error."""
    if not isinstance(spec, dict) or "type" not in spec:
        raise ValueError(f"codec_ssl: `{part}` must be {{type: <tokenizer name>, conf: {{...}}}}, got {spec!r}")
    unknown = set(spec) - {"type", "conf"}
    if unknown:
        raise ValueError(f"codec_ssl: `{part}` has unknown keys {sorted(unknown)} (expected type, conf)")
    if spec["type"] == "codec_ssl":
        raise ValueError(f"codec_ssl: `{part}` cannot itself be codec_ssl")
    TOKENIZERS.get(spec["type"])  # unknown names fail here, listing the known ones
    return {"type": spec["type"], "conf": dict(spec.get("conf") or {})}


def sample_rate_error(ssl_name: str, ssl_rate: Any, codec_name: str, codec_rate: Any) -> str:
    return (f"codec_ssl: sample rates differ: ssl ({ssl_name}) {ssl_rate} Hz, codec ({codec_name}) {codec_rate} Hz; "
            "configure both for the same rate (set `sample_rate` in their confs)")


def align_to_grid(units: np.ndarray, src_rate: float, dst_rate: float, n_dst: int) -> np.ndarray:
    """Resample a frame sequence onto another frame grid by nearest time.

    units [T_s, ...] at src_rate frames/s -> [n_dst, ...] at dst_rate; frame j of the
    new grid (time j / dst_rate) takes source frame round(j * src_rate / dst_rate),
    clipped to the last source frame.
    """
    if len(units) == 0:
        raise ValueError("codec_ssl: the SSL tokenizer gave no frames")
    pos = np.arange(n_dst, dtype=np.float64) * (float(src_rate) / float(dst_rate))
    idx = np.minimum(np.floor(pos + 0.5).astype(np.int64), len(units) - 1)  # round half up
    return units[idx]


@register_tokenizer("codec_ssl")
class CodecSSLTokenizer(AbsTokenizer):
    """[T, 1 + n]: SSL units (stream 0) + codec codes (streams 1..n) on the codec's frames."""

    def __init__(self, ssl: AbsTokenizer, codec: AbsTokenizer, specs: Optional[Dict[str, Any]] = None):
        self.specs = specs or {}
        names = {p: self.specs.get(p, {}).get("type", type(t).__name__) for p, t in (("ssl", ssl), ("codec", codec))}
        if ssl.n_streams != 1:
            raise ValueError(f"codec_ssl: the SSL tokenizer ({names['ssl']}) must have 1 stream, has {ssl.n_streams}")
        for part, tok in (("ssl", ssl), ("codec", codec)):
            if not tok.frame_rate or not tok.sample_rate:
                raise ValueError(
                    f"codec_ssl: the {part} tokenizer ({names[part]}) needs a fixed frame_rate and sample_rate, "
                    f"has {tok.frame_rate} and {tok.sample_rate}" + (" (turn off dedup)" if part == "ssl" else "")
                )
        if ssl.sample_rate != codec.sample_rate:
            raise ValueError(sample_rate_error(names["ssl"], ssl.sample_rate, names["codec"], codec.sample_rate))
        self.ssl, self.codec = ssl, codec
        self.n_streams = 1 + codec.n_streams
        self.codebook_size = max(ssl.codebook_size, codec.codebook_size)
        # what each stream really holds: the vocabulary's heads and masks allow only these ids
        self.stream_codebook_sizes = [ssl.codebook_size] + [codec.codebook_size] * codec.n_streams
        self.frame_rate = codec.frame_rate
        self.sample_rate = codec.sample_rate

    # --- AbsTokenizer -----------------------------------------------------------------
    def tokenize(self, items: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Batch of waveforms -> list of [T_i, 1 + n] with T_i = codec frames of item i."""
        if isinstance(items, np.ndarray):
            raise TypeError("codec_ssl.tokenize takes a list of waveforms; wrap a single one as [wav]")
        items = list(items)
        if not items:
            return []
        codes = self.codec.tokenize(items)  # [T_c, n] each; the codec validates the waveforms first
        units = self.ssl.tokenize(items)  # [T_s, 1] each
        out = []
        for u, c in zip(units, codes):
            u = align_to_grid(np.asarray(u), self.ssl.frame_rate, self.frame_rate, len(c))  # [T_c, 1]
            out.append(np.concatenate([u, np.asarray(c)], axis=1).astype(np.int64))
        return out

    def detokenize(self, tokens: np.ndarray) -> Any:
        """[T, 1 + k] -> the codec's decoding of streams 1..k (the SSL stream is dropped)."""
        tokens = np.asarray(tokens)
        if tokens.ndim != 2 or not 2 <= tokens.shape[1] <= self.n_streams:
            raise ValueError(f"codec_ssl: expected tokens [T, 2..{self.n_streams}] (SSL stream first), "
                             f"got shape {tokens.shape}")
        return self.codec.detokenize(tokens[:, 1:])

    def token_strings(self) -> list[str]:
        """Stream 0 is the SSL stream: its names, then plain ids for the unused tail."""
        names = list(self.ssl.token_strings())[: self.codebook_size]
        return names + [str(i) for i in range(len(names), self.codebook_size)]

    # --- training and persistence -----------------------------------------------------
    @classmethod
    def needs_training(cls) -> bool:
        """True: a sub-tokenizer usually needs it; `train` skips those that do not."""
        return True

    @staticmethod
    def _specs(ssl: Any, codec: Any, **rest) -> Dict[str, Dict[str, Any]]:
        if rest:
            raise ValueError(f"codec_ssl: unknown option(s) {sorted(rest)}; valid: ssl, codec")
        if ssl is None or codec is None:
            raise ValueError("codec_ssl needs both `ssl` and `codec` entries: {type: <tokenizer>, conf: {...}}")
        return {"ssl": check_spec("ssl", ssl), "codec": check_spec("codec", codec)}

    @classmethod
    def train(cls, items: Iterable[np.ndarray], out_dir: Path, ssl: Any = None, codec: Any = None,
              **rest) -> "CodecSSLTokenizer":
        """Train the trainable sub-tokenizers into out_dir/ssl and out_dir/codec; save the specs."""
        specs = cls._specs(ssl, codec, **rest)
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        parts = {}
        for part in PARTS:  # pretrained parts first, so a sample-rate clash fails before any training
            if not TOKENIZERS.get(specs[part]["type"]).needs_training():
                parts[part] = TOKENIZERS.get(specs[part]["type"]).load(None, **specs[part]["conf"])
        rates = {p: parts[p].sample_rate if p in parts else specs[p]["conf"].get("sample_rate") for p in PARTS}
        if None not in rates.values() and rates["ssl"] != rates["codec"]:
            names = [specs[p]["type"] for p in PARTS]
            raise ValueError(sample_rate_error(names[0], rates["ssl"], names[1], rates["codec"]))
        items = list(items)  # both parts read them
        for part in PARTS:
            if part not in parts:
                parts[part] = TOKENIZERS.get(specs[part]["type"]).train(items, out_dir / part, **specs[part]["conf"])
        tok = cls(parts["ssl"], parts["codec"], specs)
        (out_dir / "codec_ssl.json").write_text(json.dumps({"format": FORMAT, **specs}, indent=2))
        return tok

    @classmethod
    def load(cls, model_dir: Optional[Path], ssl: Any = None, codec: Any = None, **rest) -> "CodecSSLTokenizer":
        """Load both parts; the specs come from conf, or from codec_ssl.json when conf has none."""
        saved = None
        if model_dir is not None and (Path(model_dir) / "codec_ssl.json").is_file():
            saved = json.loads((Path(model_dir) / "codec_ssl.json").read_text())
            if saved.pop("format", None) != FORMAT:
                raise ValueError(f"{model_dir}/codec_ssl.json is not a {FORMAT} file")
        if ssl is None and codec is None and saved is not None and not rest:
            ssl, codec = saved["ssl"], saved["codec"]
        specs = cls._specs(ssl, codec, **rest)
        parts = {}
        for part in PARTS:
            sub = TOKENIZERS.get(specs[part]["type"])
            if saved is not None and saved[part]["type"] != specs[part]["type"]:
                raise ValueError(f"codec_ssl: {part} is {specs[part]['type']!r} in config but "
                                 f"{saved[part]['type']!r} was trained in {model_dir}")
            if sub.needs_training():
                sub_dir = Path(model_dir) / part if model_dir is not None else None
                if sub_dir is None or not sub_dir.is_dir():
                    raise FileNotFoundError(f"codec_ssl: the {part} tokenizer ({specs[part]['type']}) is not trained "
                                            f"({sub_dir} missing); train codec_ssl first")
                parts[part] = sub.load(sub_dir, **specs[part]["conf"])
            else:
                parts[part] = sub.load(None, **specs[part]["conf"])
        return cls(parts["ssl"], parts["codec"], specs)
