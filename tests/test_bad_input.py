"""Bad input: every user mistake in a recipe or on the command line exits 2 with a message that
names the key, value or file and what was expected, never with a traceback.

A corpus of malformed recipes and command lines (each case says what its message must
contain), then a property: shipped recipes mutated at random either validate or exit 2 with
an ``error:`` message.
"""

from __future__ import annotations

import copy
import functools
import tempfile
import tomllib
import traceback
from pathlib import Path

import attrs
import pytest
import tomli_w
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from ebmkit.cli import cli
from ebmkit._recipes.recipe import RunSettings, TrainSettings
from ebmkit._host.installed import default_registries
from tests.conftest import RECIPES


@attrs.frozen
class Case:
    """One mistake: the recipe (a shipped one, edited, or a whole text), the command line, and
    the substrings the message must contain."""

    id: str
    expect: tuple[str, ...]
    recipe: str = "quickstart.toml"
    edits: tuple[tuple[str, str], ...] = ()  # (old, new) in the recipe's text
    text: str | bytes | None = None  # the whole file, instead of a shipped recipe
    sets: tuple[str, ...] = ()
    file: str | None = None  # "missing", "directory", "unreadable" or "empty-name" (the argument is "")
    command: str = "validate"
    data_files: tuple[tuple[str, str], ...] = ()  # (path, text) written before the command runs
    out: str = "run"  # the run folder (--out), under the test's folder


def case(id: str, *expect: str, **kwargs) -> Case:
    for key in ("edits", "sets", "data_files"):
        if key in kwargs:
            kwargs[key] = tuple(kwargs[key])
    return Case(id, expect, **kwargs)


SMALL_SHAPES = ["data.size=64", "train.batch_size=16"]  # a few images render in milliseconds
NAN = "got nan"  # refused as NaN, whatever the parameter's own validators say

