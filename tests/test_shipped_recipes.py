"""The recipes that ship in the package: listed, copied, and run or validated by name."""

from __future__ import annotations

import pytest

from ebmkit._recipes import shipped
from tests.conftest import RECIPES


def test_the_catalog_is_the_repositorys_recipes_folder():
    assert shipped.CATALOG.resolve() == RECIPES.resolve()  # one source: the package links to it
    assert shipped.names() == sorted(path.stem for path in RECIPES.glob("*.toml"))


def test_ebmkit_recipes_lists_every_recipe_with_what_it_trains(run_cli, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    result = run_cli("recipes")
    assert result.exit_code == 0
    rows = {line.split()[0]: line for line in result.output.splitlines()[1:] if line.strip()}
    for name in shipped.names():
        assert name in rows, name
        described = shipped.describe(name)
        assert len(described) > 20 and not described.startswith("ebmkit ")  # the opening comment, not the command line
    assert "Quickstart: an MLP energy learns the 8-Gaussians density" in rows["quickstart"]


def test_copy_writes_the_recipe_and_never_overwrites(run_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run_cli("recipes", "copy", "quickstart").exit_code == 0
    assert (tmp_path / "quickstart.toml").read_bytes() == (RECIPES / "quickstart.toml").read_bytes()
    (tmp_path / "mine").mkdir()
    assert run_cli("recipes", "copy", "rbm_digits_cd1", "mine").exit_code == 0
    assert (tmp_path / "mine" / "rbm_digits_cd1.toml").read_bytes() == (RECIPES / "rbm_digits_cd1.toml").read_bytes()

    (tmp_path / "quickstart.toml").write_text("# my edits\n")
    again = run_cli("recipes", "copy", "quickstart")
    assert again.exit_code == 2 and "exists already" in again.output and "Traceback" not in again.output
    assert (tmp_path / "quickstart.toml").read_text() == "# my edits\n"
    unknown = run_cli("recipes", "copy", "quickstrt")
    assert unknown.exit_code == 2 and "did you mean 'quickstart'" in unknown.output


def test_validate_and_run_find_a_shipped_recipe_by_name_and_a_path_wins(run_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # away from the repository's recipes/
    result = run_cli("validate", "quickstart")
    assert result.exit_code == 0 and "quickstart: OK" in result.output
    (tmp_path / "quickstart").write_text("[run]\nseed = 0\n")  # a file of that name is what the user means
    local = run_cli("validate", "quickstart")
    assert local.exit_code == 2 and "quickstart" in local.output and "OK" not in local.output
    unknown = run_cli("run", "quickstrt", "--out", str(tmp_path / "run"))
    assert unknown.exit_code == 2 and "no shipped recipe" in unknown.output and "did you mean 'quickstart'" in unknown.output
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("given", ["recipes/nothere.toml", "nothere.toml"])
def test_a_missing_path_is_reported_as_a_path(run_cli, tmp_path, monkeypatch, given):
    monkeypatch.chdir(tmp_path)
    result = run_cli("validate", given)
    assert result.exit_code == 2 and "not found" in result.output and "shipped" not in result.output


def test_validate_checks_a_compose_file_as_one(run_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run_cli("validate", "compose_celebahq_smile_male")
    assert result.exit_code == 0, result.output
    assert "OK (a compose file: smile + male, 2 models)" in result.output
    assert "model folders not found here" in result.output  # a note, not an error: they are trained elsewhere
    typo = run_cli("validate", str(RECIPES / "compose_celebahq_smile_male.toml"), "--set", "compose.expresion='a'")
    assert typo.exit_code == 2 and "compose.expresion" in typo.output and "did you mean 'expression'" in typo.output
    assert "[[losses]]" not in typo.output  # not read as a training recipe
