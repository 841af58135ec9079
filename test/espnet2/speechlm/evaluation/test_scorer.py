import json
import math

import pytest
import soundfile as sf
import yaml

from espnet2.bin import speechlm_score
from espnet2.speechlm.evaluation.scorer import load_score_config, score_dirs


def write(path, lines):
    path.write_text("".join(f"{l}\n" for l in lines), encoding="utf-8")


@pytest.fixture
def dirs(tmp_path, speech_path):
    ref, hyp = tmp_path / "ref" / "test", tmp_path / "exp" / "decode" / "tts_test"
    ref.mkdir(parents=True)
    hyp.mkdir(parents=True)
    write(ref / "text", ["u1 hello world", "u2 good morning", "u3 see you", "u4 bye now"])
    write(ref / "wav.scp", [f"{u} {speech_path}" for u in ("u1", "u2", "u3", "u4")])
    write(ref / "utt2spk", ["u1 s", "u2 s", "u3 s", "u4 s"])
    write(hyp / "text", ["u1 hello world", "u2 good evening", "u4 bye now", "zz extra"])  # u3 missing
    (hyp / "bad.wav").write_bytes(b"not a wav")
    wav, sr = sf.read(speech_path)
    sf.write(hyp / "u1.wav", wav, sr)
    # u1: relative path (resolved next to wav.scp), u2: unreadable, u3: missing file, u4 absent
    write(hyp / "wav.scp", ["u1 u1.wav", f"u2 {hyp / 'bad.wav'}", f"u3 {hyp / 'gone.wav'}"])
    write(hyp / "logprob", ["u1 -10.0 5", "u2 -2.0 5", "u3 -3 3", "u4 -1.5 2"])
    return hyp, ref


def test_scoring_reports_missing_hypotheses(tmp_path, dirs):
    hyp, ref = dirs
    conf = [
        {"name": "wer", "hyp": "text", "ref": "text"},
        {"name": "si_snr", "hyp": "wav.scp", "ref": "wav.scp", "use_versa": False},
        {"name": "perplexity", "hyp": "logprob"},
    ]
    out = tmp_path / "score"
    summary = score_dirs(conf, hyp, ref, out, task="tts", results_md=tmp_path / "RESULTS.md", progress=False)

    assert summary["n_total"] == 4 and summary["test_set"] == "test"
    assert summary["metrics"]["wer"]["n_scored"] == 3
    assert summary["metrics"]["si_snr"]["n_scored"] == 1
    assert summary["metrics"]["perplexity"]["n_scored"] == 4
    assert summary["n_scored"] == 1
    assert summary["n_extra_hypotheses"] == 1
    assert summary["missing_hypotheses"] == ["u2", "u3", "u4"]
    not_scored = summary["metrics"]["si_snr"]["not_scored"]
    assert "unreadable" in not_scored["u2"] and "unreadable" in not_scored["u3"]
    assert "missing hypothesis" in not_scored["u4"]
    assert "missing hypothesis" in summary["metrics"]["wer"]["not_scored"]["u3"]
    # corpus WER: u1 0/2, u2 1/2, u4 0/2
    assert summary["scores"]["wer"] == pytest.approx(1 / 6)
    assert summary["scores"]["perplexity"] == pytest.approx(math.exp(16.5 / 15))

    assert (out / "utt2wer").read_text().split("\n")[:3] == ["u1 0", "u2 0.5", "u4 0"]
    assert float((out / "utt2si_snr").read_text().split()[1]) > 60
    missing = (out / "missing.txt").read_text().splitlines()
    assert "u3\twer\tmissing hypothesis (id not in text)" in missing
    assert sum(l.startswith("u2\tsi_snr") for l in missing) == 1
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["scores"] == summary["scores"]

    table = (tmp_path / "RESULTS.md").read_text()
    assert "| task | test set | utts | wer | si_snr | perplexity | nll_per_token |" in table
    assert "| tts | test | 4 | 0.1667 (3/4) |" in table


def test_results_md_rows_are_updated_not_duplicated(tmp_path, dirs):
    hyp, ref = dirs
    md = tmp_path / "RESULTS.md"
    md.write_text("# RESULTS\n\nnotes written by hand\n")
    score_dirs([{"name": "wer"}], hyp, ref, tmp_path / "s1", task="asr", results_md=md, progress=False)
    score_dirs([{"name": "wer"}], hyp, ref, tmp_path / "s2", task="asr", results_md=md, progress=False)
    score_dirs([{"name": "cer"}], hyp, ref, tmp_path / "s3", task="asr", test_set="dev", results_md=md, progress=False)
    text = md.read_text()
    assert "notes written by hand" in text
    assert text.count("| asr | test |") == 1
    assert "| task | test set | utts | wer | cer |" in text
    assert "| asr | dev | 4 | - |" in text


