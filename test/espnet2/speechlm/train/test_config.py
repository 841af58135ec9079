import pytest
import yaml

from espnet2.speechlm.train.config import ConfigError, TrainConfig, dump_config, load_config, to_dict


def write(tmp_path, text):
    p = tmp_path / "train.yaml"
    p.write_text(text)
    return p


def test_defaults_are_valid_and_one_epoch():
    cfg = load_config(None)
    assert isinstance(cfg, TrainConfig)
    assert cfg.train.objective == "lm" and cfg.train.init is None and cfg.dpo.ref_model is None
    assert (cfg.run.activation_checkpointing, cfg.run.compile, cfg.run.liger) == (False, False, "auto")
    assert cfg.run.max_steps is None and cfg.run.max_epochs == 1
    assert cfg.deepspeed.zero_stage == 1 and cfg.deepspeed.bf16 is False


def test_yaml_roundtrip_and_dump(tmp_path):
    p = write(tmp_path, """
model: {arch: delay, body: builtin, body_conf: {d_model: 64, n_layer: 2}}
optim: {lr: 3e-4, betas: [0.9, 0.98], scheduler: cosine, warmup_steps: 10}
data: {batch_tokens: 1024, loss_weights: {codec: [1.0, 0.5], text: 1}}
run: {max_steps: 100, grad_accum: 2}
deepspeed: {zero_stage: 2, bf16: true, extra: {zero_optimization: {overlap_comm: false}}}
""")
    cfg = load_config(p)
    assert cfg.optim.lr == 3e-4 and isinstance(cfg.optim.lr, float)  # "3e-4" is a YAML string
    assert cfg.optim.betas == (0.9, 0.98)
    assert cfg.model.body_conf == {"d_model": 64, "n_layer": 2}
    assert cfg.run.max_epochs is None  # max_steps given: no epoch limit
    dump_config(cfg, tmp_path / "out" / "config.yaml")
    again = load_config(tmp_path / "out" / "config.yaml")
    assert to_dict(again) == to_dict(cfg)
    assert yaml.safe_load((tmp_path / "out" / "config.yaml").read_text())["deepspeed"]["zero_stage"] == 2


def test_unknown_key_names_the_full_path(tmp_path):
    with pytest.raises(ConfigError, match=r"optim\.lrr.*known at this level: .*lr"):
        load_config(write(tmp_path, "optim: {lrr: 0.1}\n"))
    with pytest.raises(ConfigError, match=r"unknown config key\(s\) trainer"):
        load_config(write(tmp_path, "trainer: {}\n"))


@pytest.mark.parametrize("text, message", [
    ("optim: {lr: fast}\n", r"optim\.lr: expected float"),
    ("run: {max_steps: 1.5}\n", r"run\.max_steps: expected int"),
    ("deepspeed: {bf16: 'yes'}\n", r"deepspeed\.bf16: expected bool"),
    ("optim: {betas: [0.9]}\n", r"optim\.betas: expected 2 values"),
    ("optim: {scheduler: linear}\n", r"optim\.scheduler must be one of"),
    ("deepspeed: {zero_stage: 4}\n", r"zero_stage must be 0, 1, 2 or 3"),
    ("run: {grad_accum: 0}\n", r"grad_accum must be >= 1"),
    ("optim: 3\n", r"optim: expected a mapping"),
    ("train: {objective: ppo}\n", r"train\.objective must be one of \('lm', 'dpo'\)"),
    ("dpo: {beta: 0}\n", r"dpo\.beta must be > 0"),
    ("dpo: {bta: 0.1}\n", r"unknown config key\(s\) dpo\.bta"),
    ("run: {liger: maybe}\n", r"run\.liger must be one of"),
    ("run: {compile: 'yes'}\n", r"run\.compile: expected bool"),
])
def test_bad_values_are_reported(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text))


def test_missing_file_and_overrides(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    cfg = load_config(None, {"run.max_steps": 7, "optim.lr": 0.01})
    assert cfg.run.max_steps == 7 and cfg.optim.lr == 0.01
    with pytest.raises(ConfigError, match=r"run\.max_stepz"):
        load_config(None, {"run.max_stepz": 7})


def test_cli_help_and_config_error_before_launch(tmp_path, capsys):
    from espnet2.bin import speechlm_train

    with pytest.raises(SystemExit) as e:
        speechlm_train.main(["--help"])
    assert e.value.code == 0
    assert "--train_data_json" in capsys.readouterr().out
    bad = write(tmp_path, "optim: {lrr: 1}\n")
    with pytest.raises(ConfigError, match=r"optim\.lrr"):
        speechlm_train.main(["--train_config", str(bad), "--train_data_json", "x.json", "--vocab", "v",
                             "--output_dir", str(tmp_path / "exp"), "--verbose"])  # the exception itself
