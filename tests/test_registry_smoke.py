"""Every registered first-party component builds from its spec and runs a couple of steps."""

from __future__ import annotations

import pytest
import torch

from ebmkit.protocols import LossOutput, SampleResult, Scheduled, StepContext, TrainBatch
from ebmkit.recipe import nested_resolver
from ebmkit.registry import default_registries

#: Small parameters per component; a component missing here fails test_every_component_has_smoke_params.
SMOKE = {
    ("energies", "mlp"): {"hidden": 8, "depth": 1},
    ("energies", "quadratic"): {},
    ("datasets", "gaussian"): {"dim": 2, "size": 64},
    ("evaluators", "gaussian_kl"): {},
    ("energies", "resnet_ebm"): {"width": 8},
    ("energies", "resnet_ebm_128"): {"width": 8},
    ("transitions", "langevin"): {"step_size": 0.01},
    ("transitions", "gibbs"): {},
    ("energies", "rbm"): {"hidden": 4},
    ("transitions", "mala"): {"step_size": 0.01},
    ("transitions", "hmc"): {"step_size": 0.01, "leapfrog_steps": 2},
    ("transitions", "augment"): {"preset": "celeba"},
    ("samplers", "chain"): {"steps": 2},
    ("samplers", "annealed_langevin"): {"step_size": 0.01, "levels": 2, "steps_per_level": 1},
    ("buffers", "replay"): {"capacity": 8},
    ("buffers", "persistent"): {},
    ("buffers", "data"): {},
    ("optimizers", "sgd"): {"lr": 0.01, "momentum": 0.5},
    ("evaluators", "rbm_likelihood"): {"num_data": 8},
    ("losses", "cd"): {},
    ("losses", "kl"): {},
    ("losses", "nn_entropy"): {"num_reference": 4, "min_buffer": 0},
    ("evaluators", "sample_grid"): {"num_samples": 4, "nrow": 2},
    ("evaluators", "curves"): {},
    ("datasets", "shapes"): {"size": 64, "image_size": 16},
    ("losses", "energy_l2"): {},
    ("losses", "dcd_recovery"): {"sigma": 0.5, "steps": 2, "transition": {"name": "langevin", "step_size": 0.01}},
    ("losses", "dcd_log_mean_exp"): {"num_particles": 2},
    ("evaluators", "denoise"): {"num_samples": 8},
    ("optimizers", "adam"): {},
    ("evaluators", "density2d"): {"bins": 10, "num_test": 50, "num_samples": 0, "plot": False},
    **{("datasets", name): {"size": 64} for name in ("8gaussians", "25gaussians", "rings", "moons", "checkerboard", "pinwheel", "2spirals")},
}
#: Datasets that read files: tests/test_datasets.py runs them on files it writes.
FILE_DATASETS = {"cifar10", "image_folder", "celebahq", "lsun_bedroom", "celeba_attributes"}
IMAGE_ONLY = {("evaluators", "sample_grid"), ("evaluators", "denoise"), ("datasets", "shapes"), ("transitions", "augment"), ("energies", "resnet_ebm"), ("energies", "resnet_ebm_128")}
# The 128 px layout downsamples five times; instance norm needs more than one pixel left.
IMAGE_SIDE = {("energies", "resnet_ebm_128"): 64}


def entries():
    registries = default_registries()
    return [(kind, name) for kind in registries for name in registries[kind] if registries[kind][name].plugin != "ebmkit_thirdparty"]


def test_every_component_has_smoke_params():
    missing = [key for key in entries() if key not in SMOKE and not (key[0] == "datasets" and key[1] in FILE_DATASETS)]
    assert not missing, f"add smoke parameters for {missing}"


def tiny_energy(image: bool):
    registries = default_registries()
    if image:
        return registries.get("energies", "resnet_ebm").build({"width": 8}, data_shape=(3, 16, 16), num_classes=None)
    return registries.get("energies", "mlp").build({"hidden": 8, "depth": 1}, data_shape=(2,), num_classes=None)


