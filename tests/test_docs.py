"""The docs describe the code: every hook is documented with its signature."""

from __future__ import annotations

import inspect
import re

from ebmkit._host import hookspecs
from tests.conftest import ROOT


def hook_names() -> list[str]:
    return [name for name, f in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("ebmkit_")]


def test_every_hook_is_documented_with_its_signature():
    page = (ROOT / "docs" / "plugin_hooks.md").read_text()
    names = hook_names()
    from ebmkit._host.kinds import KINDS

    assert {kind.hook for kind in KINDS} <= set(names)  # one registration hook per kind, from the table
    for name in names:
        params = ", ".join(inspect.signature(getattr(hookspecs, name)).parameters)
        assert f"### {name}({params})" in page, f"{name} is not documented in docs/plugin_hooks.md"


def test_every_hookspec_says_what_it_does_and_documents_each_parameter():
    for name in hook_names():
        spec = getattr(hookspecs, name)
        doc, signature = inspect.getdoc(spec) or "", inspect.signature(spec)
        summary = doc.split("\n\n", 1)[0]
        assert summary and not summary.startswith(":"), f"{name} has no summary before its fields"
        assert re.findall(r"^:param (\w+):", doc, re.MULTILINE) == list(signature.parameters), name
        returns = signature.return_annotation != "None"
        assert (":return:" in doc) == returns, f"{name} documents :return: if and only if it returns something"


def test_readme_commands_are_the_ones_ci_runs():
    readme = (ROOT / "README.md").read_text()
    assert "<!-- test-command -->" in readme and "<!-- quickstart-command -->" in readme
    assert "README.md" in (ROOT / ".ci" / "run").read_text()


def test_the_readme_plugin_example_registers_a_transition_a_recipe_trains_with(tmp_path, install_plugin):
    from ebmkit._engine.loop import train
    from ebmkit._recipes.recipe import load
    from tests.conftest import RECIPES

    readme = (ROOT / "README.md").read_text()
    source = readme.split("<!-- readme-plugin -->\n```python\n", 1)[1].split("```", 1)[0]
    registries = install_plugin("my-ebm-plugin", "my_package_plugin", source)
    assert registries["transitions"].get("gradient_step").summary == "A noiseless gradient step, x <- x - step_size * grad E(x)."
    recipe = load(RECIPES / "improved_cd_8gaussians.toml", [
        "train.steps=3", "data.size=512", "evaluators=[]", "sampler.steps=2",
        "sampler.transitions=[{name = 'gradient_step', step_size = 0.05}]",
    ], registries)
    result = train(recipe, tmp_path, live=False, registries=registries)
    assert result.metrics["updates"] == 3
