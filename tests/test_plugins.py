"""The plugin host: entry-point loading, attribution, blocking, and broken plugins left out and reported."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

import ebmkit
from ebmkit._engine.loop import train
from ebmkit._recipes.recipe import load as load_recipe
from tests.conftest import RECIPES, make_distribution, plugin_env

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

#: A misspelled hook beside a good one: the whole plugin is left out.
TYPO = """
from ebmkit import hookimpl

def energy_free_loss(): ...

@hookimpl
def ebmkit_register_sampler(register):
    pass

@hookimpl
def ebmkit_register_losses(register):
    register("typo_loss", energy_free_loss)
"""

#: A name ebmkit's own mcmc plugin has, beside a new one: the whole plugin is left out.
DUPLICATE = """
from ebmkit import hookimpl

def impostor(step_size: float = 1.0):
    return None

@hookimpl
def ebmkit_register_transitions(register):
    register("dupe_only", impostor)
    register("langevin", impostor)
"""


def test_first_party_plugins_come_through_entry_points(registries):
    entry = registries.get("transitions", "langevin")
    assert (entry.plugin, entry.distribution) == ("mcmc", "ebmkit")
    assert {info.distribution for info in registries.pm.infos.values()} == {"ebmkit"}
    assert not registries.failures


def test_third_party_distribution_is_discovered_and_used_from_a_recipe(tmp_path, install_plugin):
    registries = install_plugin("ebmkit-thirdparty", "ebmkit_thirdparty", THIRD_PARTY)
    entry = registries.get("energies", "tp_quadratic")
    assert (entry.plugin, entry.distribution, entry.version) == ("ebmkit_thirdparty", "ebmkit-thirdparty", "0.1")
    recipe = load_recipe(
        RECIPES / "quickstart.toml",
        ['energy={name = "tp_quadratic", scale = 2.0}', "train.steps=3", "evaluators=[]", "data.size=512"],
        registries,
    )
    result = train(recipe, tmp_path / "run", live=False, registries=registries)
    record = json.loads((tmp_path / "run" / "run.json").read_text())["components"]["energy"]
    assert (record["plugin"], record["distribution"], record["version"]) == ("ebmkit_thirdparty", "ebmkit-thirdparty", "0.1")
    assert record["params"] == {"scale": 2.0}
    assert math.isfinite(result.metrics["loss"])


def test_third_party_plugin_shows_in_the_cli(tmp_path):
    make_distribution(tmp_path, "ebmkit-thirdparty", "ebmkit_thirdparty", THIRD_PARTY)
    env = plugin_env(tmp_path)
    listing = subprocess.run([sys.executable, "-m", "ebmkit.cli", "list", "energies"], env=env, capture_output=True, text=True)
    assert listing.returncode == 0, listing.stderr
    assert "tp_quadratic" in listing.stdout and "ebmkit_thirdparty" in listing.stdout
    # (EBMKIT_DISABLE_PLUGIN_AUTOLOAD, read where every process reads it: test_autoload_off_keeps_first_party_but_drops_third_party)


def test_autoload_off_keeps_first_party_but_drops_third_party(install_plugin, monkeypatch, fresh_registries):
    install_plugin("ebmkit-thirdparty", "ebmkit_thirdparty", THIRD_PARTY)
    monkeypatch.setenv("EBMKIT_DISABLE_PLUGIN_AUTOLOAD", "1")
    registries = fresh_registries()
    assert "tp_quadratic" not in registries["energies"]
    assert "langevin" in registries["transitions"]


def test_blocked_plugin_is_not_loaded_and_unknown_names_say_so(monkeypatch, fresh_registries):
    monkeypatch.setenv("EBMKIT_DISABLED_PLUGINS", "toy, optim")
    registries = fresh_registries()
    assert "mlp" not in registries["energies"] and "adam" not in registries["optimizers"]
    assert "langevin" in registries["transitions"]
    assert "unknown energy 'mlp'" in _error(lambda: registries.get("energies", "mlp"))


def _error(call) -> str:
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - the message is what is tested
        return str(exc)
    raise AssertionError("no error")


def test_a_plugin_that_raises_on_import_is_reported_with_its_traceback(install_plugin):
    install_plugin("ebmkit-thirdparty", "ebmkit_thirdparty", THIRD_PARTY)
    registries = install_plugin("ebmkit-broken", "ebmkit_broken", "def f():\n    raise RuntimeError('boom at import')\nf()\n")
    assert "boom at import" in registries.failures["ebmkit_broken"]
    assert "line 2, in f" in registries.pm.infos["ebmkit_broken"].traceback
    assert "tp_quadratic" in registries["energies"] and "langevin" in registries["transitions"]


def test_registration_is_all_or_nothing(install_plugin):
    source = (
        "from ebmkit import hookimpl\n\ndef half(): ...\n\n@hookimpl\ndef ebmkit_register_losses(register):\n"
        "    register('half_registered', half)\n    raise ValueError('bad registration')\n"
    )
    registries = install_plugin("ebmkit-badreg", "ebmkit_badreg", source)
    assert "bad registration" in registries.failures["ebmkit_badreg"]
    assert "half_registered" not in registries["losses"] and "cd" in registries["losses"]


def test_register_is_bound_to_its_kind(install_plugin):
    source = (
        "from ebmkit import hookimpl\n\ndef sneaky(): ...\n\n@hookimpl\ndef ebmkit_register_losses(register):\n"
        "    register('sneaky', sneaky, _kind='samplers')\n"
    )
    registries = install_plugin("ebmkit-sneaky", "ebmkit_sneaky", source)
    assert "_kind" in registries.failures["ebmkit_sneaky"]
    assert "sneaky" not in registries["samplers"] and "sneaky" not in registries["losses"]


def test_a_misspelled_hook_is_reported_with_a_suggestion_and_left_out(install_plugin):
    registries = install_plugin("ebmkit-typo", "ebmkit_typo", TYPO)
    message = registries.failures["ebmkit_typo"]
    assert "'ebmkit_register_sampler'" in message and "did you mean 'ebmkit_register_samplers'?" in message
    assert "typo_loss" not in registries["losses"]  # its correct hook is left out with it
    assert "chain" in registries["samplers"]


def test_a_duplicate_name_is_reported_naming_both_plugins_and_left_out(install_plugin):
    registries = install_plugin("ebmkit-dupe", "ebmkit_dupe", DUPLICATE)
    message = registries.failures["ebmkit_dupe"]
    assert "transition 'langevin' conflicts with transition 'langevin' from plugin 'mcmc' (ebmkit " in message
    assert registries.get("transitions", "langevin").plugin == "mcmc"
    assert "dupe_only" not in registries["transitions"]
    assert "note: plugin(s) 'ebmkit_dupe' failed to load" in _error(lambda: registries.get("transitions", "dupe_only"))


def test_broken_plugins_are_named_by_ebmkit_plugins_and_runs_still_work(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    make_distribution(site, "ebmkit-typo", "ebmkit_typo", TYPO)
    make_distribution(site, "ebmkit-dupe", "ebmkit_dupe", DUPLICATE)
    env = plugin_env(site)
    listing = subprocess.run([sys.executable, "-m", "ebmkit.cli", "plugins", "--json"], env=env, capture_output=True, text=True)
    assert listing.returncode == 0, listing.stderr
    rows = {row["name"]: row for row in json.loads(listing.stdout)}
    assert "did you mean 'ebmkit_register_samplers'?" in rows["ebmkit_typo"]["error"]
    assert "conflicts with transition 'langevin' from plugin 'mcmc'" in rows["ebmkit_dupe"]["error"]
    assert rows["mcmc"]["error"] is None
    out = tmp_path / "run"
    run = subprocess.run(
        [sys.executable, "-m", "ebmkit.cli", "run", str(RECIPES / "quickstart.toml"), "--out", str(out),
         "--set", "train.steps=3", "--set", "data.size=512", "--set", "evaluators=[]"],
        env=env, capture_output=True, text=True,
    )
    assert run.returncode == 0, run.stderr
    assert "plugin 'ebmkit_dupe' failed to load" in run.stderr and "plugin 'ebmkit_typo' failed to load" in run.stderr
    assert (out / "checkpoints" / "step_0000003" / "energy.safetensors").exists()


def test_a_plugin_can_add_a_command_and_broken_plugins_are_warned_about(tmp_path):
    source = (
        "import click\nfrom ebmkit import hookimpl\n\n@hookimpl\ndef ebmkit_register_commands(cli):\n"
        "    @cli.command()\n    def hello():\n        click.echo('hello from a plugin')\n"
    )
    make_distribution(tmp_path, "ebmkit-cmd", "ebmkit_cmd", source)
    make_distribution(tmp_path, "ebmkit-broken", "ebmkit_broken", "raise RuntimeError('boom at import')\n")
    proc = subprocess.run([sys.executable, "-m", "ebmkit.cli", "hello"], env=plugin_env(tmp_path), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "hello from a plugin"
    assert "plugin 'ebmkit_broken' failed to load: RuntimeError: boom at import" in proc.stderr


UNFINISHED = '''
import ebmkit


class Lazy:
    def step(self, energy, x, ctx): ...


class Scalar:
    def __call__(self, batch):
        return float((batch.e_pos.mean() - batch.e_neg.mean()).detach())


@ebmkit.hookimpl
def ebmkit_register_transitions(register):
    register("lazy", Lazy)


@ebmkit.hookimpl
def ebmkit_register_losses(register):
    register("scalar", Scalar)
'''

UNFINISHED_RECIPE = '''
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
name = "{transition}"
{transition_params}
[[losses]]
name = "{loss}"
[optim]
name = "adam"
[train]
steps = 2
batch_size = 8
eval_at_start = false
'''


@pytest.mark.parametrize(
    ("transition", "loss", "says"),
    [
        ("lazy", "cd", "transition 'lazy' (plugin 'unfinished' (ebmkit-unfinished 0.1), at sampler.transitions[0]): "
                       "step() returned None; it must return an ebmkit.StepResult"),
        ("langevin", "scalar", "loss 'scalar' (plugin 'unfinished' (ebmkit-unfinished 0.1), at losses[0]): "
                               "loss(batch) returned a float; it must return an ebmkit.LossOutput"),
    ],
)
def test_a_component_returning_the_wrong_thing_is_named_without_a_traceback(transition, loss, says, tmp_path, install_plugin, run_cli):
    install_plugin("ebmkit-unfinished", "ebmkit_unfinished", UNFINISHED, entry_name="unfinished")
    recipe = tmp_path / "r.toml"
    params = "step_size = 0.01" if transition == "langevin" else ""
    recipe.write_text(UNFINISHED_RECIPE.format(transition=transition, transition_params=params, loss=loss))
    result = run_cli("run", str(recipe), "--out", str(tmp_path / "run"))
    assert result.exit_code == 2
    assert says in " ".join(result.output.split()) and "Traceback" not in result.output


def test_hooks_lists_every_hook_and_shows_one(run_cli):
    listed = run_cli("hooks")
    assert listed.exit_code == 0
    for hook in ("ebmkit_register_transitions", "ebmkit_wrap_energy", "ebmkit_checkpoint_load"):
        assert hook in listed.output
    one = run_cli("hooks", "register_losses")
    assert one.exit_code == 0 and "ebmkit.Loss" in one.output
    wrong = run_cli("hooks", "register_lossez")
    assert wrong.exit_code == 2 and "did you mean 'ebmkit_register_losses'" in wrong.output


class DeclaresRunSettings:
    """A plugin that reads two [run] settings of its own."""

    def __init__(self, name="sound"):
        self.name = name

    @ebmkit.hookimpl
    def ebmkit_run_settings(self):
        return {self.name: ebmkit.Key(bool, False, doc="beep when the run ends"),
                f"{self.name}_volume": ebmkit.Key(int, 3, minimum=0, doc="how loud")}


def test_a_plugin_declares_its_own_run_settings_and_recipes_check_them(ebmkit_register):
    from ebmkit._recipes.reference import recipe_reference

    registries = ebmkit_register(DeclaresRunSettings(), "declares_run_settings")
    recipe = load_recipe(RECIPES / "quickstart.toml", ["run.sound=true"], registries)
    assert recipe.run_setting("sound") is True and recipe.run_setting("sound_volume") == 3  # the default filled in
    assert recipe.resolved()["run"]["sound_volume"] == 3 and not hasattr(recipe.run, "sound")
    with pytest.raises(ebmkit.RecipeError, match=r"\[run\]\.sound_volume: must be at least 0"):
        load_recipe(RECIPES / "quickstart.toml", ["run.sound_volume=-1"], registries)
    with pytest.raises(ebmkit.RecipeError, match=r"\[run\]\.sound"):
        load_recipe(RECIPES / "quickstart.toml", ["run.sound='loud'"], registries)
    with pytest.raises(ebmkit.RecipeError, match="soundz"):  # an undeclared key is still unknown
        load_recipe(RECIPES / "quickstart.toml", ["run.soundz=true"], registries)
    with pytest.raises(ebmkit.EbmkitError, match="no setting 'volume'"):
        recipe.run_setting("volume")
    assert "`sound_volume` | int | `3` (plugin `declares_run_settings`: how loud)" in recipe_reference(registries)


def test_a_run_setting_two_plugins_declare_leaves_the_second_out(ebmkit_register):
    ebmkit_register(DeclaresRunSettings(), "first_sound")
    registries = ebmkit_register(DeclaresRunSettings(), "second_sound")
    declared_by = {plugin for _, plugin in registries.run_settings.values()}
    assert len(declared_by & {"first_sound", "second_sound"}) == 1
    failed = [name for name in ("first_sound", "second_sound") if name in registries.failures]
    assert len(failed) == 1 and "[run].sound is declared by plugin" in registries.failures[failed[0]]


def test_a_plugins_run_setting_may_change_when_a_run_resumes(tmp_path, ebmkit_register):
    from ebmkit._engine.run import resume_recipe

    registries = ebmkit_register(DeclaresRunSettings(), "declares_run_settings")
    train(load_recipe(RECIPES / "quickstart.toml", ["train.steps=2", "evaluators=[]"], registries), tmp_path, live=False, registries=registries)
    assert resume_recipe(tmp_path, ["run.sound_volume=9"], registries).run_setting("sound_volume") == 9
    with pytest.raises(ebmkit.EbmkitError, match="cannot change run.seed"):
        resume_recipe(tmp_path, ["run.seed=1"], registries)
