"""Every registered first-party component trains for two updates inside a tiny recipe.

The recipe table each component goes into comes from the table of kinds
(:data:`ebmkit._host.kinds.KINDS`), so a new kind or component needs no new branch here, only its
smoke parameters below.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch

from ebmkit._host.kinds import kind_named
from ebmkit._engine.loop import Trainer
from ebmkit._recipes.recipe import validate
from ebmkit._host.installed import default_registries
from ebmkit._engine.run import setup

TWO_D = {
    "run": {"seed": 0},
    "data": {"name": "8gaussians", "size": 64},
    "energy": {"name": "mlp", "hidden": 8, "depth": 1},
    "sampler": {"name": "chain", "steps": 2, "transitions": [{"name": "langevin", "step_size": 0.01}]},
    "buffer": {"name": "replay", "capacity": 16},
    "losses": [{"name": "cd"}],
    "optim": {"name": "adam", "lr": 0.01},
    "train": {"steps": 2, "batch_size": 8, "log_every": 1, "eval_at_start": False},
}
IMAGES = {
    **TWO_D,
    "data": {"name": "shapes", "size": 16, "image_size": 16},
    "energy": {"name": "resnet_ebm", "width": 8},
    "sampler": {"name": "chain", "steps": 2, "transitions": [{"name": "langevin", "step_size": 1.0, "noise_std": 0.01, "clamp": [0.0, 1.0]}]},
    "train": {**TWO_D["train"], "batch_size": 4},
}
RBM = {**TWO_D, "data": {"name": "shapes", "size": 16, "image_size": 8, "binarize": True}, "energy": {"name": "rbm", "hidden": 4},
       "sampler": {"name": "chain", "steps": 1, "transitions": [{"name": "gibbs"}]}, "buffer": {"name": "data"}}
GAUSSIAN = {**TWO_D, "data": {"name": "gaussian", "dim": 2, "size": 64}, "energy": {"name": "quadratic"}}

#: (base recipe, parameters) per component; a component missing here fails the first test.
SMOKE = {
    ("datasets", "gaussian"): (GAUSSIAN, {"dim": 2, "size": 64}),
    ("datasets", "shapes"): (IMAGES, {"size": 16, "image_size": 16}),
    **{("datasets", name): (TWO_D, {"size": 64}) for name in ("8gaussians", "25gaussians", "rings", "moons", "checkerboard", "pinwheel", "2spirals")},
    ("energies", "mlp"): (TWO_D, {"hidden": 8, "depth": 1}),
    ("energies", "quadratic"): (TWO_D, {}),
    ("energies", "rbm"): (RBM, {"hidden": 4}),
    ("energies", "resnet_ebm"): (IMAGES, {"width": 8}),
    ("energies", "resnet_ebm_128"): (IMAGES, {"width": 8}),
    ("samplers", "chain"): (TWO_D, {"steps": 2, "transitions": [{"name": "mala", "step_size": 0.01}, {"name": "langevin", "step_size": 0.01, "every": 2}]}),
    ("samplers", "annealed_langevin"): (TWO_D, {"step_size": 0.01, "levels": 2, "steps_per_level": 1}),
    ("transitions", "langevin"): (TWO_D, {"step_size": 0.01}),
    ("transitions", "mala"): (TWO_D, {"step_size": 0.01}),
    ("transitions", "hmc"): (TWO_D, {"step_size": 0.01, "leapfrog_steps": 2}),
    ("transitions", "augment"): (IMAGES, {"preset": "celeba"}),
    ("transitions", "gibbs"): (RBM, {}),
    ("buffers", "replay"): (IMAGES, {"capacity": 8, "uint8": True, "on_draw": {"name": "augment", "preset": "cifar10"}}),
    ("buffers", "persistent"): (TWO_D, {}),
    ("buffers", "data"): (TWO_D, {}),
    ("losses", "cd"): (TWO_D, {}),
    ("losses", "energy_l2"): (TWO_D, {}),
    ("losses", "kl"): (TWO_D, {"last_steps": 2}),
    ("losses", "nn_entropy"): (TWO_D, {"num_reference": 4, "min_buffer": 0}),
    ("losses", "dcd_recovery"): (TWO_D, {"sigma": 0.5, "steps": 2, "transition": {"name": "langevin", "step_size": 0.01}}),
    ("losses", "dcd_log_mean_exp"): (TWO_D, {"num_particles": 2}),
    ("optimizers", "adam"): (TWO_D, {}),
    ("optimizers", "sgd"): (TWO_D, {"lr": 0.01, "momentum": 0.5}),
    ("evaluators", "density2d"): (TWO_D, {"bins": 10, "num_test": 50, "num_samples": 8, "plot": False,
                                          "sampler": {"name": "chain", "steps": 1, "transitions": [{"name": "langevin", "step_size": 0.01}]}}),
    ("evaluators", "gaussian_kl"): (GAUSSIAN, {}),
    ("evaluators", "rbm_likelihood"): (RBM, {"num_data": 8}),
    ("evaluators", "sample_grid"): (IMAGES, {"num_samples": 4, "nrow": 2}),
    ("evaluators", "curves"): (TWO_D, {}),
    ("evaluators", "denoise"): (IMAGES, {"num_samples": 4}),
    ("evaluators", "attribute_classifier"): ({**IMAGES, "data": {**IMAGES["data"], "label": "color"}}, {"num_samples": 6, "train_steps": 2}),
    ("evaluators", "ood"): (IMAGES, {"test_set": {"name": "shapes", "size": 8, "image_size": 16, "seed": 1}, "num_samples": 8,
                                     "ood_sets": [{"name": "uniform_noise", "size": 8, "image_size": 16}], "plot": False}),
    ("evaluators", "energy_histogram"): (TWO_D, {"num_samples": 8, "bins": 5}),
    ("evaluators", "classifier_quality"): (IMAGES, {"train_set": {"name": "digits", "image_size": 16, "channels": 3, "conditional": True},
                                                    "train_steps": 2, "num_train": 64, "num_test": 20, "num_samples": 4, "batch_size": 4}),
    ("evaluators", "chain_trace"): (TWO_D, {"num_chains": 2, "steps": 3}),
    ("evaluators", "mcmc_diagnostics"): (TWO_D, {"num_chains": 2, "steps": 8, "burn_in": 2}),
    ("samplers", "improved_cd_test_time"): (IMAGES, {"rounds": 1, "steps_per_round": 1, "final_steps": 1, "step_size": 1.0}),
    **{("evaluators", name): (IMAGES, {"num_samples": 4, "batch_size": 4, "features": "stand_in", "num_reference": 4,
                                       **({"subset_size": 2, "subsets": 2} if name == "kid" else {}),
                                       **({"splits": 2} if name == "inception_score" else {})})
       for name in ("fid", "kid", "inception_score")},
    ("samplers", "rounds"): (IMAGES, {"transition": {"name": "langevin", "step_size": 1.0, "noise_std": 0.01, "clamp": [0.0, 1.0]},
                                      "augment": {"name": "augment"}, "rounds": 1, "steps_per_round": 1, "final_steps": 1}),
    ("samplers", "parallel_tempering"): (TWO_D, {"steps": 2, "temperatures": [1.0, 2.0, 4.0], "transitions": [
        {"name": "mala", "step_size": 0.01}, {"name": "langevin", "step_size": 0.01, "every": 2}]}),
    ("losses", "dsm"): (TWO_D, {"sigma": 0.1}),
    ("losses", "flow_matching"): (TWO_D, {"temperature": 0.1, "sigma": 0.1}),
    ("losses", "energy_matching_cd"): (TWO_D, {"temperature": 0.1}),
    ("samplers", "energy_matching"): (TWO_D, {"temperature": 0.1, "dt": 0.5, "t_end": 1.5, "given_starts": 0.5, "method": "heun"}),
    ("losses", "ssm"): (TWO_D, {"num_projections": 2}),
    ("losses", "nce"): (TWO_D, {"noise_ratio": 2.0}),
    ("losses", "energy_discrepancy"): (TWO_D, {"num_particles": 2}),
    ("energies", "classifier"): ({**IMAGES, "data": {**IMAGES["data"], "label": "shape"}}, {"width": 4}),
    ("losses", "jem"): ({**IMAGES, "data": {**IMAGES["data"], "label": "shape"}, "energy": {"name": "classifier", "width": 4}},
                        {"data_noise": 0.015, "energy_l2": 0.1}),
    ("evaluators", "classification_accuracy"): ({**IMAGES, "data": {**IMAGES["data"], "label": "shape"}}, {"num_test": 8, "batch_size": 4}),
    ("datasets", "uniform_noise"): (IMAGES, {"size": 16, "image_size": 16}),
    ("datasets", "constant_images"): (IMAGES, {"size": 16, "image_size": 16}),
    ("datasets", "transformed"): (IMAGES, {"dataset": {"name": "shapes", "size": 16, "image_size": 16}, "blur": 1.0, "invert": True}),
    ("datasets", "digits"): (RBM, {"split": "test", "binarize": True}),
}
#: Datasets that read files: tests/test_datasets.py runs them on files it writes.
FILE_DATASETS = {"cifar10", "cifar100", "svhn", "image_folder", "celebahq", "lsun_bedroom", "celeba_attributes", "celebahq_attributes",
                 "mnist", "fashion_mnist", "array"}
#: Transitions have no table of their own: they go into the sampler.
NESTED = {"transitions": ("sampler", "transitions")}


def entries():
    registries = default_registries()
    return [(kind, name) for kind in registries for name in registries[kind]]


def test_every_component_has_smoke_params():
    missing = [key for key in entries() if key not in SMOKE and not (key[0] == "datasets" and key[1] in FILE_DATASETS)]
    assert not missing, f"add smoke parameters for {missing}"


def recipe_with(kind_name: str, name: str) -> dict:
    """The component's base recipe with the component put where its kind goes."""
    base, params = SMOKE[(kind_name, name)]
    data = copy.deepcopy(base)
    table = {"name": name, **params}
    kind = kind_named(kind_name)
    if kind.table is None:
        owner, key = NESTED[kind_name]
        data[owner][key] = [table]
    elif kind.many:
        data[kind.table] = [*data.get(kind.table, []), table] if kind_name == "losses" and name in ("energy_l2", "kl", "nn_entropy") else [table]
    else:
        data[kind.table] = table
    if kind_name == "datasets" and data["energy"]["name"] == "resnet_ebm":
        data["energy"] = {"name": "resnet_ebm", "width": 8}
    if name == "resnet_ebm_128":  # the 128 px layout downsamples five times
        data["data"] = {"name": "shapes", "size": 16, "image_size": 64}
    return data


