"""Training end to end: the quickstart's loop lowers the exact grid KL, and guards fire."""

from __future__ import annotations

import io
import json

import pytest
import safetensors.torch
import torch
from rich.console import Console

from ebmkit import hookimpl
from ebmkit._host.errors import TrainingDiverged
from ebmkit._recipes.recipe import load
from ebmkit._engine.loop import train
from tests.conftest import RECIPES


class KeepRun:
    """Keeps each run that ends, so that a test can look at its components."""

    def __init__(self):
        self.runs = []

    @hookimpl
    def ebmkit_run_end(self, run, error):
        self.runs.append(run)


def test_quickstart_loop_lowers_the_exact_kl(tmp_path, ebmkit_register):
    kept = KeepRun()
    registries = ebmkit_register(kept, "keep_run")
    recipe = load(
        RECIPES / "quickstart.toml",
        ["train.steps=250", "evaluators.0.plot=false", "evaluators.0.every=0", "data.size=20000"],
        registries,
    )
    train(recipe, tmp_path, live=False, registries=registries)
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    kl = [line["density2d/grid_kl"] for line in lines if "density2d/grid_kl" in line]
    assert len(kl) == 2
    # Untrained: about 1.32 nats (a nearly flat model). The full recipe reaches about 0.05.
    assert kl[0] > 1.0 and kl[1] < 0.6 * kl[0], kl
    folder = tmp_path / "checkpoints" / "step_0000250"
    weights = safetensors.torch.load_file(str(folder / "ema.safetensors"))
    assert "head.weight" in weights
    # The replay buffer's state comes back from the checkpoint and continues the same chains.
    from ebmkit.plugins.mcmc.replay import ReplayBuffer

    from ebmkit._engine.checkpoint import read_state

    state = read_state(folder)["components"]["buffer"]
    assert int(state["size"]) == 10000 and int(state["offered"]) == 250 * 256
    (run,) = kept.runs
    original = run.components.buffer  # as the run left it: the state of its last checkpoint
    resumed = ReplayBuffer(capacity=10000, reinit_prob=0.2, noise=original.noise)
    resumed.load_state_dict(state)
    data, samples, starts = torch.zeros(256, 2), torch.randn(256, 2), []
    for buffer in (original, resumed):  # the next update: draw the chain starts, push the new samples
        torch.manual_seed(1)
        starts.append(buffer.draw(256, data))
        buffer.push(samples)
    assert torch.equal(starts[1], starts[0])
    assert (len(resumed), resumed.offered) == (len(original), original.offered)
    assert torch.equal(resumed.storage[: len(resumed)], original.storage[: len(original)])
    # ebmkit.load gives back the EMA energy by default, the raw weights on request.
    import ebmkit

    loaded = ebmkit.load(tmp_path)
    points = torch.randn(5, 2)
    raw = ebmkit.load(folder, ema=False)
    assert torch.equal(loaded.head.weight, weights["head.weight"]) and not torch.equal(raw.head.weight, loaded.head.weight)
    both = loaded + raw
    assert both(points).shape == (5,)


def test_non_finite_training_stops_with_a_clear_message(tmp_path, registries):
    recipe = load(RECIPES / "quickstart.toml", ["optim.lr=1e30", "train.steps=50", "evaluators=[]", "data.size=2048"], registries)
    with pytest.raises(TrainingDiverged, match="training diverged at step"):
        train(recipe, tmp_path, live=False)


@pytest.mark.parametrize("clip", [None, 1.0], ids=["per_parameter_norms", "clipped_total"])
def test_a_non_finite_gradient_alone_is_a_divergence(clip, tmp_path, registries):
    from ebmkit._engine.loop import Trainer
    from ebmkit._engine.run import setup
    from ebmkit._host.protocols import TrainBatch

    overrides = ["evaluators=[]", "data.size=2048", *([f"train.grad_clip={clip}"] if clip else [])]
    run = setup(load(RECIPES / "quickstart.toml", overrides, registries), tmp_path / "run", live=False)
    trainer = Trainer(run)
    x_pos, _ = run.state.data.next_batch()
    batch = TrainBatch(run.model, x_pos, x_neg=torch.rand_like(x_pos))
    total, metrics = trainer.losses(batch)
    weight = run.state.energy.head.weight
    weight.grad[0, 0] = float("nan")  # the loss and the energies stay finite
    before = weight.detach().clone()
    with pytest.raises(TrainingDiverged, match=r"training diverged at step 1: loss -?[0-9.e-]+, e_pos .*grad_norm nan"):
        trainer.step(total, batch, metrics, diagnosed=False)
    assert torch.equal(weight.detach(), before)  # the optimizer did not step
    run.lock.close()


def test_energy_bound_guard(tmp_path, registries):
    recipe = load(RECIPES / "quickstart.toml", ["train.energy_bound=1e-6", "train.steps=5", "evaluators=[]", "data.size=2048"], registries)
    with pytest.raises(TrainingDiverged, match=r"exceeds \[train\].energy_bound"):
        train(recipe, tmp_path, live=False)


def test_time_limit_stops_training_and_still_checkpoints_and_evaluates(tmp_path, registries):
    overrides = ["train.steps=100000", "train.time_limit_s=0.5", "data.size=2048", "evaluators.0.plot=false"]
    recipe = load(RECIPES / "quickstart.toml", overrides, registries)
    printed = io.StringIO()
    result = train(recipe, tmp_path, console=Console(file=printed, width=200), live=False)
    assert "[train].time_limit_s = 0.5 reached after" in printed.getvalue()
    updates = int(result.metrics["updates"])
    assert 1 <= updates < 100000 and result.metrics["train_s"] >= 0.5
    assert (tmp_path / "checkpoints" / f"step_{updates:07d}" / "energy.safetensors").exists()
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert any(r["step"] == updates and "density2d/grid_kl" in r for r in rows)  # the final evaluation ran
