"""JEM on real digits: the expected calibration error, the ood evaluator's max p(y|x) score, the
recipe and its plain-classifier variant, and the benchmark that compares them (tiny budgets)."""

from __future__ import annotations

import json
import tomllib

import numpy as np
import pytest
import torch

import ebmkit
from ebmkit import EbmkitError
from ebmkit._host.protocols import EvalContext
from ebmkit.plugins.images.ood import OODDetection
from ebmkit.plugins.jem.accuracy import ClassificationAccuracy, expected_calibration_error
from tests.conftest import load_benchmark



# -- the expected calibration error ---------------------------------------------------------------
def test_ece_matches_a_hand_computed_value():
    # 15 bins of width 1/15: 0.9 and 0.9 share (0.867, 0.933], 0.52 is in (0.467, 0.533], 0.58 in (0.533, 0.6].
    # |1 + 0 - 0.9 - 0.9| + |1 - 0.52| + |0 - 0.58| = 0.8 + 0.48 + 0.58 = 1.86, over 4 samples: 0.465.
    # (With 10 bins 0.52 and 0.58 would share a bin and give 0.225.)
    confidence = torch.tensor([0.9, 0.9, 0.52, 0.58], dtype=torch.float64)
    correct = torch.tensor([True, False, True, False])
    assert expected_calibration_error(confidence, correct) == pytest.approx(0.465, abs=1e-12)


def test_ece_is_zero_for_a_calibrated_classifier_and_one_for_a_confidently_wrong_one():
    assert expected_calibration_error(torch.full((4,), 0.75), torch.tensor([1, 1, 1, 0])) == pytest.approx(0.0, abs=1e-7)
    assert expected_calibration_error(torch.ones(3), torch.zeros(3)) == pytest.approx(1.0)
    assert expected_calibration_error(torch.ones(3), torch.ones(3)) == 0.0  # confidence 1 lands in the last bin
    with pytest.raises(EbmkitError, match="as many confidences as predictions"):
        expected_calibration_error(torch.ones(3), torch.ones(2))


class Rows(torch.utils.data.Dataset):
    """Fixed samples with labels: a test set whose every value the test chose."""

    domain = None
    conditioning = None

    def __init__(self, x: torch.Tensor, y: torch.Tensor | None = None, num_classes: int | None = None):
        self.x, self.y = x, y
        self.num_classes = num_classes
        self.sample_shape = tuple(x.shape[1:])

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int):
        return self.x[index] if self.y is None else (self.x[index], self.y[index])


class LogitsAreTheSample(torch.nn.Module):
    """E(x, y) = −x[y]: the sample is the logits, so p(y | x) = softmax(x)."""

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        return -torch.logsumexp(x, 1) if cond is None else -x.gather(1, cond.long()[:, None]).squeeze(1)


def context(dataset, tmp_path) -> EvalContext:
    return EvalContext(LogitsAreTheSample(), dataset, None, None, tmp_path, 0, torch.device("cpu"), ema=False)


def test_classification_accuracy_reports_the_ece_of_its_predictions(tmp_path):
    probabilities = torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.52, 0.48], [0.42, 0.58]], dtype=torch.float64)
    labels = torch.tensor([0, 1, 0, 0])  # right, wrong, right, wrong (it predicts 1 for the last)
    test = Rows(probabilities.log(), labels, num_classes=2)
    found = ClassificationAccuracy(test_set=test).evaluate(context(test, tmp_path))
    assert found["accuracy"] == 0.5
    assert found["ece"] == pytest.approx(0.465, abs=1e-6)
    assert found["confidence"] == pytest.approx((0.9 + 0.9 + 0.52 + 0.58) / 4, abs=1e-6)
    assert "15 equal-width confidence bins" in found["protocol"]


# -- the ood evaluator's max p(y|x) score ---------------------------------------------------------
def test_ood_max_probability_ranks_by_confidence_even_where_softmax_rounds_to_one(tmp_path):
    # Test rows: one logit 50 above the others. OOD rows: 45 above, but all 10 higher. Softmax rounds
    # both to probability 1 in float32 (and float64); max p(y|x) still ranks every test row above every
    # OOD row, while log p(x) = logsumexp ranks them the other way round.
    inside = torch.tensor([[50.0, 0.0, 0.0], [0.0, 50.0, 0.5], [0.2, 0.0, 50.0]])
    outside = inside.clone() + 10 - 5 * (inside > 10).float()
    for name, rows in (("in", inside), ("out", outside)):
        np.save(tmp_path / f"{name}.npy", rows.numpy())
    model_data = Rows(inside, torch.tensor([0, 1, 2]), num_classes=3)
    tables = {"test_set": {"name": "array", "path": str(tmp_path / "in.npy")},
              "ood_sets": [{"name": "array", "path": str(tmp_path / "out.npy"), "label": "shifted"}], "plot": False}
    confident = OODDetection(**tables, score="max_probability").evaluate(context(model_data, tmp_path))
    likely = OODDetection(**tables).evaluate(context(model_data, tmp_path))
    assert confident == {"auroc_max_probability/shifted": 1.0}
    assert likely == {"auroc/shifted": 0.0}
    saved = json.loads((tmp_path / "ood_max_probability_step0000000.json").read_text())
    assert saved["auroc"] == {"shifted": 1.0} and "max_y p(y | x)" in saved["score"]
    assert json.loads((tmp_path / "ood_step0000000.json").read_text())["auroc"] == {"shifted": 0.0}  # not overwritten


