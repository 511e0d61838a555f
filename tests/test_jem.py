"""JEM (ebmkit/plugins/jem): the classifier energy, the jem loss, the accuracy evaluator.

Exact answers: the loss's gradient against torch's cross-entropy and against the ``cd`` loss on
the marginal energy; the energy against closed forms of a linear classifier; and, through the
training loop, that the sampler draws the negatives from the marginal (cond=None).
"""

from __future__ import annotations

import math
from pathlib import Path

import attrs
import pytest
import torch
import torch.nn.functional as F

import ebmkit.plugins.jem
from ebmkit import Energy, EbmkitError, hookimpl
from ebmkit._recipes.build import build
from ebmkit._testkit.contract import Points, check_component
from ebmkit._host.errors import RecipeError
from ebmkit._host.protocols import EvalContext, SampleResult, TrainBatch
from ebmkit._recipes.recipe import load, validate
from ebmkit.plugins.cd.cd import ContrastiveDivergence
from ebmkit.plugins.jem.accuracy import ClassificationAccuracy
from ebmkit.plugins.jem.classifier_energy import ClassifierEnergy
from ebmkit.plugins.jem.jem import JEM

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def jem_registered(ebmkit_register):
    return ebmkit_register(ebmkit.plugins.jem)


def tiny(data_shape=(2,), classes=3, seed=0) -> ClassifierEnergy:
    torch.manual_seed(seed)
    return ClassifierEnergy(width=8, depth=1, activation="silu", data_shape=data_shape, num_classes=classes)


def grads(energy: torch.nn.Module, value: torch.Tensor) -> list[torch.Tensor]:
    return list(torch.autograd.grad(value, list(energy.parameters()), retain_graph=True))


def labelled_batch(seed: int = 1, n: int = 16, classes: int = 3):
    generator = torch.Generator().manual_seed(seed)
    x_pos = torch.randn(n, 2, generator=generator)
    y = torch.randint(classes, (n,), generator=generator)
    x_neg = torch.randn(n, 2, generator=generator)
    return x_pos, y, x_neg


class Marginal(Energy):
    """E(x) of the wrapped energy whatever condition is passed: the marginal as an unconditional energy."""

    def __init__(self, inner: Energy):
        super().__init__()
        self.inner = inner

    def forward(self, x, cond=None):
        return self.inner(x, None)


# -- the classifier energy ----------------------------------------------------------------------
def linear_classifier(a: list[float], b: list[float]) -> ClassifierEnergy:
    """f(x)[y] = a_y·x + b_y for x > 0 on 1-D data: one hidden unit copying x (leaky ReLU, x > 0)."""
    energy = ClassifierEnergy(width=1, depth=1, activation="leaky_relu", data_shape=(1,), num_classes=len(a)).double()
    with torch.no_grad():
        linear = energy.features[1]
        linear.weight.fill_(1.0)
        linear.bias.zero_()
        energy.head.weight.copy_(torch.tensor(a, dtype=torch.float64)[:, None])
        energy.head.bias.copy_(torch.tensor(b, dtype=torch.float64))
    return energy


def test_classifier_energy_matches_the_closed_form_of_a_linear_classifier():
    a, b = [1.5, -0.5, 0.25], [0.0, 0.7, -1.2]
    energy = linear_classifier(a, b)
    xs = [0.1, 0.8, 2.0, 3.5]
    x = torch.tensor(xs, dtype=torch.float64)[:, None]
    with torch.no_grad():
        for i, value in enumerate(xs):
            f = [a_y * value + b_y for a_y, b_y in zip(a, b, strict=True)]
            log_z = math.log(sum(math.exp(v) for v in f))
            for y in range(3):  # E(x, y) = −f(x)[y]
                assert energy(x, torch.full((4,), y))[i].item() == pytest.approx(-f[y], abs=1e-12)
            assert energy(x)[i].item() == pytest.approx(-log_z, abs=1e-12)  # E(x) = −log Σ_y exp(f(x)[y])
            assert energy.logits(x)[i].tolist() == pytest.approx(f, abs=1e-12)


