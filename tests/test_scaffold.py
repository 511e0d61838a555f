"""ebmkit new-plugin: the scaffolded package installs, passes its own tests, and trains."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pytest

from ebmkit.plugins.scaffold.command import files_for
from ebmkit.plugins.scaffold.templates import COMPONENTS

from .conftest import plugin_env, read_metrics


def test_a_scaffolded_plugin_installs_passes_its_tests_and_trains_from_a_recipe(tmp_path, run_cli):
    result = run_cli("new-plugin", "tempered", "--kind", "transition", "--dir", str(tmp_path))
    assert result.exit_code == 0, result.output
    package, site = tmp_path / "ebmkit-tempered", tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--no-build-isolation",
         "--target", str(site), str(package)], capture_output=True, text=True, timeout=300,
    )
    assert install.returncode == 0, install.stderr
    assert (site / "ebmkit_tempered" / "tempered.py").exists()
    env = plugin_env(site)

    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(package / "tests")],
                           cwd=package, env=env, capture_output=True, text=True, timeout=300)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "2 passed" in tests.stdout

    run = subprocess.run(
        [sys.executable, "-m", "ebmkit", "run", str(package / "recipes" / "tempered.toml"), "--set", "train.steps=30",
         "--set", "train.log_every=10", "--set", "evaluators.0.every=0", "--set", "evaluators.0.bins=20", "--out", str(tmp_path / "run")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    recorded = json.loads((tmp_path / "run" / "run.json").read_text())
    assert '"tempered"' in json.dumps(recorded) and "ebmkit-tempered" in json.dumps(recorded)
    assert any("density2d/grid_kl" in row for row in read_metrics(tmp_path / "run"))


@pytest.mark.parametrize("kind", sorted(COMPONENTS))
def test_every_kind_of_example_keeps_its_contract_and_trains(kind, tmp_path, run_cli, monkeypatch, ebmkit_register, ebmkit_contract):
    name = f"example_{kind}"
    assert run_cli("new-plugin", f"example-{kind}", "--kind", kind, "--dir", str(tmp_path)).exit_code == 0  # a hyphen: an underscore in the module
    package = tmp_path / f"ebmkit-example-{kind}"
    monkeypatch.syspath_prepend(str(package / "src"))
    module = importlib.import_module(f"ebmkit_{name}")
    ebmkit_register(module)
    ebmkit_contract(kind, name, json.loads(COMPONENTS[kind].params))
    result = run_cli("run", str(package / "recipes" / f"{name}.toml"), "--set", "train.steps=3", "--set", "train.log_every=1",
                     "--set", "train.eval_at_start=false", "--out", str(tmp_path / "run"))
    assert result.exit_code == 0, result.output
    assert len([row for row in read_metrics(tmp_path / "run") if "loss" in row]) == 3


@pytest.mark.parametrize("kind", sorted(COMPONENTS))
def test_the_generated_contract_test_fails_when_a_check_did_not_run(kind, tmp_path, monkeypatch, ebmkit_register, ebmkit_contract):
    name = f"example_{kind}"
    files = files_for(name, kind)
    for relative, text in files.items():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    ebmkit_register(importlib.import_module(f"ebmkit_{name}"))
    ran = ebmkit_contract(kind, name, json.loads(COMPONENTS[kind].params))
    generated: dict = {"__file__": str(tmp_path / "tests" / f"test_{name}.py")}
    exec(compile(files[f"tests/test_{name}.py"], generated["__file__"], "exec"), generated)
    test = generated[f"test_{name}_keeps_the_{kind}_contract"]
    test(lambda *args: list(ran))  # every check the contract runs for this kind ran
    for missing in ran:
        with pytest.raises(AssertionError):
            test(lambda *args, missing=missing: [check for check in ran if check != missing])


def test_new_plugin_refuses_a_bad_name_or_an_existing_folder(tmp_path, run_cli):
    bad = run_cli("new-plugin", "My Plugin", "--dir", str(tmp_path))
    assert bad.exit_code == 2 and "lowercase letters" in bad.output and not any(tmp_path.iterdir())
    assert run_cli("new-plugin", "taken", "--dir", str(tmp_path)).exit_code == 0
    before = (tmp_path / "ebmkit-taken" / "src" / "ebmkit_taken" / "taken.py").read_text()
    again = run_cli("new-plugin", "taken", "--kind", "loss", "--dir", str(tmp_path))
    assert again.exit_code == 2 and "already exists" in again.output
    assert (tmp_path / "ebmkit-taken" / "src" / "ebmkit_taken" / "taken.py").read_text() == before


def test_new_plugin_refuses_the_name_of_an_installed_plugin(tmp_path, run_cli):
    taken = run_cli("new-plugin", "score", "--kind", "loss", "--dir", str(tmp_path))  # ebmkit's own score-matching plugin
    assert taken.exit_code == 2 and "a plugin named 'score' is installed already (ebmkit.plugins.score, from ebmkit)" in taken.output
    assert "Traceback" not in taken.output and not any(tmp_path.iterdir())


def test_new_plugin_refuses_a_name_whose_module_is_taken(tmp_path, run_cli, monkeypatch):
    (tmp_path / "site" / "ebmkit_elsewhere").mkdir(parents=True)
    (tmp_path / "site" / "ebmkit_elsewhere" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    taken = run_cli("new-plugin", "elsewhere", "--dir", str(tmp_path / "out"))
    assert taken.exit_code == 2 and "the module ebmkit_elsewhere exists already" in taken.output
    assert not (tmp_path / "out").exists()


def test_new_plugin_refuses_a_component_name_its_kind_has(tmp_path, run_cli):
    taken = run_cli("new-plugin", "langevin", "--kind", "transition", "--dir", str(tmp_path))
    assert taken.exit_code == 2 and "the transitions registry has a component named 'langevin' already" in taken.output
    assert not any(tmp_path.iterdir())
    assert run_cli("new-plugin", "langevin", "--kind", "loss", "--dir", str(tmp_path)).exit_code == 0  # another kind's name is free


def test_no_first_party_plugin_takes_a_third_party_module_name():
    """ebmkit's own plugins live under ebmkit.plugins, so every ebmkit_<name> is left to third parties."""
    import importlib.metadata

    ours = [point for point in importlib.metadata.entry_points(group="ebmkit") if point.dist and point.dist.metadata["Name"] == "ebmkit"]
    assert len(ours) >= 13
    assert all(point.value.startswith("ebmkit.plugins.") for point in ours), [point.value for point in ours]
    owned = importlib.metadata.packages_distributions()
    assert not [module for module, dists in owned.items() if module.startswith("ebmkit_") and "ebmkit" in dists]
