import sys
import types

import numpy as np
import pytest

from espnet2.speechlm.evaluation import Audio, build_metric
from espnet2.speechlm.evaluation.pesq_metric import PESQ
from espnet2.speechlm.evaluation.versa_bridge import VersaMetric


@pytest.fixture
def fake_versa(monkeypatch):
    """A stand-in for versa.scorer_shared recording how it is called."""
    calls = {"load": [], "use": []}
    shared = types.ModuleType("versa.scorer_shared")

    def load_score_modules(score_config, use_gt=True, use_gt_text=False, use_gpu=False):
        calls["load"].append((score_config, use_gt, use_gpu))
        return {cfg["name"]: {"module": None} for cfg in score_config}

    def use_score_modules(score_modules, gen_wav, gt_wav, gen_sr, text=None):
        calls["use"].append((sorted(score_modules), len(gen_wav), len(gt_wav), gen_sr))
        return {"pesq": 3.25, "mcd": 4.5, "f0rmse": 12.0, "f0corr": 0.9, "spk_similarity": 0.8}

    shared.load_score_modules = load_score_modules
    shared.use_score_modules = use_score_modules
    pkg = types.ModuleType("versa")
    pkg.__path__ = []
    pkg.scorer_shared = shared
    monkeypatch.setitem(sys.modules, "versa", pkg)
    monkeypatch.setitem(sys.modules, "versa.scorer_shared", shared)
    return calls


def test_auto_delegates_to_versa(fake_versa):
    m = build_metric({"name": "pesq", "hyp": "wav.scp", "ref": "wav.scp"})
    assert isinstance(m, VersaMetric)
    hyp = Audio(np.zeros(16000, np.float32), 16000)
    ref = Audio(np.zeros(8000, np.float32), 8000)  # resampled to the hypothesis rate
    assert m.score(hyp, ref) == {"pesq": 3.25}
    assert fake_versa["load"] == [([{"name": "pesq"}], True, False)]
    assert fake_versa["use"] == [(["pesq"], 16000, 16000, 16000)]
    assert m.info()["backend"] == "versa:pesq"


def test_key_mapping_and_options(fake_versa):
    m = build_metric({"name": "f0", "f0min": 40})
    assert fake_versa["load"][0][0] == [{"name": "mcd_f0", "f0min": 40}]
    out = m.score(Audio(np.zeros(100, np.float32), 16000), Audio(np.zeros(100, np.float32), 16000))
    assert out == {"f0_rmse": 12.0, "f0_corr": 0.9}


def test_native_when_disabled_or_not_covered(fake_versa):
    assert isinstance(build_metric({"name": "pesq", "use_versa": False}), PESQ)
    assert not isinstance(build_metric({"name": "wer"}), VersaMetric)
    assert fake_versa["load"] == []


def test_versa_forced_but_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "versa", None)
    with pytest.raises(RuntimeError, match="not installed"):
        build_metric({"name": "pesq", "use_versa": True})
    assert isinstance(build_metric({"name": "pesq"}), PESQ)
