"""Recipes: validation gathers every problem, with TOML paths and did-you-mean; overrides."""

from __future__ import annotations

import pytest

from ebmkit._host.errors import RecipeError
from ebmkit._recipes.recipe import load, parse_override
from tests.conftest import COMPOSE_FILES, RECIPES, TRAINING_RECIPES

SHIPPED = TRAINING_RECIPES


def write(tmp_path, text: str):
    path = tmp_path / "recipe.toml"
    path.write_text(text)
    return path


def quickstart_with(tmp_path, old: str, new: str):
    text = (RECIPES / "quickstart.toml").read_text()
    assert old in text
    return write(tmp_path, text.replace(old, new, 1))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_recipe_validates_and_starts_with_its_command(path, registries):
    recipe = load(path, registries=registries)
    first = path.read_text().splitlines()[0]
    # a recipe written for several data-parallel ranks says so in its command
    nproc = f"--nproc {recipe.run.world_size} " if recipe.run.world_size else ""
    assert first == f"# ebmkit run {nproc}recipes/{path.name}"


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_every_shipped_compose_file_checks_and_starts_with_its_command(path, registries):
    from ebmkit._model import composition
    from ebmkit._host.kinds import kind_named

    plan = composition.plan(path)
    if "sampler" in plan.data:
        assert registries.check_table(kind_named("samplers"), plan.data["sampler"], "sampler")[1] == []
    assert path.read_text().splitlines()[0] == f"# ebmkit compose --recipe recipes/{path.name}"


def test_misspelled_component_names_its_table_suggests_and_lists(tmp_path, registries):
    path = quickstart_with(tmp_path, 'name = "langevin"', 'name = "langvin"')
    with pytest.raises(RecipeError) as info:
        load(path, registries=registries)
    (problem,) = info.value.problems
    assert problem.where == "sampler.transitions[0].name"
    assert "did you mean 'langevin'?" in problem.message
    assert f"available transitions: {', '.join(registries['transitions'].names())}\n" in problem.message
    assert "ebmkit list transitions" in problem.message


def test_three_mistakes_are_reported_together(tmp_path, registries):
    text = (RECIPES / "quickstart.toml").read_text()
    text = text.replace('name = "langevin"', 'name = "langvin"').replace("hidden = 128", "hiden = 128")
    text = text.replace("steps = 1500", 'steps = "many"')
    with pytest.raises(RecipeError) as info:
        load(write(tmp_path, text), registries=registries)
    wheres = [p.where for p in info.value.problems]
    assert wheres == ["train.steps", "energy.hiden", "sampler.transitions[0].name"]
    assert "found 3 errors" in str(info.value)
    assert "did you mean 'hidden'?" in str(info.value)
    assert "expected int, got 'many'" in str(info.value)


def test_validators_of_the_component_spec_run(tmp_path, registries):
    path = quickstart_with(tmp_path, "reinit_prob = 0.2", "reinit_prob = 1.5")
    with pytest.raises(RecipeError, match="buffer.reinit_prob: invalid value for buffer 'replay'"):
        load(path, registries=registries)


def test_unknown_table_and_missing_tables(tmp_path, registries):
    with pytest.raises(RecipeError) as info:
        load(write(tmp_path, "[trian]\nsteps = 3\n"), registries=registries)
    text = str(info.value)
    assert "unknown table [trian] - did you mean [train]?" in text
    for missing in ("[train]", "[data]", "[energy]", "[sampler]", "[[losses]]", "[optim]"):
        assert missing in text


def test_invalid_toml_is_a_recipe_error(tmp_path, registries):
    with pytest.raises(RecipeError, match="not valid TOML"):
        load(write(tmp_path, "[train\n"), registries=registries)


def test_overrides_change_values_and_are_validated(registries):
    recipe = load(RECIPES / "quickstart.toml", ["sampler.transitions.0.step_size=0.5", "losses[1].weight=2", "train.steps=7"], registries)
    assert recipe.one("sampler").values["transitions"][0].values["step_size"] == 0.5
    assert recipe.many("losses")[1].keys["weight"] == 2.0
    assert recipe.train.steps == 7
    with pytest.raises(RecipeError) as info:
        load(RECIPES / "quickstart.toml", ["sampler.transitions.3.step_size=0.5", "energy.widht=3"], registries)
    assert [p.where for p in info.value.problems] == ["--set sampler.transitions.3.step_size=0.5", "energy.widht"]


def test_override_values_are_read_as_toml():
    assert parse_override("a.b=[1, 2]") == (["a", "b"], [1, 2])
    assert parse_override("a[0].c=true") == (["a", 0, "c"], True)
    assert parse_override("data.name=moons") == (["data", "name"], "moons")


def test_the_resolved_recipe_round_trips(tmp_path, registries):
    import tomli_w

    recipe = load(RECIPES / "quickstart.toml", ["train.steps=9"], registries)
    resolved = recipe.resolved()
    # every table of the recipe, the override, and the defaults it never wrote
    assert set(resolved) == {"run", "train", "data", "energy", "sampler", "buffer", "losses", "optim", "evaluators"}
    assert resolved["train"]["steps"] == 9 and resolved["train"]["on_divergence"]["max_retries"] == 3
    assert resolved["sampler"]["transitions"][0] == {"name": "langevin", "every": 1, "step_size": 0.03, "temperature": 1.0,
                                                     "noise_first": False, "anneal_noise": False}
    assert [loss["weight"] for loss in resolved["losses"]] == [1.0, 0.1] and resolved["buffer"]["policy"] == "fifo"
    again = load(write(tmp_path, tomli_w.dumps(resolved)), registries=registries)
    assert again.resolved() == resolved
    assert [spec.record() for spec in again.specs()] == [spec.record() for spec in recipe.specs()]


def test_types_are_checked_for_components_with_context_fields(registries):
    # The replay buffer takes `noise` from the run, so its spec is derived; it must still check types.
    with pytest.raises(RecipeError) as info:
        load(RECIPES / "quickstart.toml", ["buffer.capacity=abc", "buffer.policy=lifo"], registries)
    text = str(info.value)
    assert "buffer.capacity: expected int, got 'abc'" in text
    assert "expected one of 'fifo', 'reservoir', got 'lifo'" in text


@pytest.mark.parametrize(("override", "where"), [
    ("sampler.transitions.0.every=0", "sampler.transitions[0].every"),
    ("train.grad_clip=-1.0", "train.grad_clip"),
    ("data.size=-5", "data.size"),
])
def test_values_out_of_range_are_recipe_errors(override, where, registries):
    with pytest.raises(RecipeError) as info:
        load(RECIPES / "quickstart.toml", [override], registries)
    assert [p.where for p in info.value.problems] == [where]


def test_folder_dataset_limits_are_checked_before_running(registries):
    with pytest.raises(RecipeError, match="image_size"):
        load(RECIPES / "improved_cd_celebahq.toml", ["data.image_size=4"], registries)