def test_marginal_is_minus_logsumexp_of_minus_joint_and_p_y_given_x_is_their_softmax():
    energy = tiny()
    x = torch.randn(32, 2, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        joint = torch.stack([energy(x, torch.full((32,), y)) for y in range(3)], 1)  # E(x, y), (B, K)
        marginal = energy(x)
        torch.testing.assert_close(marginal, -torch.logsumexp(-joint, 1), rtol=0, atol=1e-6)
        p_y = torch.exp(marginal[:, None] - joint)  # exp(−E(x, y)) / exp(−E(x))
        torch.testing.assert_close(p_y, torch.softmax(-joint, 1), rtol=0, atol=1e-6)
        torch.testing.assert_close(p_y, torch.softmax(energy.logits(x), 1), rtol=0, atol=1e-6)
        torch.testing.assert_close(p_y.sum(1), torch.ones(32), rtol=0, atol=1e-6)
        # one-hot float conditions are the same as labels; no batch statistics: a sample alone gets its own energy
        torch.testing.assert_close(energy(x, F.one_hot(torch.full((32,), 2), 3).float()), joint[:, 2])
        torch.testing.assert_close(energy(x[:1]), marginal[:1])


def test_classifier_energy_refuses_unlabelled_data_and_takes_images(jem_registered):
    with pytest.raises(EbmkitError, match="needs labelled data"):
        ClassifierEnergy(data_shape=(2,), num_classes=None)
    with pytest.raises(EbmkitError, match="one class label per sample"):
        tiny()(torch.zeros(4, 2), torch.zeros(3, dtype=torch.long))
    images = ClassifierEnergy(width=4, depth=2, data_shape=(3, 8, 8), num_classes=6)
    assert images(torch.rand(5, 3, 8, 8)).shape == (5,) and images.logits(torch.rand(5, 3, 8, 8)).shape == (5, 6)
    recipe = validate({**smoke_recipe(), "data": {"name": "shapes", "size": 32, "image_size": 8}, "sampler": CHAIN}, "unlabelled")
    with pytest.raises(RecipeError, match="needs labelled data"):
        build(recipe)


# -- the loss -----------------------------------------------------------------------------------
def test_with_generate_weight_0_the_gradient_is_torch_cross_entropy():
    energy = tiny()
    x_pos, y, _ = labelled_batch()
    loss = JEM(classify_weight=1.0, generate_weight=0.0)
    assert not loss.needs.negatives  # a pure classifier runs no sampler
    out = loss(TrainBatch(energy, x_pos, y))
    expected = F.cross_entropy(energy.logits(x_pos), y)
    torch.testing.assert_close(out.value, expected, rtol=0, atol=0)
    for got, want in zip(grads(energy, out.value), grads(energy, expected), strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert out.metrics["jem/accuracy"] == (energy.logits(x_pos).argmax(1) == y).float().mean()
    half = JEM(classify_weight=0.5, generate_weight=0.0)(TrainBatch(energy, x_pos, y)).value
    for got, want in zip(grads(energy, half), grads(energy, 0.5 * expected), strict=True):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("loop_sampled_marginal", [True, False], ids=["loop_batch", "hand_built_batch"])
def test_the_generative_term_is_cd_of_the_marginal_energy(loop_sampled_marginal):
    energy = tiny()
    x_pos, y, x_neg = labelled_batch()
    loss = JEM(classify_weight=0.0, generate_weight=1.0)
    assert loss.needs.negatives and not loss.needs.conditional
    batch = TrainBatch(energy, x_pos, y, x_neg=x_neg, conditional_negatives=not loop_sampled_marginal)
    out = loss(batch)
    cd = ContrastiveDivergence()(TrainBatch(Marginal(energy), x_pos, y, x_neg=x_neg)).value
    torch.testing.assert_close(out.value, cd, rtol=0, atol=1e-6)
    assert out.metrics["jem/gap"] == pytest.approx(cd.item(), abs=1e-6)
    for got, want in zip(grads(energy, out.value), grads(energy, cd), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)
    # and the whole loss is the weighted sum of the two
    both = JEM(classify_weight=0.7, generate_weight=0.3)(TrainBatch(energy, x_pos, y, x_neg=x_neg, conditional_negatives=False)).value
    ce = F.cross_entropy(energy.logits(x_pos), y)
    for got, want in zip(grads(energy, both), grads(energy, 0.7 * ce + 0.3 * cd), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)


def test_loss_refuses_an_energy_without_logits_and_unlabelled_classification():
    x_pos, y, x_neg = labelled_batch()
    with pytest.raises(EbmkitError, match="class logits"):
        JEM()(TrainBatch(Marginal(tiny()), x_pos, y, x_neg=x_neg))
    with pytest.raises(EbmkitError, match="needs labelled data"):
        JEM()(TrainBatch(tiny(), x_pos, None, x_neg=x_neg))
    assert "jem/accuracy" not in JEM(classify_weight=0.0)(TrainBatch(tiny(), x_pos, None, x_neg=x_neg)).metrics
    # the generative term alone takes any energy: E(x) = E(x, None), and it is then cd
    plain = Marginal(tiny())
    alone = JEM(classify_weight=0.0)(TrainBatch(plain, x_pos, None, x_neg=x_neg)).value
    torch.testing.assert_close(alone, ContrastiveDivergence()(TrainBatch(plain, x_pos, None, x_neg=x_neg)).value)
    with pytest.raises(ValueError, match="both 0"):
        JEM(classify_weight=0.0, generate_weight=0.0)


def test_components_keep_their_contracts(jem_registered):
    from ebmkit.plugins.images.shapes import Shapes

    shapes = Shapes(size=16, image_size=8, label="shape")
    assert check_component("energies", "classifier", {"width": 4}, dataset=shapes)
    assert check_component("energies", "classifier", {"width": 4}, dataset=Points(num_classes=3))
    image_energy = ClassifierEnergy(width=4, data_shape=shapes.sample_shape, num_classes=3)
    assert check_component("losses", "jem", {}, dataset=shapes, energy=image_energy)
    assert check_component("losses", "jem", {"data_noise": 0.03, "classify_weight": 0.5}, dataset=Points(num_classes=3), energy=tiny())
    assert check_component("evaluators", "classification_accuracy", {"num_test": 12, "batch_size": 5}, dataset=shapes, energy=image_energy)


# -- the evaluator ------------------------------------------------------------------------------
def test_accuracy_evaluator_scores_a_held_out_split(tmp_path):
    from ebmkit.plugins.images.shapes import Shapes

    train_set = Shapes(size=32, image_size=8, label="color", seed=0)
    energy = ClassifierEnergy(width=4, data_shape=train_set.sample_shape, num_classes=6)
    evaluator = ClassificationAccuracy(held_out_seed=5, num_test=20, batch_size=7)
    ctx = EvalContext(energy, train_set, None, None, tmp_path, 0, torch.device("cpu"))
    found = evaluator.evaluate(ctx)
    test = Shapes(size=20, image_size=8, label="color", seed=5)
    torch.manual_seed(0)
    x = torch.stack([test[i][0] for i in range(20)])
    y = test.attributes[:, 1]
    with torch.no_grad():
        logits = energy.logits(x)
    assert found["accuracy"] == pytest.approx(float((logits.argmax(1) == y).float().mean()))
    assert found["cross_entropy"] == pytest.approx(float(F.cross_entropy(logits, y)), abs=1e-3)  # dequantisation noise
    assert found["majority"] == pytest.approx(float(torch.bincount(y).max()) / 20)
    given = ClassificationAccuracy(test_set=test, num_test=20).evaluate(ctx)  # the same split, given as a dataset
    assert given["accuracy"] == found["accuracy"]
    with pytest.raises(EbmkitError, match="training data's own seed"):
        ClassificationAccuracy(held_out_seed=0).evaluate(ctx)
    with pytest.raises(EbmkitError, match="must be the same"):
        ClassificationAccuracy(test_set=Shapes(size=8, image_size=8, label="shape", seed=5)).evaluate(ctx)


# -- through the loop ---------------------------------------------------------------------------
CALLS: list[torch.Tensor | None] = []


@attrs.define
class RecordingSampler:
    """Langevin steps that record the condition each call was given."""

    steps: int = 5

    def sample(self, energy, x0, *, cond=None, keep_graph=0) -> SampleResult:
        CALLS.append(cond)
        x = x0.detach()
        for _ in range(self.steps):
            with torch.enable_grad():
                x_in = x.requires_grad_(True)
                (grad,) = torch.autograd.grad(energy(x_in, cond).sum(), x_in)
            x = (x - 0.1 * grad + 0.01 * torch.randn_like(x)).detach()
        return SampleResult(x)


@attrs.define
class Blobs(torch.utils.data.Dataset):
    """Three labelled Gaussian blobs in 2-D, centres on a circle of radius 3."""

    size: int = 96
    seed: int = 0
    sample_shape = (2,)
    domain = None
    num_classes = 3

    def __attrs_post_init__(self):
        generator = torch.Generator().manual_seed(self.seed)
        self.labels = torch.arange(self.size) % 3
        angle = self.labels * 2 * math.pi / 3
        centres = 3 * torch.stack([angle.cos(), angle.sin()], 1)
        self.points = centres + 0.5 * torch.randn(self.size, 2, generator=generator)

    def __len__(self):
        return self.size

    def __getitem__(self, index):
        return self.points[index], self.labels[index]


class RecordingPlugin:
    @hookimpl
    def ebmkit_register_samplers(self, register):
        register("recording", RecordingSampler)

    @hookimpl
    def ebmkit_register_datasets(self, register):
        register("blobs", Blobs)


CHAIN = {"name": "chain", "steps": 2, "transitions": [{"name": "langevin", "step_size": 0.01}]}


def smoke_recipe(**losses) -> dict:
    return {
        "run": {"seed": 0, "threads": 1},
        "data": {"name": "blobs"},
        "energy": {"name": "classifier", "width": 16, "depth": 1, "activation": "silu"},
        "sampler": {"name": "recording", "steps": 5},
        "buffer": {"name": "replay", "capacity": 64, "reinit_prob": 0.05},
        "losses": [{"name": "jem", **losses}],
        "optim": {"name": "adam", "lr": 0.01},
        "train": {"steps": 40, "batch_size": 24, "log_every": 40, "eval_at_start": False},
        "evaluators": [{"name": "classification_accuracy", "num_test": 60}],
    }


def test_training_samples_the_marginal_and_learns_to_classify(ebmkit_register, tmp_path):
    from ebmkit._engine.loop import train

    ebmkit_register(ebmkit.plugins.jem)
    ebmkit_register(RecordingPlugin(), "recording")
    CALLS.clear()
    result = train(validate(smoke_recipe(), "jem through the loop"), tmp_path, live=False)
    assert len(CALLS) == 40 and all(cond is None for cond in CALLS)  # every update sampled x- from p(x), never given labels
    metrics = result.metrics
    assert metrics["updates"] == 40 and math.isfinite(metrics["loss/jem"]) and "jem/gap" in metrics
    assert metrics["classification_accuracy/accuracy"] >= 0.95  # separable blobs, a held-out split (seed 1)


def test_a_recipe_mixing_jem_with_conditional_negatives_is_refused(ebmkit_register):
    ebmkit_register(ebmkit.plugins.jem)
    ebmkit_register(RecordingPlugin(), "recording")
    data = smoke_recipe()
    data["losses"] = [{"name": "jem"}, {"name": "cd"}]
    recipe = validate(data, "jem + cd")
    with pytest.raises(RecipeError) as raised:
        build(recipe)
    message = str(raised.value)
    assert "loss 'jem'" in message and "loss 'cd'" in message and "marginal" in message
    data["losses"] = [{"name": "jem"}, {"name": "jem", "generate_weight": 0.0}]  # no negatives: nothing to disagree on
    build(validate(data, "jem + a classifier term"))


def test_the_jem_loss_requires_an_energy_with_logits(jem_registered):
    data = {**smoke_recipe(), "data": {"name": "shapes", "size": 16, "image_size": 8, "label": "shape"}, "energy": {"name": "mlp"},
            "sampler": CHAIN}
    data.pop("evaluators")
    with pytest.raises(RecipeError, match="class_logits"):
        validate(data, "jem on an mlp")


def test_the_recipe_builds(jem_registered):
    recipe = load(ROOT / "recipes" / "jem_shapes.toml", ["data.size=64"])
    components = build(recipe)
    assert [p.name for p in components.losses] == ["jem"] and components.dataset.num_classes == 3
