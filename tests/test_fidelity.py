"""FID, KID and IS: the Fréchet distance against its closed form, the evaluators with a stand-in
feature extractor (no download), the reference cache, and `ebmkit eval` on a shapes run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import linalg

from ebmkit._host.errors import EbmkitError
from ebmkit._engine.loop import train
from ebmkit._recipes.recipe import validate

pytest.importorskip("torch_fidelity")

from ebmkit.plugins.images import fidelity  # noqa: E402


def features_with(mean: np.ndarray, cov: np.ndarray, n: int, seed: int) -> torch.Tensor:
    """n points whose sample mean and (unbiased) sample covariance are exactly ``mean`` and ``cov``."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, len(mean)))
    z -= z.mean(0)
    z = z @ np.linalg.inv(np.linalg.cholesky(np.cov(z, rowvar=False))).T  # sample covariance = I
    return torch.from_numpy(mean + z @ np.linalg.cholesky(cov).T)


def closed_form(m1, s1, m2, s2) -> float:
    root = linalg.sqrtm(linalg.sqrtm(s1) @ s2 @ linalg.sqrtm(s1)).real
    return float(((m1 - m2) ** 2).sum() + np.trace(s1 + s2 - 2 * root))


def test_frechet_distance_matches_the_closed_form_on_gaussians():
    rng = np.random.default_rng(0)
    d = 6
    a, b = rng.standard_normal((d, d)), rng.standard_normal((d, d))
    m1, m2 = rng.standard_normal(d), rng.standard_normal(d) + 1.0
    s1, s2 = a @ a.T + 0.5 * np.eye(d), b @ b.T + 0.1 * np.eye(d)
    got = fidelity.frechet_distance(features_with(m1, s1, 500, 1), features_with(m2, s2, 400, 2))
    assert got == pytest.approx(closed_form(m1, s1, m2, s2), rel=1e-8)
    # diagonal covariances: sum of (mean gap)^2 + (sqrt(s1) - sqrt(s2))^2
    v1, v2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 9.0])
    got = fidelity.frechet_distance(features_with(np.zeros(3), np.diag(v1), 300, 3), features_with(np.ones(3), np.diag(v2), 300, 4))
    assert got == pytest.approx(3.0 + ((np.sqrt(v1) - np.sqrt(v2)) ** 2).sum(), rel=1e-8)
    same = features_with(m1, s1, 300, 5)
    assert fidelity.frechet_distance(same, same) == pytest.approx(0.0, abs=1e-8)


def test_frechet_distance_agrees_with_torch_fidelitys_on_singular_features():
    """Few samples of ReLU features (dead units, rank-deficient covariances), as small-image classifiers give."""
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

    generator = torch.Generator().manual_seed(0)
    a = torch.relu(torch.randn(60, 32, generator=generator, dtype=torch.float64) - 0.5)
    b = torch.relu(torch.randn(60, 32, generator=generator, dtype=torch.float64) * 1.5)
    a[:, :4] = b[:, :4] = 0  # dead units
    stats = [fid_features_to_statistics(f) for f in (a, b)]
    theirs = float(fid_statistics_to_metric(stats[0], stats[1], verbose=False)["frechet_inception_distance"])
    assert fidelity.frechet_distance(a, b) == pytest.approx(theirs, rel=1e-6)


def tiny_shapes_run(folder, **extra) -> str:
    data = {
        "run": {"seed": 0},
        "data": {"name": "shapes", "size": 64, "image_size": 16},
        "energy": {"name": "resnet_ebm", "width": 8},
        "sampler": {"name": "chain", "steps": 2, "transitions": [{"name": "langevin", "step_size": 1.0, "noise_std": 0.01, "clamp": [0.0, 1.0]}]},
        "losses": [{"name": "cd"}],
        "optim": {"name": "adam", "lr": 0.001},
        "train": {"steps": 2, "batch_size": 4, "log_every": 1, "eval_at_start": False, "ema": 0.9},
        **extra,
    }
    train(validate(data, "tiny"), folder, live=False)
    return str(folder)