CASES = [
    # -- the file itself
    case("file-missing", "recipe not found", "nowhere.toml", file="missing"),
    case("file-empty", "recipe.toml", "the file is empty", text=""),
    case("file-comments-only", "missing table [train]", "missing [data]", text="# ebmkit run recipe.toml\n\n"),
    case("file-not-toml", "not valid TOML", text="[train\nsteps = 3\n"),
    case("file-binary", "not valid TOML", text=b"\x00\x01\x02\x03"),
    case("file-not-utf8", "not UTF-8", "0xff", text=b"[train]\nsteps = \xff\xfe\n"),
    case("file-is-a-directory", "is a directory", "recipes.toml", file="directory"),
    case("file-unreadable", "secret.toml", file="unreadable"),
    # -- types, names and tables
    case("type-string-for-int", "train.steps", "expected int, got 'many'", edits=[("steps = 1500", 'steps = "many"')]),
    case("type-string-for-float", "optim.lr", "expected float, got 'fast'", edits=[("lr = 2e-3", 'lr = "fast"')]),
    case("type-float-for-int", "run.seed", "expected int, got 1.5", edits=[("seed = 0", "seed = 1.5")]),
    case("type-table-for-value", "energy.hidden", "expected int", edits=[("hidden = 128", "hidden = { width = 3 }")]),
    case("type-array-too-short", "optim.betas", "expected an array of 2 values, got 1", edits=[("betas = [0.0, 0.999]", "betas = [0.9]")]),
    case("type-number-for-array", "optim.betas", "expected an array", edits=[("betas = [0.0, 0.999]", "betas = 0.9")]),
    case("type-string-in-array", "optim.betas", "'x'", edits=[("betas = [0.0, 0.999]", 'betas = [0.9, "x"]')]),
    case("type-bool-for-int", "sampler.steps", "expected int, got True", edits=[("steps = 15", "steps = true")]),
    case("type-date-for-str", "run.device", "expected str", edits=[("seed = 0", "seed = 0\ndevice = 1979-05-27")]),
    case("type-value-for-table", "train", "expected a table, got 5", sets=["train=5"]),
    case("type-string-for-nested-table", "buffer.on_draw", "expected a transition table", "'augment'", sets=["buffer.on_draw=augment"]),
    case("type-string-in-transitions", "sampler.transitions[0]", "expected a transition table", "'langevin'",
         sets=["sampler.transitions=['langevin']"]),
    case("type-string-for-transitions", "sampler.transitions", "expected an array of transition tables", sets=["sampler.transitions=langevin"]),
    case("type-key-weight", "losses[0].weight", "expected float", sets=["losses[0].weight=heavy"]),
    case("name-missing", "data.name", "missing the name of a dataset", "8gaussians", edits=[('name = "8gaussians"\n', "")]),
    case("name-not-a-string", "data.name", "(a string), got 3", edits=[('name = "8gaussians"', "name = 3")]),
    case("name-unknown-component", "sampler.transitions[0].name", "did you mean 'langevin'?", edits=[('name = "langevin"', 'name = "langvin"')]),
    case("name-unknown-nested", "buffer.on_draw.name", "did you mean 'augment'?", sets=["buffer.on_draw={name='augmnt'}"]),
    case("unknown-table", "unknown table [trian]", "did you mean [train]?", edits=[("[train]", "[trian]")]),
    case("unknown-parameter", "energy.hiden", "did you mean 'hidden'?", edits=[("hidden = 128", "hiden = 128")]),
    case("unknown-setting", "run.sed", "did you mean 'seed'?", edits=[("seed = 0", "sed = 0")]),
    case("missing-required-parameter", "sampler.step_size", "missing required parameter 'step_size'",
         sets=["sampler={name='annealed_langevin'}"]),
    case("single-table-for-array", "losses", "expected an array of tables [[losses]]", recipe="gaussian_cd.toml",
         edits=[("[[losses]]", "[losses]")]),
    case("array-for-single-table", "energy", "expected one table [energy], got an array", edits=[("[energy]", "[[energy]]")]),
    case("chain-without-transitions", "sampler.transitions", "at least one transition", sets=["sampler.transitions=[]"]),
    case("no-losses", "[[losses]] is empty", "at least one loss", sets=["losses=[]"]),
    case("requires-unmet", "evaluators[0]", "requires 'exact_2d_density'", sets=["data={name='gaussian'}"]),
    # -- NaN and infinity
    case("nan-learning-rate", "optim.lr", NAN, edits=[("lr = 2e-3", "lr = nan")]),
    case("nan-in-array", "optim.betas", "nan in [0.9, nan]", NAN, edits=[("betas = [0.0, 0.999]", "betas = [0.9, nan]")]),
    case("nan-loss-weight", "losses[1].weight", NAN, edits=[("weight = 0.1", "weight = nan")]),
    case("nan-setting", "train.ema", NAN, edits=[("ema = 0.99", "ema = nan")]),
    case("nan-probability", "buffer.reinit_prob", NAN, edits=[("reinit_prob = 0.2", "reinit_prob = nan")]),
    case("nan-on-the-command-line", "sampler.transitions[0].step_size", NAN, sets=["sampler.transitions.0.step_size=nan"]),
    case("inf-step-size", "sampler.transitions[0].step_size", "expected a finite number, got inf",
         edits=[("step_size = 0.03", "step_size = inf")]),
    case("minus-inf-learning-rate", "optim.lr", "got -inf", edits=[("lr = 2e-3", "lr = -inf")]),
    case("inf-setting", "train.grad_clip", "expected a finite number, got inf", sets=["train.grad_clip=inf"]),
    # -- values out of range
    case("negative-learning-rate", "optim.lr", "must be > 0", edits=[("lr = 2e-3", "lr = -2e-3")]),
    case("zero-learning-rate", "optim.lr", "must be > 0", edits=[("lr = 2e-3", "lr = 0.0")]),
    case("adam-beta-of-one", "optim.betas", "[0, 1)", edits=[("betas = [0.0, 0.999]", "betas = [1.0, 0.999]")]),
    case("sgd-negative-momentum", "optim.momentum", "must be >= 0", recipe="rbm_shapes_cd1.toml",
         edits=[("momentum = 0.5", "momentum = -0.5")], sets=SMALL_SHAPES),
    case("zero-step-size", "sampler.transitions[0].step_size", "must be > 0", edits=[("step_size = 0.03", "step_size = 0")]),
    case("negative-noise", "sampler.transitions[0].noise_std", "must be >= 0", sets=["sampler.transitions.0.noise_std=-0.1"]),
    case("zero-temperature", "sampler.transitions[0].temperature", "must be > 0", sets=["sampler.transitions.0.temperature=0"]),
    case("clamp-upside-down", "sampler.transitions[0].clamp", "low < high", sets=["sampler.transitions.0.clamp=[1, -1]"]),
    case("zero-capacity", "buffer.capacity", "must be > 0", edits=[("capacity = 10000", "capacity = 0")]),
    case("probability-above-one", "buffer.reinit_prob", "must be <= 1", edits=[("reinit_prob = 0.2", "reinit_prob = 1.5")]),
    case("zero-batch", "train.batch_size", "must be > 0", edits=[("batch_size = 256", "batch_size = 0")]),
    case("negative-steps", "train.steps", "must be >= 0", edits=[("steps = 1500", "steps = -1")]),
    case("zero-chain-steps", "sampler.steps", "must be >= 1", edits=[("steps = 15", "steps = 0")]),
    case("negative-dataset-size", "data.size", "must be > 0", edits=[("size = 50000", "size = -5")]),
    case("zero-hidden-units", "energy.hidden", "must be >= 1", edits=[("hidden = 128", "hidden = 0")]),
    case("zero-init-scale", "energy.init_scale", "must be > 0", recipe="gaussian_cd.toml", sets=["energy.init_scale=0"]),
    case("zero-dimensions", "data.dim", "must be > 0", recipe="gaussian_cd.toml", edits=[("dim = 2", "dim = 0")]),
    case("tiny-image-size", "data.image_size", "must be >= 8", recipe="rbm_shapes_cd1.toml", edits=[("image_size = 16", "image_size = 4")]),
    case("negative-every", "evaluators[0].every", "must be at least 0", edits=[("every = 500", "every = -1")]),
    case("cold-start-hotter-than-end", "sampler.t_min", "t_min must be at most t_max",
         sets=["sampler={name='annealed_langevin', step_size=0.01, t_max=1.0, t_min=2.0}"]),
    case("vp-sigma-of-one", "losses[0].sigma", "sigma < 1", recipe="dcd_8gaussians.toml", sets=["losses.0.kernel=vp", "losses.0.sigma=1.0"]),
    case("resnet-width", "energy.width", "multiple of 8", recipe="improved_cd_shapes.toml", sets=["energy.width=12", *SMALL_SHAPES]),
    case("batch-larger-than-data", "train.batch_size", "a batch of 256 is more than the 100 samples", edits=[("size = 50000", "size = 100")]),
    case("size-beyond-memory", "energy", "more memory than there is", sets=["energy.hidden=1000000000000"]),
    # -- data that is not there
    case("data-folder-missing", "nothere", "does not exist", "put the images there", recipe="improved_cd_shapes.toml",
         sets=["data={name='image_folder', root='nothere', image_size=32}"]),
    case("data-folder-empty", "empty", "holds no images", recipe="improved_cd_shapes.toml",
         sets=["data={name='image_folder', root='empty', image_size=32}"]),
    case("data-cifar10-missing", "CIFAR-10 was not found", "cifar-10-batches-py", recipe="improved_cd_shapes.toml",
         sets=["data={name='cifar10', root='nocifar'}"]),
    case("data-celebahq-missing", "data/celebahq", "CelebA-HQ", recipe="improved_cd_celebahq.toml"),
    case("data-image-unreadable", "cannot read its first samples", "broken.png", recipe="improved_cd_shapes.toml",
         sets=["data={name='image_folder', root='images', image_size=32}", "train.batch_size=1"],
         data_files=[("images/broken.png", "not a PNG")]),
    case("data-attribute-list-malformed", "list_attr_celeba.txt is not CelebA's attribute list", "line 3",
         recipe="improved_cd_celebahq_attribute.toml", sets=["data.name=celeba_attributes", "data.root=celeba"],
         data_files=[("celeba/list_attr_celeba.txt", "1\nSmiling Male\n000001.jpg 1\n")]),
    # -- an energy that cannot take the data
    case("energy-image-too-small", "energy", "cannot take a batch of shape (2, 3, 8, 8)", recipe="improved_cd_shapes.toml",
         sets=["data.image_size=8", *SMALL_SHAPES]),
    case("energy-images-for-vectors", "energy", "needs RGB or grey images", sets=["energy={name='resnet_ebm', width=8}"]),
    case("energy-vectors-for-images", "energy", "needs vector data", recipe="improved_cd_shapes.toml",
         sets=["energy={name='quadratic'}", *SMALL_SHAPES]),
    # -- --set itself
    case("set-without-equals", "--set expects key.path=value", "train.steps", sets=["train.steps"]),
    case("set-empty-key", "the key is empty", sets=["=5"]),
    case("set-empty-segment", "cannot read an empty part in the key 'train..steps'", sets=["train..steps=5"]),
    case("set-bad-index", "cannot read 'losses[-1]'", sets=["losses[-1].weight=2"]),
    case("set-index-out-of-range", "index 5 is out of range", "losses has 2 entries", sets=["losses[5].weight=2"]),
    case("set-inside-a-number", "train.steps, which is 1500 (int), not a table", sets=["train.steps.x=5"]),
    case("set-index-into-a-number", "optim.lr is 0.002 (float), not an array", sets=["optim.lr.0=1"]),
    case("set-array-without-index", "give an index, e.g. losses[0].weight", sets=["losses.weight=2"]),
    case("set-unknown-key", "energy.hiden", "did you mean 'hidden'?", sets=["energy.hiden=3"]),
    case("set-unknown-table", "unknown table [trian]", "did you mean [train]?", sets=["trian.steps=3"]),
    case("run-name-is-a-path", "run.name", "not a path: '../elsewhere'", sets=["run.name=../elsewhere"]),
    case("on-divergence-action", "train.on_divergence.action", "'stop', 'rollback'", sets=["train.on_divergence.action=retry"]),
    case("on-divergence-lr-scale", "train.on_divergence", "lr_scale", sets=["train.on_divergence.lr_scale=2"]),
    case("keep-checkpoints-zero", "train.keep_checkpoints", sets=["train.keep_checkpoints=0"]),
    # -- what the cluster-runs issue found escaping as tracebacks
    case("toml-nested-too-deep", "not valid TOML", "nested too deeply", text="a = " + "[" * 5000 + "]" * 5000),
    case("set-nested-too-deep", "data.size", "expected int", sets=["data.size=" + "[" * 5000 + "]" * 5000]),
    case("seed-beyond-64-bits", "run.seed", "a seed is an integer from 0 to 2**62", sets=["run.seed=100000000000000000000000"]),
    case("seed-negative", "run.seed", "from 0 to 2**62", sets=["run.seed=-1"]),
    case("run-name-nul", "run.name", "cannot hold control characters", "'a\\x00b'", sets=['run.name="a\\u0000b"']),
    case("device-gpu", "run.device", "'gpu' is not a device torch knows", sets=["run.device=gpu"]),
    case("device-tpu", "run.device", "'tpu' is not a device torch knows", sets=["run.device=tpu"]),
    case("device-empty", "run.device", "'' is not a device torch knows", sets=['run.device=""']),
    case("device-upper-case", "run.device", "'CPU' is not a device torch knows", sets=["run.device=CPU"]),
    case("run-empty-recipe-name", "the recipe is an empty string", file="empty-name", command="run"),
    case("run-out-under-a-file", "--out", "is under", "a-file, which is a file", command="run", out="a-file/run",
         data_files=[("a-file", "")]),
    case("run-out-is-a-file", "--out", "is a file", command="run", out="a-file", data_files=[("a-file", "")]),
    # -- run: fails before training and leaves no run folder
    case("run-device-cuda-7", "cuda:7", "is not usable here", sets=["run.device=cuda:7"], command="run"),
    case("run-device-tpu", "run.device", "'tpu' is not a device torch knows", sets=["run.device=tpu"], command="run"),
    case("run-nan", "optim.lr", NAN, edits=[("lr = 2e-3", "lr = nan")], command="run"),
    case("run-batch-larger-than-data", "train.batch_size", "100 samples", sets=["data.size=100"], command="run"),
    case("run-energy-image-too-small", "cannot take a batch of shape (2, 3, 8, 8)", recipe="improved_cd_shapes.toml",
         sets=["data.image_size=8", *SMALL_SHAPES], command="run"),
]


