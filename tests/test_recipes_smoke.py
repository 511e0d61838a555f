"""Every shipped recipe runs a 2-step smoke pass: tiny width and image size, synthetic images (real digits for
the digits recipes)."""

from __future__ import annotations

import json
import math
import tomllib

import pytest

from ebmkit._host.protocols import needs_of
from ebmkit._recipes.recipe import load
from ebmkit._engine.loop import train
from ebmkit.plugins.toy.densities import DENSITIES
from tests.conftest import TRAINING_RECIPES, load_benchmark


def data_name(path) -> str:
    return tomllib.loads(path.read_text())["data"]["name"]


# The quickstart and the Gaussian recipes are trained in test_training.py and test_gaussian.py.
TWO_D_RECIPES = sorted(p for p in TRAINING_RECIPES if data_name(p) in DENSITIES and p.name != "quickstart.toml")
RBM_RECIPES = sorted(p for p in TRAINING_RECIPES if p.name.startswith("rbm_"))
IMAGE_RECIPES = sorted(
    p for p in TRAINING_RECIPES
    if p not in TWO_D_RECIPES and p not in RBM_RECIPES and p.name != "quickstart.toml" and not p.name.startswith("gaussian_")
)


def smoke_overrides(path) -> list[str]:
    text = path.read_text()
    side = 64 if "resnet_ebm_128" in text else 32  # the 128 px layout downsamples five times
    own_label = tomllib.loads(text).get("data", {}).get("label") if "shapes" in text else None
    label = f', label = "{own_label}"' if isinstance(own_label, str) else (
        ', label = "color"' if "_attributes" in text or "attribute_classifier" in text else "")
    # real digits ship with scikit-learn: those recipes run on them
    data = ('{name = "digits", conditional = true}' if data_name(path) == "digits"
            else f'{{name = "shapes", size = 64, image_size = {side}{label}}}')
    overrides = ["run.device=cpu", f"data={data}", "train.steps=2", "train.batch_size=8", "train.log_every=1"]
    recipe = load(path)  # only to find where the buffer, the entropy term and the evaluators sit
    overrides.append("energy.hidden=16" if recipe.one("energy").entry.name == "mlp" else "energy.width=8")
    sampler = recipe.one("sampler").entry.name
    overrides += {"annealed_langevin": ["sampler.levels=2", "sampler.steps_per_level=1"],
                  "energy_matching": ["sampler.dt=0.01", "sampler.t_end=0.02"]}.get(sampler, ["sampler.steps=2"])
    if recipe.one("buffer") is not None and recipe.one("buffer").entry.name == "replay":
        overrides.append("buffer.capacity=32")
    for index, spec in enumerate(recipe.many("evaluators")):
        own = spec.values.get("sampler")
        if own is not None and own.entry.name == "energy_matching":
            overrides.append(f"evaluators.{index}.sampler.t_end=0.02")
        if spec.entry.name == "fid":
            overrides += [f"evaluators.{index}.{key}" for key in
                          ("num_samples=4", "batch_size=4", "num_reference=4", 'features="stand_in"', "reference={name = \"shapes\", size = 8, image_size = %d}" % side)]
        if spec.entry.name in ("sample_grid", "denoise"):
            overrides += [f"evaluators.{index}.num_samples=4", f"evaluators.{index}.nrow=2"]
        if spec.entry.name == "classifier_quality":
            overrides += [f"evaluators.{index}.{key}" for key in ("num_samples=4", "train_steps=2", "num_train=64", "num_test=40")]
        if spec.entry.name == "attribute_classifier":
            overrides += [f"evaluators.{index}.num_samples=6", f"evaluators.{index}.train_steps=2"]
        if spec.entry.name == "ood":
            overrides += [f"evaluators.{index}.num_samples=8", f'evaluators.{index}.test_set={{name = "shapes", size = 8, image_size = {side}, seed = 1}}',
                          f'evaluators.{index}.ood_sets=[{{name = "uniform_noise", size = 8, image_size = {side}}}]']
    for index, spec in enumerate(recipe.many("losses")):
        if spec.entry.name == "nn_entropy":
            overrides += [f"losses.{index}.min_buffer=0", f"losses.{index}.num_reference=4"]
    return overrides


def its_first_phase(path, overrides: list[str], tmp_path, registries) -> list[str]:
    """A recipe that starts from another run (``[train].init_from``): its first phase's recipe
    trained first with the same overrides, and the override that points to it."""
    first = load_benchmark("phases").first_phase(path)
    if first is None:
        return []
    train(load(first, overrides(first), registries), tmp_path / "first", live=False)
    return [f'train.init_from="{tmp_path / "first"}"']


@pytest.mark.parametrize("path", IMAGE_RECIPES, ids=lambda p: p.stem)
def test_recipe_smoke_pass(path, tmp_path, registries):
    overrides = smoke_overrides(path) + its_first_phase(path, smoke_overrides, tmp_path, registries)
    recipe = load(path, overrides, registries)
    tmp_path = tmp_path / "run"
    train(recipe, tmp_path, live=False)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "loss" in r]
    assert [r["step"] for r in steps] == [1, 2]
    names = {s.entry.name for s in recipe.many("losses")}
    if "kl" in names:
        assert "loss/kl" in steps[-1] and steps[-1]["nn_entropy/active"] == 1.0
    assert (tmp_path / "samples_step0000002.png").exists() and (tmp_path / "curves.png").exists()
    assert (tmp_path / "checkpoints" / "step_0000002" / "ema.safetensors").exists()


@pytest.mark.parametrize("path", RBM_RECIPES, ids=lambda p: p.stem)
def test_rbm_recipe_smoke_pass(path, tmp_path, registries):
    overrides = ["train.steps=3", "train.batch_size=10", "train.log_every=1", "evaluators.0.num_data=20"]
    if data_name(path) == "shapes":
        overrides.append("data.size=50")
    recipe = load(path, overrides, registries)
    train(recipe, tmp_path, live=False)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    likelihoods = [r["rbm_likelihood/log_likelihood"] for r in rows if "rbm_likelihood/log_likelihood" in r]
    assert len(likelihoods) == 2 and all(ll < 0 for ll in likelihoods)


@pytest.mark.parametrize("path", TWO_D_RECIPES, ids=lambda p: p.stem)
def test_2d_recipe_smoke_pass(path, tmp_path, registries):
    overrides = ["train.steps=3", "train.log_every=1", 'evaluators=[{name = "density2d", bins = 20, num_test = 100, plot = false}]']
    recipe = load(path, overrides + its_first_phase(path, lambda _: overrides, tmp_path, registries), registries)
    tmp_path = tmp_path / "run"
    result = train(recipe, tmp_path, live=False)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    trained = [r for r in rows if "loss" in r]
    assert [r["step"] for r in trained] == [1, 2, 3] and all(math.isfinite(r["loss"]) for r in trained)
    # The sampler runs in training exactly when a loss term needs negative samples.
    needs_samples = any(needs_of(spec.build()).negatives for spec in recipe.many("losses"))
    assert all(("e_neg" in r) == needs_samples for r in trained)
    assert math.isfinite(result.metrics["density2d/grid_kl"])
