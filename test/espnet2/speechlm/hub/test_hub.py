import json
from unittest import mock

import numpy as np
import pytest
import torch
import yaml
from safetensors.numpy import load_file

from espnet2.bin import speechlm_hub
from espnet2.speechlm import hub


@pytest.fixture
def exp(tmp_path):
    d = tmp_path / "exp" / "speechlm_x"
    d.mkdir(parents=True)
    (tmp_path / "data").mkdir()
    vocab = tmp_path / "data" / "vocab.json"
    vocab.write_text('{"ranges": []}')
    tok = tmp_path / "data" / "bpe_tok"
    tok.mkdir()
    (tok / "bpe.model").write_bytes(b"\x00model")
    tmpl = tmp_path / "data" / "tasks.yaml"
    tmpl.write_text("tts: [text, codec]\n")
    conf = d / "config.yaml"
    conf.write_text(yaml.safe_dump({"vocab_file": str(vocab), "tokenizer_dir": str(tok), "body": "decoder_only", "body_conf": {"n_layer": 2}, "tasks": ["asr", "tts"]}))
    weights = {"emb.weight": torch.randn(10, 4), "out.weight": torch.randn(3, 4)}
    weights["tied"] = weights["emb.weight"]  # shared storage must still be saved
    torch.save(weights, d / "valid.acc.best.pth")
    (d / "RESULTS.md").write_text("# RESULTS\n\n| task | test set | utts | wer |\n|---|---|---|---|\n| asr | test | 4 | 0.1 |\n")
    return {"dir": d, "config": conf, "model": d / "valid.acc.best.pth", "vocab": vocab, "tok": tok, "tmpl": tmpl}


def pack(exp, out):
    return hub.pack_model(
        out, exp["config"], exp["model"], vocab_files=[exp["vocab"]], tokenizer_dirs=[exp["tok"]],
        task_templates=[exp["tmpl"]], results_md=exp["dir"] / "RESULTS.md", datasets=["librispeech"],
        license="cc-by-4.0", repo_id="org/speechlm-x",
    )


