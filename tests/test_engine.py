"""The training engine: lifecycle hooks used through plugins, validation that builds, the run
state, and self-describing run folders."""

from __future__ import annotations

import copy
import json

import pytest
import safetensors.torch
import torch

import ebmkit
from ebmkit import hookimpl
from ebmkit._engine.checkpoint import PluginVersionWarning
from ebmkit._host.protocols import scale_energies
from ebmkit._engine.loop import Trainer, train
from ebmkit._host.protocols import TrainBatch
from ebmkit._recipes.recipe import load
from ebmkit._engine.run import setup
from tests.conftest import RECIPES, read_metrics

TINY = ["train.steps=6", "train.log_every=1", "data.size=512", "evaluators=[]", "sampler.steps=3"]

LOGGER = """
from ebmkit import hookimpl

ROWS = []

@hookimpl
def ebmkit_log_metrics(step, metrics):
    ROWS.append({"step": step, **metrics})
"""

DEVICE_STRATEGY = """
import torch
from ebmkit import hookimpl

class Counting(torch.nn.Module):
    '''A wrapper shaped like DistributedDataParallel: the energy is .module, calls pass through.'''

    def __init__(self, module):
        super().__init__()
        self.module = module
        self.calls = 0

    def forward(self, *args, **kwargs):
        self.calls += 1
        return self.module(*args, **kwargs)

@hookimpl
def ebmkit_wrap_energy(energy):
    return Counting(energy)
"""

EVALUATOR = """
import torch
from ebmkit import hookimpl

@hookimpl
def ebmkit_evaluate(run, step, when):
    if when == "step" and step % 3:
        return None
    ctx = run.eval_context(step)
    x = ctx.noise(64)
    with torch.no_grad():
        return {"probe/noise_energy": float(ctx.energy(x).mean()), "probe/when_end": float(when == "end")}
"""


def test_a_logger_plugin_sees_every_logged_row(tmp_path, install_plugin):
    registries = install_plugin("ebmkit-logger", "ebmkit_logger", LOGGER)
    recipe = load(RECIPES / "quickstart.toml", [*TINY, "evaluators=[{name = 'density2d', bins = 10, num_test = 50, plot = false}]"], registries)
    train(recipe, tmp_path, live=False, registries=registries)
    import ebmkit_logger

    assert ebmkit_logger.ROWS == read_metrics(tmp_path)
    assert [r["step"] for r in ebmkit_logger.ROWS if "loss" in r] == [1, 2, 3, 4, 5, 6]


def test_a_device_strategy_plugin_wraps_the_energy_and_changes_nothing_else(tmp_path, install_plugin, fresh_registries):
    plain = train(load(RECIPES / "quickstart.toml", TINY), tmp_path / "plain", live=False)
    registries = install_plugin("ebmkit-strategy", "ebmkit_strategy", DEVICE_STRATEGY)
    recipe = load(RECIPES / "quickstart.toml", TINY, registries)
    run = setup(recipe, tmp_path / "wrapped", live=False, registries=registries)
    assert type(run.model).__name__ == "Counting" and run.model.module is run.state.energy
    wrapped = Trainer(run).fit()
    assert run.model.calls > 0  # the sampler and the losses went through the wrapper
    drop = ("steps_per_s", "train_s", "wall_s")
    assert [{k: v for k, v in r.items() if k not in drop} for r in read_metrics(tmp_path / "wrapped")] == [
        {k: v for k, v in r.items() if k not in drop} for r in read_metrics(tmp_path / "plain")
    ]
    assert wrapped.metrics["loss"] == plain.metrics["loss"]
    weights = safetensors.torch.load_file(str(tmp_path / "wrapped" / "checkpoints" / "step_0000006" / "energy.safetensors"))
    assert "head.weight" in weights  # plain weights, no wrapper prefix


