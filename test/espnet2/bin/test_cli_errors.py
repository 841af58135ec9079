"""Entry points: a user's mistake is one line on stderr and exit 1; --verbose re-raises it."""

from __future__ import annotations

import pytest

from espnet2.bin import speechlm_hub, speechlm_inference, speechlm_score, speechlm_train


def _cases(tmp_path):
    missing = tmp_path / "missing"
    bad_cfg = tmp_path / "train.yaml"
    bad_cfg.write_text("model: {arch: delay, body: builtin, body_conf: {d_modle: 8}}\noptim: {lrr: 1}\n")
    return [
        (speechlm_train, "speechlm_train", ["--train_config", str(bad_cfg), "--train_data_json", "x",
                                            "--valid_data_json", "x", "--vocab", "x", "--output_dir", str(tmp_path)]),
        (speechlm_inference, "speechlm_inference", ["--model_dir", str(missing), "--data_json", str(missing),
                                                    "--inference_config", str(missing), "--out_dir", str(tmp_path)]),
        (speechlm_score, "speechlm_score", ["--score_config", str(missing), "--hyp_dir", str(missing),
                                            "--ref_dir", str(missing), "--task", "asr"]),
        (speechlm_hub, "speechlm_hub", ["pack", "--model_dir", str(missing), "--out_dir", str(tmp_path / "p")]),
    ]


@pytest.mark.parametrize("which", range(4))
def test_user_error_is_one_line(tmp_path, capsys, which):
    module, name, argv = _cases(tmp_path)[which]
    with pytest.raises(SystemExit) as e:
        module.main(argv)
    assert e.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"{name}: error: ") and err[-1].endswith("(run with --verbose for the traceback)")
    assert not any("Traceback" in line for line in err)


@pytest.mark.parametrize("which", range(4))
def test_verbose_gives_the_exception(tmp_path, which):
    module, _, argv = _cases(tmp_path)[which]
    with pytest.raises((ValueError, KeyError, FileNotFoundError, NotADirectoryError)):
        module.main(argv + ["--verbose"])