def invoke(*args: str):
    """Run the CLI in-process; fails, showing it, if anything but a clean exit escaped."""
    result = CliRunner().invoke(cli, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        trace = "".join(traceback.format_exception(result.exception))
        pytest.fail(f"ebmkit {' '.join(args)} raised instead of exiting with a message:\n{trace}")
    return result


def recipe_file(c: Case, folder: Path, monkeypatch) -> Path:
    if c.file == "missing":
        return folder / "nowhere.toml"
    if c.file == "empty-name":
        return Path("")
    if c.file == "directory":
        (folder / "recipes.toml").mkdir()
        return folder / "recipes.toml"
    path = folder / ("secret.toml" if c.file == "unreadable" else "recipe.toml")
    if c.text is not None:
        path.write_bytes(c.text if isinstance(c.text, bytes) else c.text.encode())
        return path
    text = (RECIPES / c.recipe).read_text()
    for old, new in c.edits:
        assert old in text, f"{c.recipe} has no {old!r}"
        text = text.replace(old, new, 1)
    path.write_text(text)
    if c.file == "unreadable":
        path.chmod(0)
        read_text = Path.read_text

        def refuse(self, *args, **kwargs):  # root reads any file: refuse it as the OS would for anyone else
            if self == path:
                raise PermissionError(13, "Permission denied", str(self))
            return read_text(self, *args, **kwargs)

        monkeypatch.setattr(Path, "read_text", refuse)
    return path


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_a_mistake_exits_2_and_names_what_is_wrong(c: Case, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative data folders (nothere, empty, nocifar) resolve here
    (tmp_path / "empty").mkdir()
    for name, text in c.data_files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    path = recipe_file(c, tmp_path, monkeypatch)
    out = tmp_path / c.out
    args = [c.command, "" if c.file == "empty-name" else str(path), *(a for s in c.sets for a in ("--set", s))]
    if c.command == "run":
        args += ["--out", str(out)]
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert "rror:" in result.output  # ebmkit's "error:", or click's "Error:" for a path it refused
    for expected in c.expect:
        assert expected in result.output, f"{expected!r} not in:\n{result.output}"
    assert not out.exists() or out.is_file(), "a recipe that fails must leave no run folder"


@pytest.mark.parametrize(
    ("sets", "expect"),
    [
        (["buffer.capacity=1099511627776"], ["buffer 'replay'", "push() could not allocate 8.0 TiB", "lower its capacity"]),
        (["optim.lr=1e300"], ["training diverged at step 1: the optimizer's update overflowed", "Lower [optim].lr"]),
        (["optim.lr=1e300", 'train.on_divergence.action="rollback"', "train.on_divergence.max_retries=1"],
         ["the optimizer's update overflowed", "already rolled back 1 time(s)"]),
    ],
    ids=["buffer-beyond-memory", "lr-overflows", "lr-overflows-after-rollbacks"],
)
def test_a_mistake_found_once_training_runs_exits_2_and_names_it(sets, expect, tmp_path):
    """A buffer allocates its storage at its first push, and an update overflows only when it is
    made: the run has started (its folder exists), and still ends with a message and exit 2."""
    args = [a for s in ["train.steps=3", "evaluators=[]", *sets] for a in ("--set", s)]
    result = invoke("run", str(RECIPES / "quickstart.toml"), *args, "--out", str(tmp_path / "run"))
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    for expected in expect:
        assert expected in result.output, f"{expected!r} not in:\n{result.output}"


def test_a_device_torch_knows_but_this_machine_lacks_is_a_note_when_validating():
    result = invoke("validate", str(RECIPES / "quickstart.toml"), "--set", "run.device=cuda:999")
    assert result.exit_code == 0 and "quickstart.toml: OK" in result.output and "note: [run].device = 'cuda:999' is not usable here" in result.output


def test_the_corpus_is_large_and_its_cases_are_named_once():
    ids = [c.id for c in CASES]
    assert len(ids) >= 40 and len(set(ids)) == len(ids)


# -- property: mutated recipes validate or exit 2 with a message --------------------------------
def small(name: str, **changes: dict) -> dict:
    data = tomllib.loads((RECIPES / name).read_text())
    for table, values in changes.items():
        data[table].update(values)
    return data


BASES = {
    "quickstart": small("quickstart.toml", data={"size": 2000}),
    "gaussian_cd": small("gaussian_cd.toml"),
    "rbm": small("rbm_shapes_cd1.toml", data={"size": 200}),
    "dcd": small("dcd_8gaussians.toml", data={"size": 2000}),
}
SETTINGS_KEYS = {"run": sorted(attrs.fields_dict(RunSettings)), "train": sorted(attrs.fields_dict(TrainSettings))}


@functools.cache
def component_names() -> list[str]:
    return sorted({name for registry in default_registries().values() for name in registry})


@functools.cache
def parameter_names(component: str) -> list[str]:
    """The parameters of the components called ``component``, of any kind."""
    entries = [registry[component] for registry in default_registries().values() if component in registry]
    return sorted({field.name for entry in entries for field in attrs.fields(entry.params)} | {"every", "weight"})


# Small sizes only: a recipe may ask for any size, but a mutated one must validate in milliseconds
# (a size beyond memory is in the corpus: size-beyond-memory).
odd_ints = st.integers(-3, 40)
odd_floats = st.sampled_from([0.0, -0.0, -1.0, 1e-12, 0.5, 1.0, 2.5, 1e300, -1e300, float("nan"), float("inf"), float("-inf")])
scalars = st.one_of(odd_ints, odd_floats, st.floats(-100, 100), st.text(max_size=6), st.booleans())
toml_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(min_size=1, max_size=5), inner, max_size=2),
    max_leaves=4,
)


