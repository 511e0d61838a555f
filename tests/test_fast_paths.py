"""The fast paths of ``[run]`` (compile, cuda_graphs, channels_last, autocast) train what the
plain path trains: the same recipe, weights and random numbers give the same weights after a few
updates (to float32 round-off; to bfloat16's precision under autocast)."""

from __future__ import annotations

import pytest
import torch

from ebmkit import energy_and_grad
from ebmkit._engine.checkpoint import list_checkpoints
from ebmkit._engine.loop import Trainer
from ebmkit._engine.run import resume_run
from ebmkit._recipes.recipe import load
from ebmkit._engine.run import setup
from ebmkit._engine.speed import FastEnergy
from ebmkit.plugins.improved_cd.resnet import ResNetEnergy
from tests.conftest import RECIPES

# SGD: Adam's first steps are lr * sign(gradient), which turns round-off in a near-zero gradient into a whole step
SGD = ["optim={name = 'sgd', lr = 0.01}"]
# improved CD on a small multi-scale ResNet with self-attention: convolutions, the KL step's
# second derivative, the entropy term and the replay buffer with augmentation all take part
# (a step size of 1, not the recipe's 100, whose clamped chains magnify round-off into different samples)
SHAPES = ["data.size=256", "data.image_size=16", "energy.width=8", "train.batch_size=8", "sampler.steps=3",
          "sampler.transitions.0.step_size=1.0", "evaluators=[]", "train.log_every=1", "buffer.capacity=64", *SGD]


def trained(tmp_path, name: str, overrides: list[str], updates: int = 3, recipe: str = "improved_cd_shapes.toml"):
    trainer = Trainer(setup(load(RECIPES / recipe, overrides), tmp_path / name, live=False))
    trainer.initial = {k: v.clone() for k, v in trainer.run.state.energy.state_dict().items()}
    for _ in range(updates):
        trainer.after_update(trainer.update())
    return trainer


def disagreement(a: Trainer, b: Trainer) -> float:
    """How far apart two runs' weights are, relative to how far training moved them from the
    weights both started from (L2 norms over all the weights)."""
    apart, moved = 0.0, 0.0
    for key, p in a.run.state.energy.state_dict().items():
        if p.is_floating_point():
            apart += float((p - b.run.state.energy.state_dict()[key]).square().sum())
            moved += float((p - a.initial[key]).square().sum())
    return (apart / moved) ** 0.5


def test_channels_last_trains_the_same_weights_and_its_checkpoint_resumes(tmp_path):
    plain = trained(tmp_path, "plain", SHAPES, updates=1)  # (later updates draw augmented buffer samples,
    fast = trained(tmp_path, "fast", [*SHAPES, "run.channels_last=true"], updates=1)  # which magnify round-off)
    assert isinstance(fast.run.model, FastEnergy) and fast.run.model.module is fast.run.state.energy
    conv = next(m for m in fast.run.state.energy.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert disagreement(plain, fast) < 1e-3, disagreement(plain, fast)  # measured 4e-5
    assert plain.run.state.energy.state_dict().keys() == fast.run.state.energy.state_dict().keys()
    fast.checkpoint()
    fast.run.lock.close()
    again = setup(load(RECIPES / "improved_cd_shapes.toml", [*SHAPES, "run.channels_last=true"]), fast.run.out_dir,
                  live=False, resume=True)
    assert not resume_run(again) and again.state.step == 1 and list_checkpoints(fast.run.out_dir)
    for key, value in fast.run.state.energy.state_dict().items():
        assert torch.equal(again.state.energy.state_dict()[key], value)


def test_bf16_autocast_keeps_the_energy_in_float32_and_close_to_it(tmp_path):
    """bf16 keeps 8 bits of mantissa: on the CIFAR-10 energy the energies agree to 2%, the
    sampler's input gradient to 4%, the parameter gradient to 1.3% (measured)."""
    torch.manual_seed(0)
    energy = ResNetEnergy(data_shape=(3, 32, 32))
    fast = FastEnergy(energy, compile_mode=None, channels_last=False, autocast="bf16")
    x = torch.rand(4, 3, 32, 32)
    (e, grad), (e_fast, grad_fast) = energy_and_grad(energy, x), energy_and_grad(fast, x)
    assert e_fast.dtype == grad_fast.dtype == torch.float32
    assert relative(e_fast, e) < 0.05 and relative(grad_fast, grad) < 0.1
    params = list(energy.parameters())
    exact = torch.autograd.grad(energy(x).mean(), params, allow_unused=True)
    autocast = torch.autograd.grad(fast(x).mean(), params, allow_unused=True)
    assert relative(flat(autocast), flat(exact)) < 0.05
    run = trained(tmp_path, "fast", [*SHAPES, "run.autocast='bf16'"], updates=1)
    assert run.run.latest["loss"] == pytest.approx(trained(tmp_path, "plain", SHAPES, updates=1).run.latest["loss"], rel=0.05)


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def flat(grads) -> torch.Tensor:
    return torch.cat([g.flatten() for g in grads if g is not None])


def test_compile_trains_the_same_weights_with_the_kl_step_eager(tmp_path):
    overrides = ["data.size=512", "evaluators=[]", "train.batch_size=32", "sampler.steps=3", "train.log_every=1",
                 "energy.hidden=16", "energy.depth=2", *SGD]
    plain = trained(tmp_path, "plain", overrides, recipe="improved_cd_8gaussians.toml")
    fast = trained(tmp_path, "fast", [*overrides, "run.compile=true"], recipe="improved_cd_8gaussians.toml")
    assert isinstance(fast.run.model, FastEnergy) and fast.run.model._call is not fast.run.state.energy
    assert disagreement(plain, fast) < 1e-3, disagreement(plain, fast)


def test_cuda_graphs_without_a_cuda_device_are_reported_and_the_plain_energy_runs(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this checks the fallback on a machine without CUDA")
    trainer = trained(tmp_path, "run", ["data.size=512", "evaluators=[]", "sampler.steps=2", "run.cuda_graphs=true"],
                      updates=1, recipe="quickstart.toml")
    assert trainer.run.model is trainer.run.state.energy
    assert "[run].cuda_graphs needs a CUDA device, not cpu: ignored" in capsys.readouterr().err.replace("\n", "")
