"""The digits relabelled into named groups (parity, five or more), and models of two labellings
composed by class name: the relabelling, its bad inputs, and a tiny composition end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ebmkit import EbmkitError
from tests.conftest import load_benchmark

pytest.importorskip("sklearn")

ROOT = Path(__file__).resolve().parent.parent
#: how many of each digit 0-9 scikit-learn's 1,797 images hold
PER_DIGIT = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    """The two recipes trained for 2 updates with a tiny energy: model name -> run folder."""
    from ebmkit._engine.loop import train
    from ebmkit._recipes.recipe import load

    tiny = ["energy.hidden=16", "energy.depth=1", "train.steps=2", "train.batch_size=8", "train.log_every=1",
            "train.checkpoint_every=0", "buffer.capacity=32", "evaluators=[]", "run.threads=1"]
    root = tmp_path_factory.mktemp("runs")
    runs = {"parity": root / "parity", "size": root / "five_or_more"}
    for label, folder in zip(("parity", "five_or_more"), runs.values(), strict=True):
        train(load(ROOT / "recipes" / f"digits_{label}.toml", tiny), folder, live=False)
    return runs


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("compose_digits")


@pytest.mark.parametrize(("label", "classes", "digits_of_each"), [
    ("digit", tuple("0123456789"), [[d] for d in range(10)]),
    ("parity", ("even", "odd"), [[0, 2, 4, 6, 8], [1, 3, 5, 7, 9]]),
    ("five_or_more", ("below_five", "five_or_more"), [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]),
])
def test_a_label_groups_the_digits_into_named_classes(label, classes, digits_of_each, registries):
    build = registries.get("datasets", "digits").build
    data = build({"split": "all", "conditional": True, "label": label})
    assert data.num_classes == len(classes) and data.conditioning.classes == classes
    assert data.conditioning.attribute == label
    expected = [sum(PER_DIGIT[d] for d in group) for group in digits_of_each]
    assert torch.bincount(data.labels, minlength=len(classes)).tolist() == expected
    for index, group in enumerate(digits_of_each):
        assert data.conditioning.index(classes[index]) == index
        assert set(data.digits[data.labels == index].tolist()) == set(group)
    x, y = data[10]
    assert int(y) == data.labels[10] and x.shape == (1, 8, 8)
    assert torch.equal(data.images, build({"split": "all"}).images)  # the same images, whatever the label


def test_the_split_keeps_its_images_under_any_label(registries):
    build = registries.get("datasets", "digits").build
    parity = build({"split": "test", "conditional": True, "label": "parity"})
    digits = build({"split": "test", "conditional": True})
    assert torch.equal(parity.images, digits.images) and torch.equal(parity.labels, digits.labels % 2)
    assert torch.bincount(parity.labels).tolist() == [180, 180]  # 36 of each digit
    with pytest.raises(EbmkitError, match="parity has no class 'od' - did you mean 'odd'"):
        parity.conditioning.index("od")


def test_a_label_without_conditional_is_a_clear_error(registries):
    with pytest.raises(EbmkitError, match="without conditional = true the images have no label; set conditional = true"):
        registries.get("datasets", "digits").build({"label": "parity"})


@pytest.mark.parametrize(("data", "expected"), [
    ('label = "odd"\nconditional = true', ["data.label", "'digit', 'parity', 'five_or_more'", "got 'odd'"]),
    ('label = "parity"', ["label = 'parity'", "set conditional = true"]),
], ids=["unknown-label", "label-without-conditional"])
def test_bad_labels_exit_2_through_the_cli(data, expected, tmp_path, run_cli):
    from tests.test_real_data import exits_2_saying, recipe

    exits_2_saying(run_cli("validate", recipe(tmp_path, f'name = "digits"\n{data}')), *expected)


def test_the_benchmark_scores_each_composition_against_its_set_of_digits(bench, tiny_runs):
    from ebmkit import compose
    from ebmkit._model.load import load

    assert set(bench.MODELS) == set(tiny_runs)
    models = {name: load(folder) for name, folder in tiny_runs.items()}
    assert bench.digit_set(bench.AND, models) == [5, 7, 9]
    assert bench.digit_set(bench.AND_NOT, models) == [1, 3]
    assert bench.digit_set(f"{bench.ODD} - 0.1 * {bench.FIVE_OR_MORE}", models) == [1, 3]
    assert bench.digit_set(bench.OR, models) == [0, 2, 4, 5, 6, 7, 8, 9]
    assert bench.digit_set(bench.EITHER, models) == [1, 3, 6, 8]
    assert bench.digit_set(bench.sharpened(bench.EVEN, bench.FIVE_OR_MORE, 1000), models) == [0, 2, 4, 5, 6, 7, 8, 9]
    for _, expression, wanted, _ in bench.ROWS:  # every row builds, and asks for some digits, before any is sampled
        compose(expression, models)
        assert 0 < len(bench.digit_set(wanted, models)) < 10
    assert bench.coverage_within([5, 7, 9, 9, 1], [5, 7, 9]) == pytest.approx(((1 / 4) ** -0.5 * (1 / 2) ** -0.5) / 3)
    assert bench.coverage_within([5, 5, 5], [5, 7, 9]) == pytest.approx(1 / 3)
    assert bench.nearest_distance(torch.ones(3, 1, 2, 2), torch.stack([torch.zeros(1, 2, 2), torch.full((1, 2, 2), 0.5)])) == 1.0


def test_models_of_two_labellings_compose_by_class_name_on_the_command_line(tiny_runs, tmp_path, run_cli):
    models = [arg for name, folder in tiny_runs.items() for arg in ("--model", f"{name}={folder}")]
    small = ["--set", "compose.num_samples=3", "--set", "sampler.final_steps=2"]
    out = tmp_path / "odd_not_five"
    result = run_cli("compose", "parity.given(odd) - size.given(five_or_more)", *models, "--out", str(out), *small)
    assert result.exit_code == 0, result.output
    record = json.loads((out / "compose.json").read_text())
    assert record["requirement"] == "parity=odd and not five or more"
    assert record["energy"] == "parity.given('odd') - size.given('five_or_more')"
    assert (out / "samples.png").exists() and record["settings"]["num_samples"] == 3
    misspelled = run_cli("compose", "parity.given(odd) + size.given(five_or_mor)", *models, "--out", str(tmp_path / "x"), *small)
    assert misspelled.exit_code == 2 and "did you mean 'five_or_more'?" in misspelled.output
    assert not (tmp_path / "x").exists()
