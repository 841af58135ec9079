"""speechlm_train.build_model: how the model section of the training config picks heads."""

import pytest

from espnet2.bin import speechlm_train
from espnet2.speechlm.train.config import load_config
from espnet2.speechlm.vocab import JointVocabulary

MODEL = "model: {arch: delay, body: builtin, body_conf: {d_model: 16, n_layer: 1, n_head: 2, n_kv_head: 2, d_ff: 32, max_len: 64}"


def _vocab() -> JointVocabulary:
    v = JointVocabulary()
    v.add_task("tts")
    v.add_tokenizer("text", "x", 20, 1)
    v.add_tokenizer("codec", "y", 8, 2)
    return v


def _cfg(tmp_path, extra: str):
    (tmp_path / "train.yaml").write_text(MODEL + extra + "}\n")
    return load_config(tmp_path / "train.yaml")


def test_restricted_heads_by_default_full_on_request(tmp_path):
    v = _vocab()
    restricted = speechlm_train.build_model(_cfg(tmp_path, ""), v)
    full = speechlm_train.build_model(_cfg(tmp_path, ", restrict_heads: false"), v)
    assert restricted.head_ids(1) is not None and restricted.heads[1].out_features < v.size
    assert full.head_ids(1) is None and full.heads[1].out_features == v.size


def test_conflicting_head_settings_are_refused(tmp_path):
    cfg = _cfg(tmp_path, ", restrict_heads: false, arch_conf: {head_ranges: [[[0, 30]], [[0, 30]]]}")
    with pytest.raises(ValueError, match="restrict_heads is false but model.arch_conf.head_ranges"):
        speechlm_train.build_model(cfg, _vocab())


def test_continuous_feature_size_comes_from_the_data(tmp_path):
    v = _vocab()
    v.add_tokenizer("spk", "spk_embedding", 1, 1)
    model = speechlm_train.build_model(_cfg(tmp_path, ""), v, {"spk": 12})
    assert model.continuous_proj["spk"].in_features == 12
    with pytest.raises(ValueError, match="continuous.spk = 8, but the data's features have embed_dim 12"):
        speechlm_train.build_model(_cfg(tmp_path, ", arch_conf: {continuous: {spk: 8}}"), v, {"spk": 12})
    with pytest.raises(ValueError, match="gives no feature size"):
        speechlm_train.build_model(_cfg(tmp_path, ""), v)