def trains_two_updates(key, recipe, folder):
    """Train ``recipe`` (two updates) in ``folder`` and check what two updates of the component must do."""
    run = setup(recipe, folder, live=False)
    before = [p.detach().clone() for p in run.state.energy.parameters()]
    threads = torch.get_num_threads()
    try:
        result = Trainer(run).fit()
    finally:
        torch.set_num_threads(threads)
        run.lock.close()
    assert result.metrics["updates"] == 2 and math.isfinite(result.metrics["loss"])
    moved = [not torch.equal(a, b) for a, b in zip(before, run.state.energy.parameters(), strict=True)]
    assert any(moved), "two updates left every parameter where it was"
    wheres = [s.where for s in recipe.specs() if (s.entry.kind.name, s.entry.name) == key]
    assert wheres and all(where in run.components.built for where in wheres)
    if key[0] == "losses":
        assert f"loss/{key[1]}" in result.metrics
    if key[0] == "evaluators":  # curves only plots
        assert any(k.startswith(f"{key[1]}/") for k in result.metrics) or (folder / "curves.png").exists()
    for where, component in run.state.components.items():  # stateful components give their state back
        state = component.state_dict()
        component.load_state_dict(copy.deepcopy(state))
        again = component.state_dict()
        assert state.keys() == again.keys() and all(
            torch.equal(v, again[k]) if isinstance(v, torch.Tensor) else v == again[k] for k, v in state.items()
        ), where