@pytest.fixture(scope="module")
def shapes_run(tmp_path_factory):
    return tiny_shapes_run(tmp_path_factory.mktemp("fidelity") / "run")


def test_eval_writes_fid_kid_is_with_their_protocol(shapes_run, run_cli, tmp_path, monkeypatch):
    monkeypatch.setenv("EBMKIT_CACHE_DIR", str(tmp_path / "cache"))
    result = run_cli("eval", shapes_run, "--evaluator", "fid", "--evaluator", "kid", "--evaluator", "inception_score",
                     "--evaluator", "sample_grid", "--evaluator", "energy_histogram", "--set", "fid.num_samples=20", "--set", "kid.num_samples=20",
                     "--set", "inception_score.num_samples=20", "--set", "fid.features='stand_in'",
                     "--set", "kid.features='stand_in'", "--set", "inception_score.features='stand_in'",
                     "--set", "fid.num_reference=30", "--set", "kid.num_reference=30", "--set", "kid.subset_size=10",
                     "--set", "sample_grid.num_samples=4", "--set", "energy_histogram.num_samples=8")
    assert result.exit_code == 0, result.output
    assert "fid/protocol: FID: 20 samples" in result.output and "EMA weights" in result.output
    assert "reference: 30 images of Shapes(" in result.output
    rows = [json.loads(line) for line in open(f"{shapes_run}/metrics.jsonl")]
    row = rows[-1]
    assert row["source"] == "ebmkit eval" and row["step"] == 2
    assert row["fid/fid"] > 0 and np.isfinite(row["kid/kid"]) and row["inception_score/inception_score"] >= 1.0
    assert row["fid/protocol"].startswith("FID: 20 samples") and "stand-in features" in row["fid/protocol"]
    # the figures of a figure-writing evaluator land in the run folder, with the checkpoint's step
    assert (Path(shapes_run) / "samples_step0000002.png").exists()
    assert (Path(shapes_run) / "energy_histogram_step0000002.png").exists() and "energy_histogram/energy_gap" in row
    assert json.loads((Path(shapes_run) / "eval_fid_step0000002.json").read_text())["fid/fid"] == row["fid/fid"]


def test_eval_continues_the_chains_of_the_saved_replay_buffer(tmp_path, run_cli, monkeypatch):
    """A run that trained from a replay buffer is evaluated from that buffer, as training evaluated it."""
    monkeypatch.setenv("EBMKIT_CACHE_DIR", str(tmp_path / "cache"))
    run = tiny_shapes_run(tmp_path / "run", buffer={"name": "replay", "capacity": 16, "reinit_prob": 0.0})
    result = run_cli("eval", run, "--evaluator", "fid", "--set", "source='buffer'", "--set", "features='stand_in'",
                     "--set", "num_samples=8", "--set", "batch_size=4", "--set", "num_reference=8")
    assert result.exit_code == 0, result.output
    assert "8 samples, chains from the replay buffer" in result.output


def test_fid_of_the_reference_set_against_itself_is_zero_and_cached(shapes_run, tmp_path, monkeypatch):
    """Samples that are the reference images give FID 0; the reference features are computed once."""
    from ebmkit._host.installed import default_registries

    monkeypatch.setenv("EBMKIT_CACHE_DIR", str(tmp_path))
    registries = default_registries()
    fid = registries.get("evaluators", "fid").factory
    dataset = registries.get("datasets", "shapes").factory(size=40, image_size=16, dequantize=False)
    images = torch.stack([dataset[i] for i in range(40)])
    evaluator = fid(num_samples=40, batch_size=40, features="stand_in", reference=dataset, num_reference=40)
    monkeypatch.setattr(type(evaluator), "draw", lambda self, ctx: (images, "the reference images"))

    class Ctx:
        device, step, ema = torch.device("cpu"), 0, None

    assert evaluator.evaluate(Ctx())["fid"] == pytest.approx(0.0, abs=1e-6)
    cached = list((tmp_path / "fidelity").glob("shapes-16x16-40-stand_in-*.safetensors"))
    assert len(cached) == 1
    calls = []
    real = fidelity.SampleQualityProtocol.features_of
    monkeypatch.setattr(fidelity.SampleQualityProtocol, "features_of", lambda self, *a: calls.append(1) or real(self, *a))
    evaluator.evaluate(Ctx())
    assert len(calls) == 1  # the samples only; the reference came from the cache