def test_an_evaluator_plugin_is_called_at_the_evaluation_points(tmp_path, install_plugin):
    registries = install_plugin("ebmkit-probe", "ebmkit_probe", EVALUATOR)
    recipe = load(RECIPES / "quickstart.toml", TINY, registries)
    train(recipe, tmp_path, live=False, registries=registries)
    rows = [r for r in read_metrics(tmp_path) if "probe/noise_energy" in r]
    assert [r["step"] for r in rows] == [0, 3, 6] and [r["probe/when_end"] for r in rows] == [0.0, 0.0, 1.0]


class Wrapper(torch.nn.Module):
    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)


@pytest.mark.parametrize("wrap", [Wrapper, lambda m: torch.compile(m, backend="eager")], ids=["ddp_like", "compiled"])
def test_multiscale_energies_keep_their_scales_when_wrapped(wrap, registries):
    torch.manual_seed(0)
    energy = ebmkit.create("energy", "resnet_ebm", width=8, data_shape=(3, 16, 16))
    x = torch.rand(4, 3, 16, 16)
    scales = energy(x, per_scale=True)
    assert scales.shape == (4, 3)
    wrapped = wrap(energy)
    torch.testing.assert_close(scale_energies(wrapped, x), scales)
    torch.testing.assert_close(TrainBatch(wrapped, x).e_pos_scales, scales)
    torch.testing.assert_close(TrainBatch(wrapped, x).e_pos, energy(x))


@pytest.mark.parametrize("name, keys", [("mlp", {"hidden": 8}), ("resnet_ebm", {"width": 8})], ids=["one_scale", "multiscale"])
def test_a_batch_computes_each_energy_once_and_shares_its_shapes_and_means(name, keys, registries):
    torch.manual_seed(0)
    shape = (2,) if name == "mlp" else (3, 16, 16)
    energy = ebmkit.create("energy", name, **keys, data_shape=shape)
    calls = []
    energy.register_forward_hook(lambda module, args, out: calls.append(1))
    x_pos, x_neg = torch.rand(4, *shape), torch.rand(4, *shape)
    batch = TrainBatch(energy, x_pos, x_neg=x_neg)
    scales = batch.e_pos_scales
    assert scales.shape[0] == 4 and scales.dim() == 2
    torch.testing.assert_close(batch.e_pos, scales.sum(1))
    torch.testing.assert_close(batch.e_pos_mean, scales.mean())  # over the batch and the scales
    torch.testing.assert_close(batch.e_neg_mean, batch.e_neg_scales.mean())
    assert batch.e_pos_mean is batch.e_pos_mean  # one tensor, shared by the terms and the loop
    assert len(calls) == 2  # one forward pass a side
    batch.release_graph()
    batch.e_pos_mean
    assert len(calls) == 3  # forgotten with the graph: computed afresh


def test_multiscale_is_the_num_scales_attribute_on_the_class_or_the_instance_under_wrappers(registries):
    from ebmkit import is_multiscale, unwrap

    mlp = ebmkit.create("energy", "mlp", data_shape=(2,))
    resnet = ebmkit.create("energy", "resnet_ebm", width=8, data_shape=(3, 16, 16))
    assert not is_multiscale(mlp) and not is_multiscale(Wrapper(mlp))
    assert is_multiscale(resnet) and is_multiscale(Wrapper(torch.compile(resnet, backend="eager")))
    assert unwrap(Wrapper(torch.compile(resnet, backend="eager"))) is resnet
    mlp.num_scales = 1  # a third-party energy may set it in __init__
    assert is_multiscale(Wrapper(mlp))


