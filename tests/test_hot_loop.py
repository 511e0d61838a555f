"""The training loop does not wait for the device between logged updates: ebmkit's own code
reads a tensor's value (bool, float, item, tolist) once per update, for the divergence flag, and
the metrics of a logged update in one transfer."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

import ebmkit
from ebmkit._engine.loop import Trainer
from ebmkit._host.protocols import TrainBatch
from ebmkit._recipes.recipe import load
from ebmkit._engine.run import setup
from tests.conftest import RECIPES

OWN_CODE = str(Path(ebmkit.__file__).parent)  # the core and the first-party plugins
READS = ("__bool__", "__float__", "__int__", "item", "tolist", "nonzero", "cpu")


@pytest.fixture
def count_reads(monkeypatch):
    """Counts reads of a tensor's value made directly from ebmkit's core or its plugins."""
    reads: list[str] = []
    for name in READS:
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, _name=name, **kwargs):
            caller = sys._getframe(1).f_code.co_filename
            if caller.startswith(OWN_CODE):
                reads.append(f"{_name} in {Path(caller).name}:{sys._getframe(1).f_lineno}")
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    return reads


SHAPES = ["data.image_size=16", "energy.width=8", "buffer.capacity=64", "losses.3.min_buffer=8"]  # augmented draws, entropy on


@pytest.mark.parametrize("recipe, extra", [("quickstart.toml", []), ("improved_cd_8gaussians.toml", []),
                                           ("improved_cd_shapes.toml", SHAPES)])
def test_an_update_reads_the_device_once_and_a_logged_update_once_more(recipe, extra, tmp_path, count_reads):
    overrides = ["data.size=512", "evaluators=[]", "sampler.steps=3", "train.batch_size=64",
                 "train.log_every=4", "train.steps=8", "train.energy_bound=1e6", *extra]
    trainer = Trainer(setup(load(RECIPES / recipe, overrides), tmp_path, live=False))
    for _ in range(2):  # warm up the code paths
        trainer.after_update(trainer.update())
    count_reads.clear()
    metrics = trainer.update()  # update 3, not logged
    assert len(count_reads) == 1, count_reads  # the divergence flag
    assert all(isinstance(v, torch.Tensor) for k, v in metrics.items() if k.startswith(("loss", "e_", "grad")))
    trainer.after_update(metrics)
    assert len(count_reads) == 1, count_reads
    count_reads.clear()
    trainer.after_update(trainer.update())  # update 4: logged
    assert len(count_reads) == 2, count_reads  # the flag, and every metric in one tolist
    assert 'tolist' in count_reads[1]
    assert isinstance(trainer.run.latest["loss"], float) and "sampler/energy" in trainer.run.latest


@pytest.mark.parametrize("recipe", ["quickstart.toml", "rbm_shapes_cd1.toml"])
def test_the_sampler_diagnoses_only_the_updates_that_are_logged(recipe, tmp_path):
    """Langevin's gradient norms and Gibbs's energy pass cost work on every step of the chain:
    they are computed on the logged updates alone, and the logged rows are what they were."""
    overrides = ["evaluators=[]", "train.batch_size=16", "train.log_every=3", "train.steps=6"]
    trainer = Trainer(setup(load(RECIPES / recipe, overrides), tmp_path / "run", live=False))
    diagnosed = [any(k.startswith("sampler/") for k in trainer.update()) for _ in range(6)]
    assert diagnosed == [False, False, True, False, False, True]

    with ebmkit.diagnostics(False):
        assert ebmkit.StepContext(index=0, total=1).diagnostics is False
        quiet = trainer.run.components.sampler.sample(trainer.run.model, torch.rand(4, *trainer.run.components.dataset.sample_shape))
    assert quiet.trace == {} and ebmkit.StepContext(index=0, total=1).diagnostics is True


def test_a_plugin_reading_every_update_gets_the_diagnostics_on_every_update(tmp_path, ebmkit_register):
    class EveryUpdate:
        seen: list[bool] = []

        @ebmkit.hookimpl
        def ebmkit_step_end(self, metrics):
            self.seen.append("sampler/energy" in metrics)

    class CountsSteps:  # called every update, but reads no metrics (as the progress bar)
        @ebmkit.hookimpl
        def ebmkit_step_end(self, step):
            pass

    overrides = ["train.steps=4", "train.log_every=2", "evaluators=[]", "sampler.steps=2"]
    registries = ebmkit_register(CountsSteps(), "counts_steps")
    trainer = Trainer(setup(load(RECIPES / "quickstart.toml", overrides, registries), tmp_path / "counted", live=False))
    assert trainer.run.hook.ebmkit_step_end.get_hookimpls()  # registered for the run
    assert [trainer.diagnosed(step) for step in (1, 2, 3, 4)] == [False, True, False, True]

    plugin = EveryUpdate()
    registries = ebmkit_register(plugin, "every_update")
    recipe = load(RECIPES / "quickstart.toml", overrides, registries)
    ebmkit.train(recipe, tmp_path / "run", live=False, registries=registries)
    assert plugin.seen == [True] * 4


def test_terms_through_the_sampler_are_backpropagated_first_and_the_gradient_is_the_sum(tmp_path):
    """The loop frees the sampler's graph before the other terms build theirs (two backward
    passes); the parameter gradient is that of the summed loss all the same."""
    overrides = ["data.size=512", "evaluators=[]", "sampler.steps=3", "train.batch_size=64", "losses.3.min_buffer=0"]
    trainer = Trainer(setup(load(RECIPES / "improved_cd_8gaussians.toml", overrides), tmp_path, live=False))
    run = trainer.run
    run.components.buffer.push(torch.randn(256, 2))  # the entropy term is on

    def sampled_batch():
        torch.manual_seed(7)
        x_pos = run.state.data.next_batch()[0]
        batch = TrainBatch(run.model, x_pos, None, reference_set=trainer.reference_set)
        result = run.components.sampler.sample(run.model, run.components.buffer.draw(64, x_pos), keep_graph=trainer.graph_steps)
        batch.x_neg, batch.x_neg_graph = result.x, result.x_graph
        return batch

    data_state = run.state.data.state_dict()
    first = sampled_batch()
    total, metrics = trainer.losses(first)
    split = {name: p.grad.clone() for name, p in run.state.energy.named_parameters()}
    assert metrics["nn_entropy/active"] == 1.0
    assert first.x_neg_graph is None  # freed after the first backward pass
    run.state.data.load_state_dict(data_state)
    batch = sampled_batch()
    summed = sum(p.keys["weight"] * p.component(batch).value for p in run.components.losses)
    grads = torch.autograd.grad(summed, list(run.state.energy.parameters()))
    assert float(summed.detach()) == pytest.approx(float(total), rel=1e-6)
    for (name, _), grad in zip(run.state.energy.named_parameters(), grads, strict=True):
        torch.testing.assert_close(split[name], grad, rtol=1e-5, atol=1e-7)


def test_a_recipe_whose_terms_do_not_depend_on_the_weights_is_refused(tmp_path, install_plugin):
    source = (
        "import torch\nfrom ebmkit import hookimpl\nfrom ebmkit._host.protocols import LossOutput\n\n"
        "def constant():\n    return lambda batch: LossOutput(torch.zeros(()))\n\n"
        "@hookimpl\ndef ebmkit_register_losses(register):\n    register('constant', constant)\n"
    )
    registries = install_plugin("ebmkit-constant", "ebmkit_constant", source)
    recipe = load(RECIPES / "quickstart.toml", ["data.size=512", "evaluators=[]", "losses=[{name = 'constant'}]"], registries)
    trainer = Trainer(setup(recipe, tmp_path, live=False, registries=registries))
    with pytest.raises(ebmkit.EbmkitError, match="no loss term of this recipe \\(constant\\) depends on the energy's parameters"):
        trainer.update()


def test_gradients_are_cleared_as_zero_grad_would_and_an_optimizers_own_zero_grad_is_called():
    from ebmkit._engine.loop import clear_gradients

    calls = []

    class OwnZeroGrad(torch.optim.SGD):
        def zero_grad(self, set_to_none: bool = True) -> None:
            calls.append(set_to_none)
            super().zero_grad(set_to_none)

    first, second = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.SGD([{"params": [first]}, {"params": [second], "lr": 0.5}], lr=0.1)
    first.grad, second.grad = torch.ones(2), torch.ones(3)
    clear_gradients(optimizer)
    assert first.grad is None and second.grad is None  # every group's
    first.grad = torch.ones(2)
    clear_gradients(OwnZeroGrad([first], lr=0.1))
    assert calls == [True] and first.grad is None