def test_missing_inception_weights_without_network_say_how_to_provide_them(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(EbmkitError, match="could not be downloaded.*weights = ") as caught:
        fidelity.inception(None)
    assert fidelity.INCEPTION_URL in str(caught.value)
    with pytest.raises(EbmkitError, match="no such file"):
        fidelity.inception(str(tmp_path / "missing.pth"))


class NotATensor:
    pass


def test_inception_weights_that_hold_objects_are_refused_not_unpickled(tmp_path):
    path = tmp_path / "weights.pth"
    torch.save({"conv": NotATensor()}, path)
    with pytest.raises(EbmkitError, match="cannot be read safely|can be read safely"):
        fidelity.inception(str(path))


def test_eval_refuses_an_unknown_evaluator_or_parameter_with_exit_2(shapes_run, run_cli):
    result = run_cli("eval", shapes_run, "--evaluator", "fidd")
    assert result.exit_code == 2 and "fid" in result.output
    result = run_cli("eval", shapes_run, "--evaluator", "fid", "--set", "num_samplez=3")
    assert result.exit_code == 2 and "num_samplez" in result.output
    result = run_cli("eval", shapes_run)
    assert result.exit_code == 2 and "--evaluator" in result.output


def test_test_time_preset_is_the_reference_schedule_per_chain():
    """test_inception.py: 10 steps to fill a 1000-chain buffer, 70 draws of 512 with augmentation
    then 10 steps, 30 half-buffer sweeps of 10 steps; per chain in expectation."""
    from ebmkit._host.installed import default_registries

    sampler = default_registries().get("samplers", "improved_cd_test_time").factory()
    assert sampler.rounds == round(70 * 512 / 1000)
    # the fill's 10 steps lead the first round; the last round's 10 steps join the 30 / 2 sweeps
    assert sampler.steps_per_round == 10 and sampler.final_steps == 10 + 30 // 2 * 10
    assert (sampler.transition.step_size, sampler.transition.noise_std) == (100.0, 0.001)
    assert sampler.augment.blur_kernel == 5 and sampler.augment.preset == "cifar10" and not sampler.divide_step_size


def test_inception_is_built_from_a_safetensors_weights_file(tmp_path):
    """The weights handed to torch-fidelity's InceptionV3 are the file's (here random ones of the
    right names and shapes, since the real file is never downloaded in tests)."""
    from unittest import mock

    from safetensors.torch import save_file
    from torch_fidelity import feature_extractor_inceptionv3 as module

    with mock.patch.object(module, "load_state_dict_from_url", lambda *a, **k: {}), \
            mock.patch.object(torch.nn.Module, "load_state_dict", lambda self, state: None):
        shapes = module.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"]).state_dict()
    generator = torch.Generator().manual_seed(0)
    weights = {k: (torch.randn(v.shape, generator=generator) * 0.01).to(v.dtype) if v.is_floating_point() else v
               for k, v in shapes.items()}
    save_file(weights, str(tmp_path / "inception.safetensors"))
    model = fidelity.inception(str(tmp_path / "inception.safetensors"))
    torch.testing.assert_close(model.extractor.state_dict()["fc.weight"], weights["fc.weight"])
    out = model(fidelity.to_uint8(torch.rand(2, 3, 16, 16)))
    assert out["2048"].shape == (2, 2048) and out["logits_unbiased"].shape[0] == 2