@pytest.mark.parametrize(("recipe", "override", "where", "says"), [
    ("improved_cd_shapes", "sampler.transitions=[]", "sampler.transitions", "at least one transition"),
    ("improved_cd_shapes", "energy.width=12", "energy.width", "width must be a multiple of 8"),
    ("improved_cd_shapes", "buffer={name = 'persistent'}", "losses[3]", "requires 'reference_set'"),
    ("quickstart", "sampler.transitions=[{name = 'gibbs'}]", "sampler.transitions[0]", "requires 'block_conditionals'"),
    ("gaussian_improved_cd", "sampler={name = 'annealed_langevin', step_size = 0.1}", "losses[1]", "keeps at most 1"),
])
def test_validate_and_run_reject_recipes_that_cannot_build_and_leave_no_folder(run_cli, tmp_path, recipe, override, where, says):
    args = [str(RECIPES / f"{recipe}.toml"), "--set", "data.size=64", "--set", override]
    if recipe == "gaussian_improved_cd":
        args += ["--set", "losses[1].last_steps=2"]
    result = run_cli("validate", *args)
    assert result.exit_code == 2 and f"{where}: " in result.output and says in result.output, result.output
    assert "Traceback" not in result.output
    out = tmp_path / "never"
    result = run_cli("run", *args, "--out", str(out))
    assert result.exit_code == 2 and says in result.output
    assert not out.exists()


def test_a_factory_returning_the_wrong_thing_is_reported_at_its_table(install_plugin, run_cli):
    source = "from ebmkit import hookimpl\n\ndef not_a_sampler(steps: int = 1):\n    return 42\n\n@hookimpl\ndef ebmkit_register_samplers(register):\n    register('broken_sampler', not_a_sampler)\n"
    install_plugin("ebmkit-wrong", "ebmkit_wrong", source)
    result = run_cli("validate", str(RECIPES / "quickstart.toml"), "--set", "sampler={name = 'broken_sampler'}")
    assert result.exit_code == 2
    assert "sampler: sampler 'broken_sampler' (plugin 'ebmkit_wrong' (ebmkit-wrong 0.1)) built a int, which is not a ebmkit.Sampler" in result.output


def test_the_run_state_continues_exactly(tmp_path, registries):
    recipe = load(RECIPES / "quickstart.toml", ["data.size=512", "evaluators=[]", "sampler.steps=3"], registries)
    first = Trainer(setup(recipe, tmp_path / "a", live=False))
    for _ in range(3):
        first.update()
    saved = copy.deepcopy(first.run.state.state_dict())
    expected = [first.update() for _ in range(4)]
    second = Trainer(setup(recipe, tmp_path / "b", live=False))
    second.run.state.load_state_dict(saved)
    again = [second.update() for _ in range(4)]
    drop = lambda rows: [{k: v for k, v in r.items() if k != "train_s"} for r in rows]  # noqa: E731
    assert drop(again) == drop(expected)
    assert second.run.state.step == 7
    for a, b in zip(first.run.state.energy.parameters(), second.run.state.energy.parameters(), strict=True):
        assert torch.equal(a, b)


ENERGY_V1 = """
import torch
from ebmkit import Energy, hookimpl

class Line(Energy):
    '''A tiny energy whose size depends on its default width.'''

    def __init__(self, width: int = {width}, *, data_shape):
        super().__init__()
        self.width = width
        self.layer = torch.nn.Linear(data_shape[0], width)

    def forward(self, x, cond=None):
        return self.layer(x).pow(2).sum(1)

@hookimpl
def ebmkit_register_energies(register):
    register("tp_line", Line)
"""


def test_load_rebuilds_with_the_recorded_defaults_after_the_plugin_changes_them(tmp_path, install_plugin):
    registries = install_plugin("ebmkit-line", "ebmkit_line", ENERGY_V1.replace("{width}", "3"))
    recipe = load(RECIPES / "quickstart.toml", [*TINY, "train.steps=2", "energy={name = 'tp_line'}"], registries)
    train(recipe, tmp_path / "run", live=False, registries=registries)
    assert json.loads((tmp_path / "run" / "run.json").read_text())["components"]["energy"]["params"] == {"width": 3}
    assert "width = 3" in (tmp_path / "run" / "recipe.toml").read_text()
    trained = ebmkit.load(tmp_path / "run", registries=registries)
    newer = install_plugin("ebmkit-line", "ebmkit_line", ENERGY_V1.replace("{width}", "5"), version="0.2")
    assert newer.create("energy", "tp_line", data_shape=(2,)).width == 5  # the default did change
    with pytest.warns(PluginVersionWarning, match="ebmkit-line 0.1; the installed one comes from ebmkit-line 0.2"):
        loaded = ebmkit.load(tmp_path / "run", registries=newer)
    assert loaded.width == 3 and torch.equal(loaded.layer.weight, trained.layer.weight)


