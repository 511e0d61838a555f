"""Composition of trained energies: names, conditioning by class name, the expression grammar,
``ebmkit compose``, the rounds sampler, the attribute classifier and OOD detection."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import ebmkit
from ebmkit._model import expression as ex
from ebmkit._host.energy import Energy, count_models
from ebmkit._host.errors import EbmkitError
from ebmkit._engine.loop import train
from ebmkit._host.protocols import Conditioning, EvalContext
from ebmkit._recipes.recipe import validate

COLORS = Conditioning("color", ("red", "green", "blue"))
SHAPES = Conditioning("shape", ("circle", "square", "triangle"))


class ClassBowls(Energy):
    """E(x, y) = |x - mu_y|^2 / 2: one bowl per class (index y)."""

    def __init__(self, centres, conditioning=None):
        super().__init__()
        self.centres = torch.nn.Parameter(torch.tensor(centres, dtype=torch.float64))
        self.conditioning = conditioning

    def forward(self, x, cond=None):
        centre = self.centres.sum(0) * 0 if cond is None else self.centres[cond]
        return 0.5 * ((x - centre) ** 2).sum(1)


def models():
    return {
        "color": ClassBowls([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]], COLORS),
        "shape": ClassBowls([[2.0, 0.0], [0.0, 2.0], [0.5, 0.5]], SHAPES),
        "smile": ClassBowls([[0.0, 0.0], [3.0, 3.0]], Conditioning.flag("Smiling")),
        "plain": ClassBowls([[0.5, -0.5]]),
    }


# -- names and conditioning ------------------------------------------------------------------
def test_naming_never_renames_another_expression():
    e = ClassBowls([[0.0, 0.0]])
    q, r = e.named("q"), e.named("r")
    assert repr(q | r) == "q | r" and repr(q + 2 * r) == "q + 2 * r"
    assert e.label is None
    with torch.no_grad():
        e.centres += 1.0  # the same weights under every name
    x = torch.zeros(3, 2, dtype=torch.float64)
    torch.testing.assert_close(q(x), e(x))


def test_given_by_class_name_equals_given_by_index():
    m = models()
    x = torch.randn(5, 2, dtype=torch.float64)
    torch.testing.assert_close(m["color"].given("blue")(x), m["color"].given(2)(x))
    torch.testing.assert_close(m["color"].given(color="green")(x), m["color"].given(1)(x))
    torch.testing.assert_close(m["smile"].given(Smiling=True)(x), m["smile"].given(1)(x))
    torch.testing.assert_close(m["smile"].given("not_Smiling")(x), m["smile"].given(0)(x))
    assert repr(m["color"].named("c").given("red")) == "c.given('red')"


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m: m["color"].given("rde"), "did you mean 'red'"),
        (lambda m: m["color"].given(colour="red"), "conditioned on 'color', not 'colour'"),
        (lambda m: m["plain"].given("red"), "does not know the names of its classes"),
        (lambda m: (m["color"] + m["shape"]).given("red"), "condition each model"),
        (lambda m: m["color"].given(True), "has no class True"),
    ],
)
def test_given_by_a_wrong_name_says_what_exists(call, message):
    with pytest.raises(EbmkitError, match=message):
        call(models())


# -- the grammar -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, python",
    [
        ("color.given(red) + shape.given(circle)", lambda m: m["color"].given(0) + m["shape"].given(0)),
        ("color.given('blue') - 0.5 * shape.given(2)", lambda m: m["color"].given(2) - 0.5 * m["shape"].given(2)),
        ("color.given(red) + shape.given(circle) | smile", lambda m: (m["color"].given(0) + m["shape"].given(0)) | m["smile"].given(1)),
        ("color.given(red) + (shape.given(circle) | smile)", lambda m: m["color"].given(0) + (m["shape"].given(0) | m["smile"].given(1))),
        ("(100 * smile | 100 * color.given(green)) / 100", lambda m: ebmkit.disjunction(100 * m["smile"].given(1), 100 * m["color"].given(1)) / 100),
        ("-smile + plain * 3", lambda m: -m["smile"].given(1) + 3 * m["plain"]),
        ("smile.given(Smiling=false) - - plain", lambda m: m["smile"].given(0) + m["plain"]),
    ],
)
def test_expression_builds_what_the_python_algebra_builds(text, python):
    m = models()
    x = torch.randn(7, 2, dtype=torch.float64)
    torch.testing.assert_close(ex.build(text, m)(x), python(m)(x))
    torch.testing.assert_close(ebmkit.compose(text, **m)(x), python(m)(x))


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('touch pwned')",
        "color.given(red).__class__",
        "color.given(red); shape",
        "lambda: 1",
        "color +",
        "",
        "3",
        "color.given(red) * shape.given(circle)",
        "color.given(red) / shape.given(circle)",
        "color.given(red) / 0",
        "color.given(red",
        "color.foo(red)",
        "color.given(red) + 2",
        "color[0]",
    ],
)
def test_expression_outside_the_grammar_is_refused(text):
    with pytest.raises(ex.ExpressionError, match="cannot read the expression"):
        ex.parse(text)


def test_expression_naming_an_unknown_model_or_no_class_is_refused():
    with pytest.raises(ex.ExpressionError, match="did you mean 'color'"):
        ex.build("colr.given(red)", models())
    with pytest.raises(ex.ExpressionError, match="say which class"):
        ex.build("color + shape.given(circle)", models())


@pytest.mark.parametrize(
    "text, wanted",
    [
        ("color.given(red) + shape.given(circle)", "color=red and shape=circle"),
        ("color.given(red) - 0.001 * shape.given(circle)", "color=red and not shape=circle"),
        ("color.given(red) | shape.given(square)", "color=red or shape=square"),
        ("smile + plain", "Smiling"),
        ("-smile", "not Smiling"),
        ("plain", "None"),
    ],
)
def test_requirement_reads_the_expression(text, wanted):
    assert str(ex.requirement(text, models())) == wanted


def test_requirement_holds_per_sample():
    wanted = ex.requirement("color.given(red) - shape.given(circle) | smile", models())
    labels = {"color": ["red", "red", "blue", "blue"], "shape": ["square", "circle", "circle", "circle"],
              "Smiling": ["not_Smiling", "not_Smiling", "Smiling", "not_Smiling"]}
    assert wanted.holds(labels) == [True, False, True, False]


def test_count_models_counts_each_use():
    m = models()
    assert count_models(m["color"]) == 1
    assert count_models(m["color"].given(0) + m["shape"].given(1) - 0.5 * m["color"].given(2)) == 3
    assert count_models(ebmkit.disjunction(m["smile"], m["plain"]) + m["plain"]) == 3


# -- the rounds sampler ----------------------------------------------------------------------------
def _rounds(divide: bool, augment=None):
    table = {"transition": {"name": "langevin", "step_size": 0.1, "noise_std": 0.0}, "rounds": 2, "steps_per_round": 3,
             "final_steps": 4, "divide_step_size": divide}
    if augment:
        table["augment"] = augment
    return ebmkit.create("samplers", "rounds", **table)


def test_rounds_sampler_divides_the_step_size_by_the_number_of_models():
    """Noise-free Langevin on a bowl: x <- x - eta * grad. Two copies of the bowl double the
    gradient; with the step size divided by two the chains move exactly as for one bowl."""
    bowl = ClassBowls([[1.0, -1.0]])
    one, two = bowl.given(0), bowl.given(0) + bowl.given(0)
    x0 = torch.randn(6, 2, dtype=torch.float64)
    alone = _rounds(True).sample(one, x0).x
    torch.testing.assert_close(_rounds(True).sample(two, x0).x, alone)
    expected = torch.tensor([1.0, -1.0], dtype=torch.float64) + (x0 - torch.tensor([1.0, -1.0], dtype=torch.float64)) * 0.9**10
    torch.testing.assert_close(alone, expected)
    assert not torch.allclose(_rounds(False).sample(two, x0).x, alone)


def test_rounds_sampler_augments_between_rounds_only():
    calls = []

    class Count:
        def step(self, energy, x, ctx):
            from ebmkit._host.protocols import StepResult

            calls.append(ctx.index)
            return StepResult(x)

    sampler = _rounds(True)
    import attrs

    sampler = attrs.evolve(sampler, augment=Count())
    sampler.sample(ClassBowls([[0.0, 0.0]]), torch.zeros(2, 2, dtype=torch.float64))
    assert calls == [3, 6]  # after each round of 3 steps; none in the final 4


# -- OOD -------------------------------------------------------------------------------------------
def test_auroc_is_the_mann_whitney_statistic():
    from ebmkit.plugins.images.ood import auroc

    # pairs (in, out): 1>0, 1<2, 2>0, 2=2 (a half), 3>0, 3>2 -> 4.5 of 6
    assert auroc(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0.0, 2.0])) == 0.75
    assert auroc(torch.tensor([5.0, 6.0]), torch.tensor([1.0, 2.0])) == 1.0
    assert auroc(torch.tensor([1.0, 2.0]), torch.tensor([5.0, 6.0])) == 0.0
    scores = torch.randn(500, generator=torch.Generator().manual_seed(0))
    assert auroc(scores, scores) == 0.5


def test_shapes_exclude_and_only_leave_out_combinations():
    from ebmkit.plugins.images.shapes import ATTRIBUTES, Shapes

    data = Shapes(size=600, exclude=[{"color": "red", "shape": "circle"}], label="color")
    red, circle = ATTRIBUTES["color"].index("red"), ATTRIBUTES["shape"].index("circle")
    rows = data.attributes
    assert len(data) == 600
    assert not ((rows[:, 1] == red) & (rows[:, 0] == circle)).any()
    assert ((rows[:, 1] == red) & (rows[:, 0] != circle)).any()  # red squares and triangles stay
    only = Shapes(size=50, only=[{"color": "magenta"}])
    assert (only.attributes[:, 1] == ATTRIBUTES["color"].index("magenta")).all()
    assert data.conditioning == Conditioning("color", ATTRIBUTES["color"])
    with pytest.raises(EbmkitError, match="no combination is left"):
        Shapes(size=5, only=[{"color": "red"}], exclude=[{"color": "red"}])


def test_chance_of_a_requirement_counts_combinations():
    from ebmkit.plugins.images.attribute_classifier import chance
    from ebmkit.plugins.images.shapes import ATTRIBUTES

    m = {"color": ClassBowls([[0.0]] * 6, Conditioning("color", ATTRIBUTES["color"])),
         "shape": ClassBowls([[0.0]] * 3, Conditioning("shape", ATTRIBUTES["shape"]))}
    assert chance(ex.requirement("color.given(red) + shape.given(circle)", m)) == pytest.approx(1 / 18)
    assert chance(ex.requirement("color.given(red) - shape.given(circle)", m)) == pytest.approx(2 / 18)
    assert chance(ex.requirement("color.given(red) | shape.given(circle)", m)) == pytest.approx(8 / 18)


# -- trained checkpoints ------------------------------------------------------------------------
def tiny_run(tmp_path, name: str, label: str) -> str:
    data = {
        "run": {"seed": 0},
        "data": {"name": "shapes", "size": 32, "image_size": 16, "label": label, "exclude": [{"color": "red", "shape": "circle"}]},
        "energy": {"name": "resnet_ebm", "width": 8},
        "sampler": {"name": "chain", "steps": 2, "transitions": [{"name": "langevin", "step_size": 1.0, "noise_std": 0.01, "clamp": [0.0, 1.0]}]},
        "losses": [{"name": "cd"}],
        "optim": {"name": "adam", "lr": 0.001},
        "train": {"steps": 2, "batch_size": 4, "log_every": 1, "eval_at_start": False, "ema": 0.9},
    }
    folder = tmp_path / name
    train(validate(data, name), folder, live=False)
    return str(folder)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("trained")
    return {"color": tiny_run(root, "color", "color"), "shape": tiny_run(root, "shape", "shape")}


def test_load_knows_the_conditioning_of_a_trained_model(trained):
    from ebmkit.plugins.images.shapes import ATTRIBUTES

    color = ebmkit.load(trained["color"])
    assert color.conditioning == Conditioning("color", ATTRIBUTES["color"])
    assert repr(color.given("red")) == "color.given('red')"
    x = torch.rand(3, 3, 16, 16)
    torch.testing.assert_close(color.given(color="blue")(x), color(x, torch.full((3,), 2)))
    with pytest.raises(EbmkitError, match="did you mean 'green'"):
        color.given("gren")


def test_compose_cli_writes_samples_and_scores_them(trained, run_cli, tmp_path):
    recipe = tmp_path / "compose.toml"
    recipe.write_text(
        '[compose]\nnum_samples = 6\nnrow = 3\n'
        '[sampler]\nname = "rounds"\nrounds = 1\nsteps_per_round = 1\nfinal_steps = 1\n'
        '[sampler.transition]\nname = "langevin"\nstep_size = 1.0\nnoise_std = 0.01\nclamp = [0.0, 1.0]\n'
        '[[evaluators]]\nname = "attribute_classifier"\ntrain_steps = 3\n'
    )
    out = tmp_path / "out"
    result = run_cli("compose", "color.given(red) + shape.given(circle)", "--model", f"color={trained['color']}",
                     "--model", f"shape={trained['shape']}", "--recipe", str(recipe), "--out", str(out))
    assert result.exit_code == 0, result.output
    record = json.loads((out / "compose.json").read_text())
    assert record["requirement"] == "color=red and shape=circle"
    metrics = record["metrics"]
    assert metrics["attribute_classifier/chance"] == pytest.approx(1 / 18)
    assert 0 <= metrics["attribute_classifier/carries_expression"] <= 1
    assert (out / "samples.png").exists()
    from safetensors.torch import load_file

    assert load_file(str(out / "samples.safetensors"))["samples"].shape == (6, 3, 16, 16)
    # the classifier is cached beside the first model's run, for the next composition
    assert list((Path(trained["color"]) / "cache").glob("shapes_classifier_*.safetensors"))
    again = run_cli("compose", "color.given(red)", "--model", f"color={trained['color']}", "--out", str(out))
    assert again.exit_code == 2 and "already holds a composition" in again.output


def test_set_on_the_default_sampler_changes_it_and_keeps_the_rest(trained, run_cli, tmp_path):
    out = tmp_path / "out"
    result = run_cli("compose", "color.given(red)", "--model", f"color={trained['color']}", "--out", str(out),
                     "--set", "compose.num_samples=2", "--set", "sampler.final_steps=3",
                     "--set", "sampler.transition.noise_std=0.5")
    assert result.exit_code == 0, result.output
    sampler = json.loads((out / "compose.json").read_text())["sampler"]
    assert sampler["name"] == "rounds" and sampler["params"]["final_steps"] == 3
    # the model's own transition, with only the noise changed
    transition = sampler["params"]["transition"]["params"]
    assert transition["step_size"] == 1.0 and transition["noise_std"] == 0.5


@pytest.mark.parametrize(
    "args, message",
    [
        (["__import__('os').system('touch PWNED')", "--model", "a=RUN"], "cannot read the expression"),
        (["a + b", "--model", "a=RUN"], "names a model 'b' that was not given"),
        (["a +", "--model", "a=RUN"], "cannot read the expression"),
        (["a", "--model", "a"], "expected NAME=RUN_DIR"),
        (["a", "--model", "a=RUN", "--set", "compose.num_samples=0"], "num_samples"),
    ],
)
def test_compose_cli_refuses_before_running_anything(args, message, run_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run_cli("compose", *args, "--out", "out")
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "PWNED").exists() and not (tmp_path / "out").exists()


def test_compose_file_of_the_paper_is_in_the_grammar():
    from ebmkit._model import composition
    from ebmkit._host.kinds import kind_named
    from ebmkit._host.installed import default_registries

    plan = composition.plan("recipes/compose_celebahq_smile_male.toml")
    assert ex.model_names(ex.parse(plan.settings.expression)) == ["smile", "male"]
    _, problems = default_registries().check_table(kind_named("samplers"), plan.data["sampler"], "sampler")
    assert problems == []


def test_ood_evaluator_writes_auroc_protocol_and_histograms(trained, tmp_path):
    ood = ebmkit.create(
        "evaluators", "ood", test_set={"name": "shapes", "size": 20, "image_size": 16, "seed": 1},
        ood_sets=[{"name": "uniform_noise", "size": 20, "image_size": 16}, {"name": "constant_images", "size": 20, "image_size": 16},
                  {"name": "svhn", "root": str(tmp_path / "no_svhn_here")}],
        num_samples=20,
    )
    from ebmkit.plugins.images.shapes import Shapes

    energy = ebmkit.load(trained["color"])
    dataset = Shapes(size=8, image_size=16, label="color")
    ctx = EvalContext(energy, dataset, None, None, tmp_path, 7, torch.device("cpu"))
    metrics = ood.evaluate(ctx)
    assert set(metrics) == {"auroc/uniform_noise", "auroc/constant_images"}
    assert all(0 <= v <= 1 for v in metrics.values())
    protocol = json.loads((tmp_path / "ood_step0000007.json").read_text())
    assert protocol["score"] == "log sum_y exp(-E(x, y))" and "svhn" in protocol["skipped"]
    assert protocol["samples_per_set"] == {"test_set": 20, "uniform_noise": 20, "constant_images": 20}
    assert (tmp_path / "ood_step0000007.png").exists()


def test_ood_sets_are_checked_when_the_recipe_is():
    with pytest.raises(EbmkitError, match="uniform_nosie|did you mean"):
        ebmkit.create("evaluators", "ood", test_set={"name": "shapes"}, ood_sets=[{"name": "uniform_nosie"}])
