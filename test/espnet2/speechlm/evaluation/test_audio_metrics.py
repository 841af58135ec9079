import numpy as np
import pytest

from espnet2.speechlm.evaluation import Audio, build_metric
from espnet2.speechlm.evaluation.dtw import dtw_path
from espnet2.speechlm.evaluation.features import world_available


def noisy(audio: Audio, snr_db: float, seed: int = 0) -> Audio:
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal(len(audio.wav))
    noise *= np.sqrt(np.mean(audio.wav.astype(float) ** 2) / np.mean(noise**2) / 10 ** (snr_db / 10))
    return Audio((audio.wav + noise).astype(np.float32), audio.sr)


def test_pesq_identical_near_max_and_drops_with_noise(speech):
    pesq = build_metric({"name": "pesq", "use_versa": False})
    same = pesq.score(speech, speech)["pesq"]
    assert same > 4.4
    assert pesq.score(noisy(speech, 5), speech)["pesq"] < same - 1


def test_stoi_identical_is_one(speech):
    stoi = build_metric({"name": "stoi", "use_versa": False})
    assert stoi.score(speech, speech)["stoi"] == pytest.approx(1.0, abs=1e-3)
    assert stoi.score(noisy(speech, -5), speech)["stoi"] < 0.95


def test_si_snr(speech):
    m = build_metric({"name": "si_snr", "use_versa": False})
    assert m.score(speech, speech)["si_snr"] > 60
    scaled = Audio(speech.wav * 0.3, speech.sr)
    assert m.score(scaled, speech)["si_snr"] > 60  # scale invariant
    assert m.score(noisy(speech, 10), speech)["si_snr"] == pytest.approx(10, abs=0.5)


def test_lsd(speech):
    m = build_metric({"name": "lsd"})
    assert m.score(speech, speech)["lsd"] == pytest.approx(0.0, abs=1e-6)
    assert m.score(noisy(speech, 5), speech)["lsd"] > 1.0


@pytest.mark.parametrize("backend", ["world", "mfcc"])
def test_mcd_identical_is_zero(speech, backend):
    if backend == "world" and not world_available():
        pytest.skip("pyworld/pysptk not importable")
    m = build_metric({"name": "mcd", "backend": backend, "use_versa": False})
    assert m.score(speech, speech)["mcd"] == pytest.approx(0.0, abs=1e-6)
    assert m.score(noisy(speech, 5), speech)["mcd"] > 1.0
    assert m.info()["features"].startswith("WORLD" if backend == "world" else "librosa")


def test_mcd_dtw_handles_time_shift(speech):
    m = build_metric({"name": "mcd", "use_versa": False})
    pad = np.concatenate([np.zeros(1600, np.float32), speech.wav])
    assert m.score(Audio(pad, speech.sr), speech)["mcd"] < 1.0


def test_f0_identical(speech):
    m = build_metric({"name": "f0", "use_versa": False})
    out = m.score(speech, speech)
    assert out["f0_rmse"] == pytest.approx(0.0, abs=1e-6)
    assert out["f0_corr"] == pytest.approx(1.0, abs=1e-6)
    assert out["f0_vuv_error"] == 0.0


def test_spk_sim_default_embedding(speech):
    m = build_metric({"name": "spk_sim", "use_versa": False})
    assert m.score(speech, speech)["spk_sim"] == pytest.approx(1.0, abs=1e-6)
    assert "mfcc_stats" in m.info()["embedding"]


def test_spk_sim_hf_requires_local_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="local model folder"):
        build_metric({"name": "spk_sim", "embedding": "hf_xvector", "model_dir": str(tmp_path / "nope"), "use_versa": False})


def test_dtw_path_aligns_repeated_frames():
    x = np.array([[0.0], [1.0], [2.0], [3.0]])
    y = np.array([[0.0], [1.0], [1.0], [2.0], [3.0]])
    ix, iy = dtw_path(x, y)
    assert np.allclose(x[ix], y[iy])
    assert (ix[0], iy[0], ix[-1], iy[-1]) == (0, 0, 3, 4)


def test_optional_import_does_not_leak_fake_pkg_resources():
    import sys

    from espnet2.speechlm.evaluation._compat import optional_import

    optional_import("pyworld")
    mod = sys.modules.get("pkg_resources")
    assert mod is None or hasattr(mod, "working_set")  # only a real setuptools may remain


def test_fast_sp2mc_equals_pysptk(speech):
    """MCD's mel-cepstrum skips pysptk's per-frame wrappers; the numbers must not change."""
    if not world_available():
        pytest.skip("pyworld/pysptk not importable")
    from espnet2.speechlm.evaluation._compat import optional_import
    from espnet2.speechlm.evaluation.features import _world_f0, mcep_alpha, sp2mc

    pw, sptk = optional_import("pyworld"), optional_import("pysptk")
    x, f0, t = _world_f0(speech.wav, speech.sr, 5.0, 71.0, 800.0)
    sp = pw.cheaptrick(x, f0, t, speech.sr)
    assert mcep_alpha(speech.sr) == sptk.util.mcepalpha(speech.sr)
    assert np.array_equal(sp2mc(sp, 24, mcep_alpha(speech.sr)), sptk.sp2mc(sp, order=24, alpha=sptk.util.mcepalpha(speech.sr)))


def test_dtw_distance_blocks_do_not_change_the_path():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((150, 5)), rng.standard_normal((70, 5))  # more rows than one block
    ix, iy = dtw_path(x, y)
    dist = np.sqrt(((x[:, None, :] - y[None, :, :]) ** 2).sum(-1))
    cost = np.full((151, 71), np.inf)
    cost[0, 0] = 0.0
    for i in range(1, 151):
        for j in range(1, 71):
            cost[i, j] = dist[i - 1, j - 1] + min(cost[i - 1, j], cost[i, j - 1], cost[i - 1, j - 1])
    assert dist[ix, iy].sum() == pytest.approx(cost[150, 70], rel=1e-12)