def test_ema_is_the_exponential_moving_average():
    from ebmkit._engine.state import EMA

    module = torch.nn.Linear(2, 1)
    with torch.no_grad():
        module.weight.fill_(1.0)
    ema = EMA(module, decay=0.9)
    with torch.no_grad():
        module.weight.fill_(3.0)
    ema.update(module)
    torch.testing.assert_close(ema.module.weight, torch.full((1, 2), 0.9 * 1.0 + 0.1 * 3.0))
    ema.update(module)
    torch.testing.assert_close(ema.module.weight, torch.full((1, 2), 0.9 * 1.2 + 0.1 * 3.0))


class StepsSeen:
    """A plugin object registered for one run: it sees that run's logged steps and its end."""

    def __init__(self, run):
        self.run, self.steps, self.ended = run, [], False

    @hookimpl
    def ebmkit_log_metrics(self, step, metrics):
        if "loss" in metrics:
            self.steps.append(step)

    @hookimpl
    def ebmkit_run_end(self):
        self.ended = True


class RegistersPerRun:
    def __init__(self):
        self.objects = []

    @hookimpl
    def ebmkit_run_start(self, run):
        seen = StepsSeen(run)
        run.register(seen, "steps-seen")
        assert run.plugin("steps-seen") is seen
        self.objects.append(seen)


def test_a_plugin_object_registered_for_a_run_sees_that_run_alone_and_leaves_with_it(tmp_path, ebmkit_register):
    plugin = RegistersPerRun()
    registries = ebmkit_register(plugin, "registers_per_run")
    for name, steps in (("first", 4), ("second", 2)):
        recipe = load(RECIPES / "quickstart.toml", [f"train.steps={steps}", "train.log_every=1", "evaluators=[]"], registries)
        train(recipe, tmp_path / name, live=False, registries=registries)
    first, second = plugin.objects
    assert first.steps == [1, 2, 3, 4] and second.steps == [1, 2]  # each saw its own run only
    assert first.ended and second.ended
    assert not any(isinstance(p, StepsSeen) for p in registries.pm.get_plugins())  # unregistered at the end


def test_a_recipe_runs_with_the_registries_it_was_checked_against(tmp_path, ebmkit_register):
    recipe = load(RECIPES / "quickstart.toml", ["train.steps=1", "evaluators=[]"])
    plugin = RegistersPerRun()
    other = ebmkit_register(plugin, "registers_per_run")  # new registries, with one plugin more
    assert recipe.registries is not None and recipe.registries is not other
    with pytest.raises(ebmkit.EbmkitError, match="checked against other plugins"):
        train(recipe, tmp_path / "refused", live=False, registries=other)
    train(recipe, tmp_path / "run", live=False)  # the registries it was checked with: without the plugin
    assert plugin.objects == []


def test_an_evaluator_sees_the_energy_in_eval_mode_and_leaves_each_module_as_it_was():
    from types import SimpleNamespace

    from ebmkit._engine.builtin.evaluation import run_evaluator

    energy = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.5))
    energy[1].eval()  # a module kept in eval mode by its owner (a loaded model inside a composition)

    class Modes:
        def evaluate(self, ctx):
            return {"training": float(any(m.training for m in ctx.energy.modules()))}

    ctx = SimpleNamespace(energy=energy, device=torch.device("cpu"))
    assert run_evaluator("modes", Modes(), ctx) == {"modes/training": 0.0}
    assert [m.training for m in energy.modules()] == [True, True, False]
