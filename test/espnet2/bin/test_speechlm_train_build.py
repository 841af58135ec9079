"""speechlm_train.build_model: how the model section of the training config picks heads."""

import pytest

from espnet2.bin import speechlm_train
from espnet2.speechlm.train.config import ConfigError, load_config
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


def test_multi_rank_validation_data_covers_every_example_once(tiny_data_dir, tokenizer_config, tmp_path,
                                                             monkeypatch):
    """Ranks split the validation batches without dropping the leftovers ("whole validation set")."""
    from espnet2.bin import speechlm_prepare
    from espnet2.speechlm.train import distributed as D

    tok_dir, out = tmp_path / "tok", tmp_path / "dump"
    common = ["--tokenizer_config", str(tokenizer_config), "--tokenizer_dir", str(tok_dir)]
    speechlm_prepare.main(["train_tokenizers", "--data_dir", str(tiny_data_dir), "--tasks", "asr", *common])
    speechlm_prepare.main(["tokenize", "--task", "asr", "--data_dir", str(tiny_data_dir), *common,
                           "--out_dir", str(out)])
    speechlm_prepare.main(["vocab", "--data_json", str(out / "data.json"), "--out_dir", str(tmp_path / "vocab")])
    vocab = JointVocabulary.load(tmp_path / "vocab")

    def valid_batches(cfg, world: int, rank: int):
        monkeypatch.setattr(D, "world_size", lambda: world)
        monkeypatch.setattr(D, "rank", lambda: rank)
        return list(speechlm_train.build_data([str(out / "data.json")], vocab, cfg, shuffle=False,
                                              valid=True).sampler)

    lengths = speechlm_train.build_data([str(out / "data.json")], vocab, load_config(None), False, True).dataset.lengths
    cfg = load_config(None, {"data.valid_batch_tokens": int(max(lengths))})  # about one example a batch
    whole = valid_batches(cfg, 1, 0)
    world = next(r for r in range(2, len(whole) + 2) if len(whole) % r)  # the split leaves a remainder
    scored = [i for r in range(world) for b in valid_batches(cfg, world, r) for i in b]
    assert sorted(scored) == list(range(len(lengths)))


def test_misspelt_body_conf_key_names_model_body_conf():
    """Not a bare TypeError from the body's config class: the config path and the known keys."""
    cfg = load_config(None, {"model.body_conf": {"d_model": 16, "n_layers": 1, "n_head": 2, "d_ff": 32}})
    with pytest.raises(ConfigError, match=r"unknown config key\(s\) model\.body_conf\.n_layers; "
                                          r"known at this level: .*n_layer"):
        speechlm_train.build_model(cfg, _vocab())


@pytest.mark.parametrize("weights, message", [
    ({"codecc": 0.25}, r"unknown config key\(s\) data\.loss_weights\.codecc; known at this level: codec, text"),
    ({"codec": [1.0, 0.5, 0.5]}, r"data\.loss_weights\.codec: loss weight of 'codec' has 3 values for 2 streams"),
])
def test_bad_loss_weights_are_refused(weights, message):
    """A misspelt tokenizer would otherwise train with weight 1.0 without a word."""
    speechlm_train.check_loss_weights({"codec": [1.0, 0.5], "text": 2.0}, _vocab())  # fine
    with pytest.raises(ConfigError, match=message):
        speechlm_train.check_loss_weights(weights, _vocab())


@pytest.mark.parametrize("curriculum, message", [
    ({"data.curriculum_tasks": ["tts"], "data.curriculum_steps": 10}, r"names tasks \['tts'\].*tasks: \['asr', 'textlm'\]"),
    ({"data.curriculum_tasks": ["asr"]}, r"go together"),
    ({"data.curriculum_steps": 10}, r"go together"),
])
def test_bad_curriculum_is_refused(curriculum, message):
    cfg = load_config(None, curriculum)
    with pytest.raises(ConfigError, match=message):
        speechlm_train.curriculum_sources(["asr", "textlm", "asr"], cfg)


def test_curriculum_names_the_sources_of_its_tasks():
    cfg = load_config(None, {"data.curriculum_tasks": ["asr"], "data.curriculum_steps": 10})
    assert speechlm_train.curriculum_sources(["asr", "textlm", "asr"], cfg) == [0, 2]
    assert speechlm_train.curriculum_sources(["asr"], load_config(None)) == []


def test_guided_attention_names_tokenizers_and_the_model_gets_their_ids(tmp_path):
    v = _vocab()
    g = ", arch_conf: {guided_attention: {tokenizers: [text], layers: [0]}}"
    model = speechlm_train.build_model(_cfg(tmp_path, g), v)
    r = v.range("text")
    assert model.guide.cfg.source_ranges == [(r.offset, r.offset + r.size)]
    assert model.build_config["arch_conf"]["guided_attention"]["source_ranges"] == [[r.offset, r.offset + r.size]]
    with pytest.raises(ConfigError, match="phn"):
        speechlm_train.build_model(_cfg(tmp_path, g.replace("[text]", "[phn]")), v)
