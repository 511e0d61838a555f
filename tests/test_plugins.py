"""The plugin host: entry-point loading, attribution, blocking, and broken plugins."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ebmkit.errors import DuplicateComponentError, PluginError, UnknownComponentError
from ebmkit.recipe import load as load_recipe
from ebmkit.runner import train
from tests.conftest import RECIPES, make_distribution

THIRD_PARTY = """
import torch
from ebmkit import Energy, hookimpl


class Quadratic(Energy):
    '''A learnable isotropic quadratic energy.'''

    def __init__(self, scale: float = 1.0, *, data_shape):
        super().__init__()
        self.center = torch.nn.Parameter(torch.zeros(data_shape))
        self.log_scale = torch.nn.Parameter(torch.tensor(float(scale)).log())

    def forward(self, x, cond=None):
        return 0.5 * ((x - self.center) ** 2).flatten(1).sum(1) / self.log_scale.exp() ** 2


@hookimpl
def ebmkit_register_energies(register):
    register("tp_quadratic", Quadratic)
"""


def test_first_party_plugins_come_through_entry_points(registries):
    entry = registries.get("transitions", "langevin")
    assert entry.plugin == "mcmc"
    assert entry.distribution.startswith("ebmkit ")
    assert {info.distribution for info in registries.pm.infos.values()} == {"ebmkit"}


def test_third_party_distribution_is_discovered_and_used_from_a_recipe(tmp_path, monkeypatch, fresh_registries):
    make_distribution(tmp_path, "ebmkit-thirdparty", "ebmkit_thirdparty", THIRD_PARTY)
    monkeypatch.syspath_prepend(str(tmp_path))
    registries = fresh_registries()
    entry = registries.get("energies", "tp_quadratic")
    assert (entry.plugin, entry.distribution) == ("ebmkit_thirdparty", "ebmkit-thirdparty 0.1")
    recipe = load_recipe(
        RECIPES / "quickstart.toml",
        ['energy={name = "tp_quadratic", scale = 2.0}', "train.steps=3", "evaluators=[]", "data.size=512"],
        registries,
    )
    result = train(recipe, tmp_path / "run", live=False)
    assert (tmp_path / "run" / "metrics.jsonl").exists()
    assert "ebmkit_thirdparty" in (tmp_path / "run" / "run.json").read_text()
    assert result.metrics["loss"] == result.metrics["loss"]  # finite, not NaN


def test_third_party_plugin_shows_in_the_cli(tmp_path):
    make_distribution(tmp_path, "ebmkit-thirdparty", "ebmkit_thirdparty", THIRD_PARTY)
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    listing = subprocess.run([sys.executable, "-m", "ebmkit.cli", "list", "energies"], env=env, capture_output=True, text=True)
    assert listing.returncode == 0, listing.stderr
    assert "tp_quadratic" in listing.stdout and "ebmkit_thirdparty" in listing.stdout
    env["EBMKIT_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    listing = subprocess.run([sys.executable, "-m", "ebmkit.cli", "list", "energies"], env=env, capture_output=True, text=True)
    assert "tp_quadratic" not in listing.stdout and "mlp" in listing.stdout


def test_autoload_off_keeps_first_party_but_drops_third_party(tmp_path, monkeypatch, fresh_registries):
    make_distribution(tmp_path, "ebmkit-thirdparty", "ebmkit_thirdparty", THIRD_PARTY)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("EBMKIT_DISABLE_PLUGIN_AUTOLOAD", "1")
    registries = fresh_registries()
    assert "tp_quadratic" not in registries["energies"]
    assert "langevin" in registries["transitions"]


def test_blocked_plugin_is_not_loaded(monkeypatch, fresh_registries):
    monkeypatch.setenv("EBMKIT_DISABLED_PLUGINS", "toy, optim")
    registries = fresh_registries()
    assert "mlp" not in registries["energies"] and "adam" not in registries["optimizers"]
    assert "langevin" in registries["transitions"]
    with pytest.raises(UnknownComponentError):
        registries.get("energies", "mlp")


def test_a_plugin_that_raises_on_import_is_reported_and_the_others_load(tmp_path, monkeypatch, fresh_registries):
    make_distribution(tmp_path, "ebmkit-broken", "ebmkit_broken", "raise RuntimeError('boom at import')\n")
    make_distribution(tmp_path, "ebmkit-thirdparty", "ebmkit_thirdparty", THIRD_PARTY)
    monkeypatch.syspath_prepend(str(tmp_path))
    registries = fresh_registries()
    assert "boom at import" in registries.failures["ebmkit_broken"]
    assert "tp_quadratic" in registries["energies"] and "langevin" in registries["transitions"]


def test_a_plugin_whose_registration_raises_is_reported(tmp_path, monkeypatch, fresh_registries):
    source = "from ebmkit import hookimpl\n\n@hookimpl\ndef ebmkit_register_losses(register):\n    raise ValueError('bad registration')\n"
    make_distribution(tmp_path, "ebmkit-badreg", "ebmkit_badreg", source)
    monkeypatch.syspath_prepend(str(tmp_path))
    registries = fresh_registries()
    assert "bad registration" in registries.failures["ebmkit_badreg"]
    assert "cd" in registries["losses"]


def test_a_misspelled_hook_fails_loudly(tmp_path, monkeypatch, fresh_registries):
    source = "from ebmkit import hookimpl\n\n@hookimpl\ndef ebmkit_register_sampler(register):\n    pass\n"
    make_distribution(tmp_path, "ebmkit-typo", "ebmkit_typo", source)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginError, match="ebmkit_register_sampler"):
        fresh_registries()


def test_a_duplicate_name_is_an_error_naming_both_plugins(tmp_path, monkeypatch, fresh_registries):
    source = (
        "from ebmkit import hookimpl\n\ndef impostor(step_size: float = 1.0):\n    return None\n\n"
        "@hookimpl\ndef ebmkit_register_transitions(register):\n    register('langevin', impostor)\n"
    )
    make_distribution(tmp_path, "ebmkit-dupe", "ebmkit_dupe", source)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(DuplicateComponentError) as info:
        fresh_registries()
    assert "'ebmkit_dupe'" in str(info.value) and "'mcmc'" in str(info.value)


def test_a_plugin_can_add_a_command_and_broken_plugins_are_warned_about(tmp_path):
    source = (
        "import click\nfrom ebmkit import hookimpl\n\n@hookimpl\ndef ebmkit_register_commands(cli):\n"
        "    @cli.command()\n    def hello():\n        click.echo('hello from a plugin')\n"
    )
    make_distribution(tmp_path, "ebmkit-cmd", "ebmkit_cmd", source)
    make_distribution(tmp_path, "ebmkit-broken", "ebmkit_broken", "raise RuntimeError('boom at import')\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "ebmkit.cli", "hello"], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "hello from a plugin"
    assert "plugin 'ebmkit_broken' failed to load: RuntimeError: boom at import" in proc.stderr