def test_cli_with_yaml_config(tmp_path, dirs, capsys):
    hyp, ref = dirs
    conf = tmp_path / "score.yaml"
    conf.write_text(yaml.safe_dump([{"name": "wer", "lowercase": True}, {"name": "perplexity", "hyp": "logprob"}]))
    rc = speechlm_score.main([
        "--score_config", str(conf), "--hyp_dir", str(hyp), "--ref_dir", str(ref),
        "--task", "asr", "--no_progress",
    ])
    assert rc == 0
    assert (hyp / "score" / "summary.json").is_file()
    assert (hyp.parent / "RESULTS.md").is_file()
    assert '"n_total": 4' in capsys.readouterr().out


def test_config_validation(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("- name: wer\n- name: wer\n")
    with pytest.raises(ValueError, match="twice"):
        load_score_config(bad)
    bad.write_text("wer: 1\n")
    with pytest.raises(ValueError, match="list"):
        load_score_config(bad)


def test_default_score_configs_build():
    from pathlib import Path

    from espnet2.speechlm.evaluation import build_metric
    from espnet2.speechlm.evaluation.versa_bridge import versa_available

    root = Path(__file__).resolve().parents[4] / "egs2/TEMPLATE/speechlm1/conf/score"
    names = sorted(p.stem for p in root.glob("*.yaml"))
    assert names == ["asr", "audiolm", "mt", "se", "st", "textlm", "tse", "tts"]
    for path in root.glob("*.yaml"):
        for entry in load_score_config(path):
            if entry["name"] == "tts_wer":
                continue  # builds a pocketsphinx decoder; covered in test_tts_wer
            build_metric({**entry, "use_versa": False} if versa_available() else entry)


# --- --nj: process pool -------------------------------------------------------------------
TRAP = "speechlm_eval_plugins:TextTrap"


def _outputs(out_dir):
    return {p.name: p.read_text() for p in sorted(out_dir.iterdir())}


def test_parallel_scoring_matches_serial(tmp_path, dirs):
    """Per-utterance files, missing.txt and corpus values are identical for nj=1 and nj=2,
    including failures (unreadable audio, a metric raising on one utterance)."""
    hyp, ref = dirs
    write(hyp / "text", ["u1 hello world", "u2 raise", "u4 bye now", "zz extra"])
    conf = [
        {"name": "wer", "lowercase": True},
        {"name": "cer"},
        {"name": "si_snr", "hyp": "wav.scp", "ref": "wav.scp", "use_versa": False},
        {"name": "perplexity", "hyp": "logprob"},
        {"name": TRAP, "hyp": "text"},
    ]
    summaries = {}
    for nj in (1, 2):
        summaries[nj] = score_dirs(conf, hyp, ref, tmp_path / f"nj{nj}", task="tts", progress=False, nj=nj)
    assert summaries[1] == summaries[2]
    assert _outputs(tmp_path / "nj1") == _outputs(tmp_path / "nj2")
    trap = summaries[2]["metrics"][TRAP]
    assert trap["not_scored"]["u2"] == "scoring failed: ValueError: trap sprung"
    assert trap["n_scored"] == 2 and summaries[2]["scores"]["wer"] == pytest.approx(2 / 6)


def text_only_refs(ref, n: int) -> list:
    """Make `ref` a text-only reference dir of n utterances v00, v01, ...; return their ids."""
    utts = [f"v{i:02d}" for i in range(n)]
    write(ref / "text", [f"{u} x" for u in utts])
    (ref / "wav.scp").unlink()
    (ref / "utt2spk").unlink()
    return utts


def test_parallel_scoring_runs_in_workers_in_order(tmp_path, dirs):
    hyp, ref = dirs
    utts = text_only_refs(ref, 12)
    write(hyp / "text", [f"{u} whoami" for u in reversed(utts)])
    summary = score_dirs([{"name": TRAP}], hyp, ref, tmp_path / "s", task="t", progress=False, nj=2)
    assert summary["n_scored"] == 12
    lines = (tmp_path / "s" / "utt2scored_by").read_text().splitlines()
    assert [l.split()[0] for l in lines] == utts  # reference order, whatever finished first
    pids = {l.split()[1] for l in lines}
    assert f"pid{__import__('os').getpid()}" not in pids and 1 <= len(pids) <= 2


def test_worker_error_names_the_utterance(tmp_path, dirs):
    from espnet2.speechlm.evaluation.scorer import ScoringError

    hyp, ref = dirs
    write(hyp / "text", ["u1 ok", "u2 ok", "u3 unpicklable", "u4 ok"])
    with pytest.raises(ScoringError, match=r"utterance 'u3'.*metric 'text_trap'.*cannot be sent back"):
        score_dirs([{"name": TRAP}], hyp, ref, tmp_path / "s", task="t", progress=False, nj=2)


def test_worker_crash_names_the_utterances_in_flight(tmp_path, dirs):
    from espnet2.speechlm.evaluation.scorer import ScoringError

    hyp, ref = dirs
    utts = text_only_refs(ref, 10)
    write(hyp / "text", [f"{u} {'die' if u == 'v07' else 'ok'}" for u in utts])
    with pytest.raises(ScoringError, match=r"worker process died.*'v07'.*--nj 1") as err:
        score_dirs([{"name": TRAP}], hyp, ref, tmp_path / "s", task="t", progress=False, nj=2)
    assert err.value.args[0].count("'v") <= 4  # at most 2 * nj utterances are ever in flight


def test_bad_nj(tmp_path, dirs):
    hyp, ref = dirs
    with pytest.raises(ValueError, match="nj must be >= 1"):
        score_dirs([{"name": "wer"}], hyp, ref, tmp_path / "s", task="t", progress=False, nj=0)


def test_cli_nj(tmp_path, dirs, capsys):
    hyp, ref = dirs
    conf = tmp_path / "score.yaml"
    conf.write_text(yaml.safe_dump([{"name": "wer"}]))
    args = ["--score_config", str(conf), "--hyp_dir", str(hyp), "--ref_dir", str(ref), "--task", "asr",
            "--no_progress", "--no_results_md"]
    assert speechlm_score.main(args + ["--out_dir", str(tmp_path / "a")]) == 0
    assert speechlm_score.main(args + ["--out_dir", str(tmp_path / "b"), "--nj", "2"]) == 0
    assert _outputs(tmp_path / "a") == _outputs(tmp_path / "b")


PROBE = "speechlm_eval_plugins:BuildProbe"  # a module:Class name: no registry entry to add or clean up


def test_parallel_main_process_builds_no_metric(tmp_path, dirs):
    """With nj > 1 only the workers instantiate metrics (each once), yet corpus values,
    higher_is_better and info, which need an instance, equal those of nj=1."""
    import os

    hyp, ref = dirs  # u1 and u4 match the reference, u2 does not, u3 has no hypothesis
    log = tmp_path / "built_by.txt"
    conf = [{"name": PROBE, "log": str(log), "tag": "t1"}, {"name": "wer"}]
    serial = score_dirs(conf, hyp, ref, tmp_path / "nj1", task="t", progress=False, nj=1)
    assert log.read_text().split() == [str(os.getpid())]  # nj=1: built here, once
    log.unlink()

    parallel = score_dirs(conf, hyp, ref, tmp_path / "nj2", task="t", progress=False, nj=2)
    pids = log.read_text().split()
    assert str(os.getpid()) not in pids
    assert 1 <= len(pids) <= 2 and len(set(pids)) == len(pids)  # one build per worker
    assert parallel == serial
    assert _outputs(tmp_path / "nj1") == _outputs(tmp_path / "nj2")
    probe = parallel["metrics"][PROBE]
    assert probe["scores"] == {"build_probe_matches": 2.0}  # the metric's own summarize, not a mean
    assert probe["higher_is_better"] is False and probe["info"] == {"tag": "t1"}
    assert probe["n_scored"] == 3 and parallel["scores"]["wer"] == pytest.approx(1 / 6)


def test_parallel_bad_metric_options_fail_clearly(tmp_path, dirs):
    from espnet2.speechlm.evaluation.scorer import ScoringError

    hyp, ref = dirs
    log = tmp_path / "built_by.txt"
    # a misspelt option fails in this process, before any worker starts or anything is built
    with pytest.raises(TypeError, match=r"bad options for metric 'speechlm_eval_plugins:BuildProbe'.*'tga'"):
        score_dirs([{"name": PROBE, "log": str(log), "tga": "x"}], hyp, ref, tmp_path / "s", task="t",
                   progress=False, nj=2)
    assert not log.exists()
    # a value only the constructor rejects: named with the metric, not as an anonymous dead worker
    with pytest.raises(ScoringError, match=r"metric 'speechlm_eval_plugins:BuildProbe' could not be built "
                                           r"in a scoring worker: ValueError: probe refused to build"):
        score_dirs([{"name": "wer"}, {"name": PROBE, "log": str(log), "fail": True}], hyp, ref, tmp_path / "s",
                   task="t", progress=False, nj=2)
    with pytest.raises(ValueError, match="probe refused to build"):  # nj=1: the constructor's own error
        score_dirs([{"name": PROBE, "log": str(log), "fail": True}], hyp, ref, tmp_path / "s", task="t",
                   progress=False, nj=1)
