"""The mini recipe's second tokenizer config switches to pretrained HF tokenizers by name only.

Every `model:` hub id in conf/tokenizers_pretrained.yaml is pointed at a tiny random-weight
model of the same family saved with `save_pretrained` (no hub access here); nothing else in
the file changes. Preparation then runs for a codec task, an SSL-unit task and a text task.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from espnet2.bin import speechlm_prepare

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "egs2" / "mini_en" / "speechlm1" / "conf" / "tokenizers_pretrained.yaml"

TINY_DAC = dict(sampling_rate=16000, encoder_hidden_size=4, downsampling_ratios=[4, 80], decoder_hidden_size=16,
                n_codebooks=8, codebook_size=64, codebook_dim=4)
TINY_HUBERT = dict(hidden_size=32, num_hidden_layers=9, num_attention_heads=2, intermediate_size=37,
                   conv_dim=(8,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)


@pytest.fixture(scope="module")
def local_models(tmp_path_factory) -> dict:
    """hub id -> folder holding a tiny random model of that family."""
    import torch
    from transformers import AutoConfig, AutoModel, DacConfig, DacModel

    out = tmp_path_factory.mktemp("hub_mirror")
    torch.manual_seed(0)
    DacModel(DacConfig(**TINY_DAC)).save_pretrained(str(out / "dac"))
    AutoModel.from_config(AutoConfig.for_model("hubert", **TINY_HUBERT)).save_pretrained(str(out / "hubert"))
    return {"descript/dac_16khz": str(out / "dac"), "facebook/hubert-base-ls960": str(out / "hubert")}


def point_at_local(node, mirror: dict):
    if isinstance(node, dict):
        return {k: (mirror[v] if k == "model" else point_at_local(v, mirror)) for k, v in node.items()}
    return node


def test_pretrained_config_prepares_by_name(local_models, tiny_data_dir, tmp_path):
    conf = yaml.safe_load(CONF.read_text())
    assert (conf["codec"]["type"], conf["codec_ssl"]["conf"]["ssl"]["type"]) == ("dac", "ssl_kmeans")
    local = point_at_local(conf, local_models)
    tok_conf = tmp_path / "tokenizers.yaml"
    tok_conf.write_text(yaml.safe_dump(local))
    tok_dir = tmp_path / "tokenizers"
    tasks = ["asr", "codec_ssl_asr"]
    speechlm_prepare.main(["train_tokenizers", "--data_dir", str(tiny_data_dir), "--tasks", *tasks,
                           "--tokenizer_config", str(tok_conf), "--tokenizer_dir", str(tok_dir)])
    for task in tasks:
        out = tmp_path / "dump" / task
        speechlm_prepare.main(["tokenize", "--task", task, "--data_dir", str(tiny_data_dir), "--tokenizer_config",
                               str(tok_conf), "--tokenizer_dir", str(tok_dir), "--out_dir", str(out)])
        meta = json.loads((out / "data.json").read_text())
        assert meta["num_examples"] == 8, meta
    asr = json.loads((tmp_path / "dump" / "asr" / "data.json").read_text())["tokenizers"]
    assert asr["codec"]["type"] == "dac" and asr["codec"]["n_streams"] == 8
    joint = json.loads((tmp_path / "dump" / "codec_ssl_asr" / "data.json").read_text())["tokenizers"]
    assert joint["codec_ssl"]["n_streams"] == 9  # 1 HuBERT-unit stream + 8 DAC streams
