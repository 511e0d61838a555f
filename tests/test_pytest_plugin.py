"""The fixtures ebmkit ships for plugin authors (the pytest11 entry point), run through pytester
as a plugin author's test suite would run them."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

PLUGIN = '''
import torch
import ebmkit
from ebmkit import StepResult, energy_and_grad


class Drift:
    """A gradient step; ``broken`` forgets ctx.create_graph."""

    def __init__(self, step_size=0.05, broken=False):
        self.step_size, self.broken = step_size, broken

    def step(self, energy, x, ctx):
        _, grad = energy_and_grad(energy, x, ctx.cond, create_graph=ctx.create_graph and not self.broken)
        return StepResult(x - self.step_size * grad)


class Plugin:
    @ebmkit.hookimpl
    def ebmkit_register_transitions(self, register):
        register("drift", Drift, summary="a gradient step")
'''


def test_the_fixtures_are_there_for_any_test_suite(pytester):
    pytester.makepyfile(PLUGIN + '''
import pytest
from ebmkit._testkit.contract import ContractViolation


def test_registries_of_only_the_named_plugins(ebmkit_registries):
    registries = ebmkit_registries("toy", extra=(Plugin(),))
    assert "mlp" in registries["energies"] and "resnet_ebm" not in registries["energies"]
    assert set(registries["transitions"]) == {"drift"}
    with pytest.raises(ebmkit.EbmkitError, match="did you mean 'mcmc'"):
        ebmkit_registries("mcm")


def test_register_for_one_test(ebmkit_register):
    registries = ebmkit_register(Plugin(), name="drift_plugin")
    assert registries.get("transitions", "drift").plugin == "drift_plugin"
    assert isinstance(ebmkit.create("transition", "drift", step_size=0.1), Drift)


def test_registered_object_is_gone_after_its_test():
    assert "drift" not in ebmkit.registries()["transitions"]


def test_contract_of_a_registered_component(ebmkit_register, ebmkit_contract):
    ebmkit_register(Plugin())
    assert "detaching" in ebmkit_contract("transition", "drift", {"step_size": 0.1})
    with pytest.raises(ContractViolation, match="create_graph=True has no autograd graph"):
        ebmkit_contract("transition", "drift", {"broken": True})
    with pytest.raises(ContractViolation):
        ebmkit_contract("transition", lambda: Drift(broken=True))


def test_cli_in_a_temporary_folder(ebmkit_register, ebmkit_cli):
    ebmkit_register(Plugin())
    listed = ebmkit_cli("list", "transitions")
    assert listed.exit_code == 0 and "drift" in listed.output
    (ebmkit_cli.folder / "r.toml").write_text("""
[data]
name = "8gaussians"
size = 64
[energy]
name = "mlp"
hidden = 8
[sampler]
name = "chain"
steps = 2
[[sampler.transitions]]
name = "drift"
[[losses]]
name = "cd"
[optim]
name = "adam"
[train]
steps = 3
batch_size = 8
eval_at_start = false
""")
    ran = ebmkit_cli("run", "r.toml", "--out", "run")
    assert ran.exit_code == 0, ran.output
    assert (ebmkit_cli.folder / "run" / "metrics.jsonl").exists()
    refused = ebmkit_cli("run", "r.toml", "--set", "train.steps=-1")
    assert refused.exit_code == 2 and "steps" in refused.output
''')
    result = pytester.runpytest_inprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=5)