@pytest.mark.parametrize("key", sorted(SMOKE), ids=lambda k: f"{k[0]}-{k[1]}")
def test_component_trains_two_updates_and_resumes_exactly(key, tmp_path):
    """Two updates move the weights, with a finite loss, the component built and its state given
    back; and two updates in one go, or one, a checkpoint, and one more after a resume, give the
    same bits.

    A component that keeps state outside its ``state_dict`` (a counter, a generator, a cache)
    fails here.
    """
    import json

    import safetensors.torch

    from ebmkit._engine.checkpoint import list_checkpoints
    from ebmkit._engine.loop import train
    from ebmkit._engine.run import resume_recipe

    data = recipe_with(*key)
    data["train"] = {**data["train"], "steps": 2, "checkpoint_every": 1}
    trains_two_updates(key, validate(data, "whole"), tmp_path / "whole")
    train(validate({**data, "train": {**data["train"], "steps": 1}}, "half"), tmp_path / "half", live=False)
    train(resume_recipe(tmp_path / "half", ["train.steps=2"]), tmp_path / "half", live=False, resume=True)

    def final(folder):
        checkpoint = list_checkpoints(folder)[-1]
        tensors = {}
        for file in sorted(checkpoint.glob("*.safetensors")):
            tensors |= {f"{file.stem}.{k}": v for k, v in safetensors.torch.load_file(str(file)).items()}
        state = json.loads((checkpoint / "state.json").read_text())
        state.pop("train_seconds")
        return tensors, state

    (expected, expected_state), (got, got_state) = final(tmp_path / "whole"), final(tmp_path / "half")
    assert expected.keys() == got.keys() and expected_state == got_state
    assert [k for k in expected if not torch.equal(expected[k], got[k])] == []