def test_ood_max_probability_needs_a_model_of_labelled_data(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((4, 3), dtype=np.float32))
    table = {"name": "array", "path": str(tmp_path / "x.npy")}
    unlabelled = Rows(torch.zeros(4, 3))
    with pytest.raises(EbmkitError, match="trained without labels"):
        OODDetection(test_set=table, ood_sets=[table], score="max_probability", plot=False).evaluate(context(unlabelled, tmp_path))


# -- the recipe, its plain-classifier variant and the benchmark (real digits) -----------------------
@pytest.fixture(scope="module")
def bench():
    pytest.importorskip("sklearn")
    return load_benchmark("jem_digits")


#: A short, narrow run of the shipped recipe: seconds, not minutes.
TINY = ("energy.width=8", "sampler.steps=3", "buffer.capacity=200", "train.steps=80", "train.log_every=20",
        "train.checkpoint_every=0", "train.ema=0.9", "evaluators.1.num_samples=20")


@pytest.fixture(scope="module")
def tiny_runs(bench, tmp_path_factory):
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("jem_digits")
    return {model: (bench.run_model(model, 0, folder / model.replace(" ", "_"), TINY), folder / model.replace(" ", "_"))
            for model in bench.MODELS}


def test_the_ood_sets_are_digit_sized_and_built_from_the_test_split(bench):
    sets = tomllib.loads(f"v = {bench.OOD_SETS}")["v"]
    assert [s["label"] for s in sets] == list(bench.OOD_LABELS)
    built = {s["label"]: ebmkit.create("dataset", s["name"], **{k: v for k, v in s.items() if k not in ("name", "label")}) for s in sets}
    assert all(d.sample_shape == (1, 8, 8) for d in built.values())
    test = ebmkit.create("dataset", "digits", split="test")
    torch.manual_seed(0)
    digit = test[5]
    torch.manual_seed(0)  # the same dequantisation noise
    assert torch.allclose(built["inverted digits"][5], 1 - digit)


def test_the_plain_classifier_is_the_same_network_without_the_generative_term(bench, tiny_runs):
    rows = {model: [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
            for model, (_, folder) in tiny_runs.items()}
    assert any("jem/gap" in row for row in rows["JEM"])  # JEM sampled negatives
    assert not any("jem/gap" in row for row in rows["plain classifier"])  # the classifier ran no sampler
    recipes = {model: tomllib.loads((folder / "recipe.toml").read_text()) for model, (_, folder) in tiny_runs.items()}
    assert recipes["JEM"]["energy"] == recipes["plain classifier"]["energy"]
    assert recipes["plain classifier"]["losses"][0]["generate_weight"] == 0


def test_the_benchmark_scores_accuracy_ece_and_every_ood_set(bench, tiny_runs):
    for model, (result, _) in tiny_runs.items():
        assert result["updates"] == 80
        assert 0 <= result["ece"] <= 1 and 0 <= result["confidence"] <= 1
        for score in bench.SCORES:
            assert set(result["auroc"][score]) == set(bench.OOD_LABELS)
            assert all(0 <= value <= 1 for value in result["auroc"][score].values())
    classifier, jem = tiny_runs["plain classifier"][0], tiny_runs["JEM"][0]
    assert classifier["accuracy"] > 0.5  # 80 updates learn digits well above chance (0.1)
    # JEM's chains restart from uniform noise, and its generative term raises the energy there:
    # its log p(x) tells noise from digits better than the classifier's logsumexp f(x) does.
    assert jem["auroc"]["energy"]["uniform noise"] > classifier["auroc"]["energy"]["uniform noise"] + 0.05


def test_the_summary_gives_the_mean_and_range_over_seeds(bench):
    aurocs = {score: dict.fromkeys(bench.OOD_LABELS, 0.5) for score in bench.SCORES}
    results = [{"model": "JEM", "seed": s, "accuracy": a, "ece": 0.02, "auroc": aurocs} for s, a in ((0, 0.9), (1, 1.0))]
    improved = {"step": 20000, "auroc": dict.fromkeys(bench.OOD_LABELS, 0.75)}
    table = bench.summary_table(results, improved)
    assert "| JEM | log p(x) = −E(x) | 0.950 (0.900–1.000) | 0.020 (0.020–0.020) |" in table
    assert "| JEM | max p(y\\|x) |" in table and "plain classifier" not in table
    assert table.splitlines()[-1].startswith("| improved CD (improved_cd_digits.toml, 20,000 updates) | −E(x) | – | – | 0.750")