@pytest.mark.parametrize("key", sorted(SMOKE), ids=lambda k: f"{k[0]}-{k[1]}")
def test_component_smoke(key, tmp_path):
    kind, name = key
    entry = default_registries().get(kind, name)
    values, problems = entry.check(SMOKE[key], name, nested_resolver(default_registries()))
    assert not problems
    image = key in IMAGE_ONLY
    torch.manual_seed(0)
    side = IMAGE_SIDE.get(key, 16)
    x = torch.rand(4, 3, side, side) if image else torch.randn(4, 2)
    energy = tiny_energy(image)
    if key == ("evaluators", "gaussian_kl"):
        energy = default_registries().get("energies", "quadratic").build({}, data_shape=(2,))
    if key in {("transitions", "gibbs"), ("evaluators", "rbm_likelihood")}:
        energy = default_registries().get("energies", "rbm").build({"hidden": 3}, data_shape=(2,))
        x = torch.bernoulli(torch.full((4, 2), 0.5))
    if kind == "energies":
        shape = (3, side, side) if image else (2,)
        built = entry.build(values, data_shape=shape, num_classes=None)
        e = built(x)
        assert e.shape == (4,)
        e.sum().backward()
    elif kind == "transitions":
        result = entry.build(values).step(energy, x, StepContext(index=0, total=2))
        assert result.x.shape == x.shape and torch.isfinite(result.x).all()
    elif kind == "samplers":
        kernel = default_registries().get("transitions", "langevin").build({"step_size": 0.01})
        sampler = entry.build(values, transitions=[Scheduled(kernel, 1, "langevin")])
        result = sampler.sample(energy, x, keep_last_graph=True)
        assert isinstance(result, SampleResult) and result.x.shape == x.shape and result.x_graph is not None
    elif kind == "buffers":
        buffer = entry.build(values, noise=lambda n: torch.zeros(n, 2))
        buffer.push(x)
        assert buffer.draw(4, x).shape == x.shape
        fresh = entry.build(values, noise=lambda n: torch.zeros(n, 2))
        fresh.load_state_dict(buffer.state_dict())
    elif kind == "losses":
        from ebmkit_mcmc.replay import ReplayBuffer

        buffer = ReplayBuffer(capacity=8, noise=lambda n: torch.zeros(n, 2))
        buffer.push(torch.randn(8, 2))
        kernel = default_registries().get("transitions", "langevin").build({"step_size": 0.01})
        sample = default_registries().get("samplers", "chain").build({"steps": 2}, transitions=[Scheduled(kernel, 1)])
        result = sample.sample(energy, x, keep_last_graph=True)
        batch = TrainBatch(energy, x, result.x, None, result, buffer)
        out = entry.build(values)(energy, batch)
        assert isinstance(out, LossOutput) and out.value.dim() == 0
        out.value.backward()
    elif kind == "optimizers":
        optimizer = entry.build(values, params=list(energy.parameters()))
        energy(x).sum().backward()
        optimizer.step()
    elif kind == "datasets":
        dataset = entry.build(values)
        item = dataset[0]
        assert len(dataset) == 64 and tuple(item.shape) == tuple(dataset.sample_shape)
    elif kind == "evaluators":
        from ebmkit.protocols import EvalContext

        name_of_data = "shapes" if image else "8gaussians"
        dataset = default_registries().get("datasets", name_of_data).build({"size": 64, **({"image_size": 16} if image else {})})
        if key == ("evaluators", "rbm_likelihood"):
            dataset = torch.bernoulli(torch.full((64, 2), 0.5))
        kernel = default_registries().get("transitions", "langevin").build({"step_size": 0.01})
        sampler = default_registries().get("samplers", "chain").build({"steps": 1}, transitions=[Scheduled(kernel, 1)])
        noise = (lambda n: torch.rand(n, 3, 16, 16)) if image else (lambda n: torch.zeros(n, 2))
        (tmp_path / "metrics.jsonl").write_text('{"step": 1, "e_pos": 0.1, "e_neg": 0.2, "loss": 0.3}\n')
        ctx = EvalContext(energy, dataset, sampler, noise, tmp_path, 0, torch.device("cpu"))
        metrics = entry.build(values).evaluate(ctx)
        assert all(isinstance(v, float) for v in metrics.values())
        if image:
            assert any(tmp_path.glob("*.png"))
    else:  # a new kind needs a branch here
        pytest.fail(f"no smoke test for kind {kind}")