def paths(node, prefix=()):
    """Every path to a value in a recipe, tables and arrays included (not the top level)."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        yield (*prefix, key)
        yield from paths(value, (*prefix, key))


def node_at(data, path):
    for key in path:
        data = data[key]
    return data


def is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@st.composite
def mutated_recipes(draw) -> dict:
    """A small shipped recipe with one or two mutations: a value replaced by any TOML value, a number
    by an odd one (0, negative, NaN, inf, ...), a key deleted, a key added (one of the component's
    parameters or an unknown one), or a component renamed."""
    data = copy.deepcopy(BASES[draw(st.sampled_from(sorted(BASES)))])
    for _ in range(draw(st.integers(1, 2))):
        every = list(paths(data))
        tables = [()] + [p for p in every if isinstance(node_at(data, p), dict)]
        numbers = [p for p in every if is_number(node_at(data, p))]
        kind = draw(st.sampled_from(["replace", "odd number", "odd number", "delete", "add", "rename"]))
        if kind == "odd number" and numbers:
            path = draw(st.sampled_from(numbers))
            node_at(data, path[:-1])[path[-1]] = draw(odd_ints if isinstance(node_at(data, path), int) else odd_floats)
        elif kind == "add" or not every:
            table = draw(st.sampled_from(tables))
            node = node_at(data, table)
            if table in [(name,) for name in SETTINGS_KEYS]:
                known = SETTINGS_KEYS[table[0]]
            else:
                known = parameter_names(node["name"]) if isinstance(node.get("name"), str) else []
            unknown = st.text(min_size=1, max_size=8)
            node[draw(st.sampled_from(known) | unknown if known else unknown)] = draw(toml_values | odd_ints | odd_floats)
        elif kind == "rename" and len(tables) > 1:
            named = [p for p in tables if "name" in node_at(data, p)]
            node_at(data, draw(st.sampled_from(named)))["name"] = draw(st.sampled_from(component_names()) | st.text(max_size=8))
        else:
            path = draw(st.sampled_from(every))
            if kind == "delete":
                del node_at(data, path[:-1])[path[-1]]
            else:
                node_at(data, path[:-1])[path[-1]] = draw(toml_values)
    return data


@settings(max_examples=500, deadline=None, derandomize=True, database=None)
@given(mutated_recipes())
def test_a_mutated_recipe_validates_or_exits_2_with_a_message(data):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "mutated.toml"
        path.write_text(tomli_w.dumps(data))
        result = invoke("validate", str(path))
    assert result.exit_code in (0, 2), result.output
    if result.exit_code == 2:
        assert "error:" in result.output and "Traceback" not in result.output
