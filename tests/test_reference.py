"""docs/reference.md is the recipe reference the registries generate, and names every component."""

from __future__ import annotations

from pathlib import Path

from ebmkit._host import params
from ebmkit._recipes.reference import recipe_reference
from ebmkit._host.installed import default_registries

REFERENCE = Path(__file__).resolve().parents[1] / "docs" / "reference.md"


def test_the_recipe_reference_in_docs_is_what_the_registries_generate():
    generated = recipe_reference(default_registries())
    assert REFERENCE.read_text() == generated, "docs/reference.md is out of date: run 'ebmkit list --markdown > docs/reference.md'"


def test_every_registered_component_has_a_section_with_its_parameters():
    text = recipe_reference(default_registries())
    registries = default_registries()
    for kind in registries:
        for entry in registries[kind].find("*"):
            section = text.split(f"### `{entry.name}`", 1)
            assert len(section) == 2, f"{kind}: {entry.name} is missing"
            body = section[1].split("\n### ", 1)[0]
            assert entry.summary.split("|")[0].strip()[:20] in body.replace("\\|", "|")
            for name, _, _ in params.describe(entry.params) if entry.params is not None else []:
                assert f"| `{name}` |" in body, f"{kind}: {entry.name} lacks its parameter {name}"


def test_ebmkit_list_markdown_prints_it(run_cli):
    result = run_cli("list", "--markdown")
    assert result.exit_code == 0 and result.output == REFERENCE.read_text()


def test_what_a_plugin_author_returns_and_receives_is_importable_from_ebmkit():
    import ebmkit
    import ebmkit._host.protocols as protocols

    for name in ("StepContext", "StepResult", "SampleResult", "Needs", "TrainBatch", "LossOutput", "EvalContext"):
        assert getattr(ebmkit, name) is getattr(protocols, name) and name in ebmkit.__all__
