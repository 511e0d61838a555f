"""Every shipped recipe runs a 2-step smoke pass: tiny width and image size, synthetic images."""

from __future__ import annotations

import json

import pytest

from ebmkit.recipe import load
from ebmkit.runner import train
from tests.conftest import RECIPES

# The quickstart and the Gaussian recipes are trained in test_training.py and test_gaussian.py.
IMAGE_RECIPES = sorted(
    p for p in RECIPES.glob("*.toml") if p.name != "quickstart.toml" and not p.name.startswith(("rbm_", "gaussian_"))
)
RBM_RECIPES = sorted(RECIPES.glob("rbm_*.toml"))


def smoke_overrides(path) -> list[str]:
    text = path.read_text()
    side = 64 if "resnet_ebm_128" in text else 32  # the 128 px layout downsamples five times
    label = ', label = "color"' if "celeba_attributes" in text else ""
    overrides = [
        "run.device=cpu",
        f'data={{name = "shapes", size = 64, image_size = {side}{label}}}',
        "energy.width=8", "sampler.steps=2", "train.steps=2", "train.batch_size=8", "train.log_every=1",
        "buffer.capacity=32", "evaluators.0.num_samples=4", "evaluators.0.nrow=2",
    ]
    recipe = load(path)  # only to find where the entropy term sits
    for index, spec in enumerate(recipe.many("losses")):
        if spec.entry.name == "nn_entropy":
            overrides += [f"losses.{index}.min_buffer=0", f"losses.{index}.num_reference=4"]
    return overrides


@pytest.mark.parametrize("path", IMAGE_RECIPES, ids=lambda p: p.stem)
def test_recipe_smoke_pass(path, tmp_path, registries):
    recipe = load(path, smoke_overrides(path), registries)
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
    overrides = ["train.steps=3", "train.batch_size=10", "train.log_every=1", "data.size=50", "evaluators.0.num_data=20"]
    recipe = load(path, overrides, registries)
    train(recipe, tmp_path, live=False)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    likelihoods = [r["rbm_likelihood/log_likelihood"] for r in rows if "rbm_likelihood/log_likelihood" in r]
    assert len(likelihoods) == 2 and all(ll < 0 for ll in likelihoods)