def test_pack_creates_self_describing_folder(tmp_path, exp):
    out = pack(exp, tmp_path / "packed")
    meta = hub.read_meta(out)
    assert meta["tasks"] == ["asr", "tts"]
    assert meta["files"]["vocab"] == ["vocab.json"]
    assert meta["files"]["tokenizers"] == ["tokenizers/bpe_tok"]
    assert meta["n_parameters"] == 10 * 4 * 2 + 3 * 4
    assert (out / "tokenizers/bpe_tok/bpe.model").read_bytes() == b"\x00model"
    tensors = load_file(out / "model.safetensors")
    assert set(tensors) == {"emb.weight", "out.weight", "tied"}
    np.testing.assert_allclose(tensors["out.weight"], torch.load(exp["model"])["out.weight"].numpy())
    conf = yaml.safe_load((out / "config.yaml").read_text())
    assert conf["vocab_file"] == "vocab.json" and conf["tokenizer_dir"] == "tokenizers/bpe_tok"
    card = (out / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: espnet")
    for piece in ("task:tts", "librispeech", "## Architecture", "decoder_only", "| asr | test | 4 | 0.1 |",
                  "python -m espnet2.bin.speechlm_hub download org/speechlm-x", "Parameters: 92"):
        assert piece in card
    with pytest.raises(FileExistsError):
        pack(exp, out)


def test_download_local_folder_is_used_as_is(tmp_path, exp):
    out = pack(exp, tmp_path / "packed")
    with mock.patch("huggingface_hub.snapshot_download") as snap:
        assert hub.download_model(str(out)) == out
        snap.assert_not_called()
    with pytest.raises(FileNotFoundError, match="local path"):
        hub.download(str(tmp_path / "nope" / "x"))


def test_upload_calls_hfapi_exactly(tmp_path, exp):
    out = pack(exp, tmp_path / "packed")
    with mock.patch("huggingface_hub.HfApi") as api_cls:
        api = api_cls.return_value
        api.upload_folder.return_value = mock.Mock(commit_url="https://hub/commit/1")
        assert hub.upload_folder(out, "org/speechlm-x") == "https://hub/commit/1"
    api_cls.assert_called_once_with()  # no token passed: env / login only
    api.create_repo.assert_called_once_with(repo_id="org/speechlm-x", repo_type="model", private=False, exist_ok=True)
    api.upload_folder.assert_called_once()
    kwargs = api.upload_folder.call_args.kwargs
    assert (kwargs["repo_id"], kwargs["repo_type"], kwargs["folder_path"]) == ("org/speechlm-x", "model", str(out))


def test_dataset_upload_and_download(tmp_path):
    data = tmp_path / "tokenized"
    data.mkdir()
    (data / "data.json").write_text(json.dumps({"shards": ["shard-0.npy"]}))
    (data / "shard-0.npy").write_bytes(b"x")
    with mock.patch("huggingface_hub.HfApi") as api_cls:
        hub.upload_dataset(data, "org/data", private=True)
    api_cls.return_value.create_repo.assert_called_once_with(repo_id="org/data", repo_type="dataset", private=True, exist_ok=True)
    kwargs = api_cls.return_value.upload_folder.call_args.kwargs
    assert (kwargs["repo_id"], kwargs["repo_type"], kwargs["folder_path"]) == ("org/data", "dataset", str(data))
    assert hub.download_dataset(str(data)) == data
    with pytest.raises(FileNotFoundError, match="data.json"):
        hub.upload_dataset(tmp_path, "org/data")


def test_offline_hub_id_gives_clear_error(tmp_path):
    # local_files_only makes the real snapshot_download fail without touching the network
    with pytest.raises(RuntimeError) as err:
        hub.download("some-org/not-cached-model", cache_dir=tmp_path / "cache", local_files_only=True)
    msg = str(err.value)
    assert "'some-org/not-cached-model'" in msg and "local folder" in msg


@pytest.mark.parametrize("exc", [ConnectionError("no route"), OSError("network unreachable")])
def test_connection_errors_are_explained(exc):
    with mock.patch("huggingface_hub.snapshot_download", side_effect=exc):
        with pytest.raises(RuntimeError, match="org/m.*local folder"):
            hub.download("org/m")


def test_cli_pack_and_download(tmp_path, exp, capsys):
    out = tmp_path / "cli_packed"
    rc = speechlm_hub.main([
        "pack", "--out_dir", str(out), "--config", str(exp["config"]), "--model_file", str(exp["model"]),
        "--vocab_files", str(exp["vocab"]), "--tasks", "tts", "--name", "demo",
    ])
    assert rc == 0 and hub.read_meta(out)["name"] == "demo"
    assert speechlm_hub.main(["download", str(out)]) == 0
    assert capsys.readouterr().out.strip().endswith(str(out))
    with pytest.raises(SystemExit) as e:
        speechlm_hub.main(["download", "org/not-cached", "--local_files_only"])
    assert e.value.code == 1 and "speechlm_hub: error: could not get model 'org/not-cached'" in capsys.readouterr().err


def test_pack_exported_model_dir_keeps_layout(tmp_path, exp):
    from safetensors.torch import save_file

    src = tmp_path / "exported"
    (src / "tok").mkdir(parents=True)
    (src / "tok" / "bpe.model").write_bytes(b"m")
    (src / "config.json").write_text(json.dumps({"model": {"arch": "parallel", "body": "builtin", "vocab_size": 300}, "tasks": ["asr"]}))
    (src / "vocab.json").write_text("{}")
    save_file({"w": torch.zeros(2, 5)}, str(src / "model.safetensors"))
    out = hub.pack_model_dir(src, tmp_path / "packed", results_md=exp["dir"] / "RESULTS.md")
    meta = hub.read_meta(out)
    assert (meta["files"]["config"], meta["files"]["vocab"], meta["files"]["tokenizers"]) == ("config.json", ["vocab.json"], ["tok"])
    assert meta["tasks"] == ["asr"] and meta["n_parameters"] == 10
    assert json.loads((out / "config.json").read_text())["model"]["arch"] == "parallel"
    assert "| asr | test | 4 | 0.1 |" in (out / "README.md").read_text()
    assert speechlm_hub.main(["pack", "--model_dir", str(src), "--out_dir", str(tmp_path / "p2")]) == 0
    assert speechlm_hub.main(["pack", "--out_dir", str(tmp_path / "p3")]) == 2
