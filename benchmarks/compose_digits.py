"""Composition of two conditional models of the same real digits, trained on different labels, measured.

One model is conditional on the digit's parity (recipes/digits_parity.toml: "even", "odd"), the
other on whether it is five or more (recipes/digits_five_or_more.toml: "below_five",
"five_or_more"). Neither was ever told which digit an image is. Their compositions ask for sets
of digits that neither labelling names: ``parity.given(odd) + size.given(five_or_more)`` (AND)
for 5, 7 and 9; ``parity.given(odd) - 0.5 * size.given(five_or_more)`` (AND NOT) for 1 and 3;
``(1000 * parity.given(even) | 1000 * size.given(five_or_more)) / 1000`` (OR) for every digit
but 1 and 3.

    python benchmarks/compose_digits.py [--runs runs] [--seeds 0 1] [--out compositions/digits] [--samples 500]

trains both models for each seed into ``RUNS/digits_parity`` and ``RUNS/digits_five_or_more``
(seed 0; other seeds get ``_seed<N>``), two at a time, one thread each, unless those folders
already hold the finished run of the same recipe and seed; ``ebmkit run
recipes/digits_parity.toml --out runs/digits_parity`` makes the same folder. Each row is then
one composition sampled as ``ebmkit compose`` samples it (the same code path: EMA weights, seed
0, its default sampler with ``SETTINGS`` below), and every sample's digit is read by the digit
classifier that docs/compare_digits.md scores with (classifier_quality's CNN trained on the
digits train split, cached in RUNS/digit_classifier).

A row reports, for each seed: the fraction of samples whose digit is in the set its "scored
against" expression asks for; the coverage of the set (exp of the entropy of the digits read
inside it, over the set's size: 1 when its digits are equally frequent; "-" when none is); and
the median distance (L2, pixels in [0, 1]) from a sample to its nearest image of the train
split, to tell digits from what a classifier reads as one (the test split's images: 0.97).
Beside them the chance level: the fraction of the train split's images whose digit is in the set. Writes that table and
the digits read in each row to ``--table``, and a grid of the first seed's first samples of the
rows that name one to ``--images``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tomllib
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: model name in the expressions -> recipe
MODELS = {"parity": "digits_parity.toml", "size": "digits_five_or_more.toml"}
#: The models are persistent CD: their chains run long in training, continued from a buffer. From
#: noise, compose's default 100 steps leave the disjunctions' samples unfinished (blurred).
SETTINGS = ["sampler.final_steps=300"]

ODD, EVEN = "parity.given(odd)", "parity.given(even)"
FIVE_OR_MORE, BELOW_FIVE = "size.given(five_or_more)", "size.given(below_five)"
AND = f"{ODD} + {FIVE_OR_MORE}"
AND_NOT = f"{ODD} - {FIVE_OR_MORE}"
OR = f"{EVEN} | {FIVE_OR_MORE}"
ODD_BELOW_FIVE, EVEN_FIVE_OR_MORE = f"{ODD} + {BELOW_FIVE}", f"{EVEN} + {FIVE_OR_MORE}"
#: two conjunctions, either of which will do: 1, 3, 6, 8 (chance 0.4, where OR above has 0.8)
EITHER = f"({ODD_BELOW_FIVE}) | ({EVEN_FIVE_OR_MORE})"


def sharpened(left: str, right: str, scale: int) -> str:
    """``left | right`` at temperature 1/scale, as the reference writes a disjunction: these
    energies differ by a few hundredths between the classes, so at temperature 1 the logsumexp
    of the two is close to their mean, and its samples fall between the branches."""
    def weighted(term: str) -> str:
        return f"{scale} * ({term})" if " " in term else f"{scale} * {term}"

    return f"({weighted(left)} | {weighted(right)}) / {scale}"


#: (kind of composition, samples drawn from, scored against, grid file or None)
ROWS = [
    ("alone", ODD, ODD, "compose_digits_odd.png"),
    ("alone", FIVE_OR_MORE, FIVE_OR_MORE, "compose_digits_five_or_more.png"),
    ("alone", EVEN, EVEN, None),
    ("AND", AND, AND, "compose_digits_odd_and_five_or_more.png"),
    ("alone", ODD, AND, None),
    ("alone", FIVE_OR_MORE, AND, None),
    # negation at full weight and at smaller ones (the reference negates with a small weight)
    ("AND NOT", AND_NOT, AND_NOT, "compose_digits_odd_not_five_or_more_weight1.png"),
    ("AND NOT", f"{ODD} - 0.5 * {FIVE_OR_MORE}", AND_NOT, "compose_digits_odd_not_five_or_more.png"),
    ("AND NOT", f"{ODD} - 0.3 * {FIVE_OR_MORE}", AND_NOT, None),
    ("AND NOT", f"{ODD} - 0.1 * {FIVE_OR_MORE}", AND_NOT, None),
    ("alone", ODD, AND_NOT, None),
    ("AND", ODD_BELOW_FIVE, AND_NOT, None),
    # disjunction at temperature 1, 1/100 (the reference's) and 1/1000
    ("OR", OR, OR, None),
    ("OR", sharpened(EVEN, FIVE_OR_MORE, 100), OR, None),
    ("OR", sharpened(EVEN, FIVE_OR_MORE, 1000), OR, "compose_digits_even_or_five_or_more.png"),
    ("alone", EVEN, OR, None),
    ("alone", FIVE_OR_MORE, OR, None),
    ("OR", EITHER, EITHER, None),
    ("OR", sharpened(ODD_BELOW_FIVE, EVEN_FIVE_OR_MORE, 100), EITHER, None),
    ("OR", sharpened(ODD_BELOW_FIVE, EVEN_FIVE_OR_MORE, 1000), EITHER, "compose_digits_either.png"),
    ("OR, one branch", sharpened(ODD_BELOW_FIVE, EVEN_FIVE_OR_MORE, 1000), ODD_BELOW_FIVE, None),
    ("OR, one branch", sharpened(ODD_BELOW_FIVE, EVEN_FIVE_OR_MORE, 1000), EVEN_FIVE_OR_MORE, None),
    ("alone", ODD, EITHER, None),
    ("alone", EVEN, EITHER, None),
]


def run_folder(runs: Path, recipe_file: str, seed: int) -> Path:
    return runs / (recipe_file.removesuffix(".toml") + (f"_seed{seed}" if seed else ""))


def train_run(recipe_file: str, seed: int, out_dir: str) -> str:
    """Train one recipe with this seed into ``out_dir`` on one thread."""
    import torch
    from rich.console import Console

    from ebmkit._engine.loop import train
    from ebmkit._recipes.recipe import load

    torch.set_num_threads(1)
    recipe = load(ROOT / "recipes" / recipe_file, ["run.threads=1", f"run.seed={seed}"])
    train(recipe, Path(out_dir), console=Console(quiet=True), live=False)
    return out_dir


def finished(recipe_file: str, seed: int, folder: Path) -> bool:
    """Whether ``folder`` holds the finished run of this recipe and seed; an error when it holds anything else."""
    import tomli_w

    from ebmkit._engine.checkpoint import find_checkpoint, read_meta
    from ebmkit._recipes.recipe import load
    from ebmkit._engine.run import holds_run

    if not holds_run(folder):
        return False
    recipe = load(ROOT / "recipes" / recipe_file, ["run.threads=1", f"run.seed={seed}"])
    ran = tomllib.loads((folder / "recipe.toml").read_text()) if (folder / "recipe.toml").is_file() else None
    if ran != tomllib.loads(tomli_w.dumps(recipe.resolved())):
        raise SystemExit(f"{folder} holds a run of another recipe than recipes/{recipe_file} with seed {seed}: "
                         "remove it, or give another --runs")
    step = read_meta(find_checkpoint(folder)).get("step") if any((folder / "checkpoints").glob("step_*")) else None
    if step != recipe.train.steps:
        raise SystemExit(f"{folder} holds an unfinished run (step {step} of {recipe.train.steps}): "
                         f"continue it with 'ebmkit run --resume {folder}', or remove it")
    return True


def train_models(runs: Path, seeds: list[int], jobs: int) -> dict[int, dict[str, Path]]:
    """Each seed's run folder of each model, trained (``jobs`` at a time, one thread each) where not yet done."""
    folders = {seed: {name: run_folder(runs, recipe, seed) for name, recipe in MODELS.items()} for seed in seeds}
    missing = [(MODELS[name], seed, str(folder)) for seed in seeds for name, folder in folders[seed].items()
               if not finished(MODELS[name], seed, folder)]
    if missing:
        os.environ["OMP_NUM_THREADS"] = "1"
        with ProcessPoolExecutor(jobs, mp_context=get_context("spawn")) as pool:
            for done in pool.map(train_run, *zip(*missing, strict=True)):
                print(json.dumps({"trained": done}), flush=True)
    return folders


def digit_classifier(cache: Path):
    """classifier_quality's CNN on the digits train split (as docs/compare_digits.md scores with), and its test accuracy."""
    import torch

    from ebmkit.plugins.images.classifier_quality import ClassifierQuality, cached_classifier, read_labelled
    from ebmkit.plugins.images.digits import Digits

    settings = ClassifierQuality()  # its defaults: training steps and how many images it reads
    train = read_labelled(Digits(split="train", conditional=True), settings.num_train)
    test = read_labelled(Digits(split="test", conditional=True), settings.num_test)
    model = cached_classifier(cache, train, 10, settings.train_steps)
    with torch.no_grad():
        accuracy = float((model(test.images).argmax(1) == test.labels).double().mean())
    return model, accuracy


def digit_set(expression: str, models: dict) -> list[int]:
    """The digits a sample of ``expression`` should be: its requirement, read on every labelling of each digit."""
    from ebmkit._model.expression import requirement
    from ebmkit.plugins.images.digits import LABELLINGS

    labels = {labelling.attribute: [labelling.class_name(d) for d in range(10)] for labelling in LABELLINGS.values()}
    wanted = requirement(expression, models).holds(labels)
    return [d for d in range(10) if wanted[d]]


def coverage_within(read: list[int], wanted: list[int]) -> float:
    """exp(entropy of the digits read among those in the set) / the set's size; nan when none is in it."""
    inside = [d for d in read if d in wanted]
    if not inside:
        return math.nan
    fractions = [inside.count(d) / len(inside) for d in wanted if d in inside]
    return math.exp(-sum(f * math.log(f) for f in fractions)) / len(wanted)


def nearest_distance(images, reference) -> float:
    """The median over ``images`` of the L2 distance to the nearest image of ``reference``."""
    import torch

    return float(torch.cdist(images.flatten(1).double(), reference.flatten(1).double()).min(1).values.median())


def markdown_row(cells: list[str]) -> str:
    """A Markdown table row; a "|" inside a cell is escaped, since it would end the cell."""
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default="runs", help="where the models' run folders are (or will be trained)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="a pair of models is trained per seed")
    parser.add_argument("--jobs", type=int, default=2, help="trainings at a time, one thread each")
    parser.add_argument("--out", default="compositions/digits", help="each row's ebmkit compose folder")
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--table", default=str(ROOT / "benchmarks" / "results" / "compose_digits.md"))
    parser.add_argument("--images", default=str(ROOT / "docs" / "images"))
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="e.g. sampler.final_steps=100")
    args = parser.parse_args()

    import safetensors.torch
    import torch

    import ebmkit
    from ebmkit._model import composition
    from ebmkit.plugins.images.digits import LEVELS, Digits
    from ebmkit import save_grid

    torch.set_num_threads(1)
    runs, out = Path(args.runs), Path(args.out)
    folders = train_models(runs, args.seeds, args.jobs)
    classifier, accuracy = digit_classifier(runs / "digit_classifier")
    train = Digits(split="train")
    middle = 0.5 / (LEVELS + 1)  # each pixel at the middle of its dequantisation interval
    test_distance = nearest_distance(Digits(split="test").images + middle, train.images + middle)
    frequency = torch.bincount(train.digits, minlength=10).double() / len(train)
    settings = [f"compose.num_samples={args.samples}", f"compose.batch_size={args.samples}", *SETTINGS, *args.overrides]

    found: dict[int, list[tuple[float, float, float]]] = {}
    read_table = [markdown_row(["seed", "samples of", *map(str, range(10))]), "|---|---|" + "---|" * 10]
    for seed in args.seeds:
        models = {name: ebmkit.load(folder) for name, folder in folders[seed].items()}
        drawn: dict[str, tuple[list[int], float]] = {}
        for i, (_, expression, _, grid) in enumerate(ROWS):
            if expression in drawn:
                continue
            folder = out / f"seed{seed}" / f"row{i:02d}"
            plan = composition.plan(None, expression, [f"{n}={f}" for n, f in folders[seed].items()], settings)
            composition.compose(plan, folder)
            samples = safetensors.torch.load_file(str(folder / "samples.safetensors"))["samples"].clamp(0, 1)  # as the grid shows them
            with torch.no_grad():
                read = classifier(samples).argmax(1).tolist()
            drawn[expression] = (read, nearest_distance(samples, train.images + middle))
            fractions = torch.bincount(torch.tensor(read), minlength=10).double() / len(read)
            read_table.append(markdown_row([str(seed), f"`{expression}`", *(f"{f:.2f}" for f in fractions.tolist())]))
            if grid is not None and seed == args.seeds[0]:
                save_grid(samples[:40], Path(args.images) / grid, nrow=10)
        wanted_sets = [digit_set(wanted_expression, models) for _, _, wanted_expression, _ in ROWS]
        found[seed] = []
        for (_, expression, _, _), wanted in zip(ROWS, wanted_sets, strict=True):
            read, distance = drawn[expression]
            found[seed].append((sum(d in wanted for d in read) / len(read), coverage_within(read, wanted), distance))

    per_seed = " / ".join(f"seed {s}" for s in args.seeds)
    lines = [markdown_row(["kind", "samples of", "scored against", "digits", "chance", f"in the set ({per_seed})",
                           "coverage of the set", "distance to the nearest train image"]), "|---|---|---|---|---|---|---|---|"]
    for row, ((kind, expression, wanted_expression, _), wanted) in enumerate(zip(ROWS, wanted_sets, strict=True)):
        by_seed = [" / ".join("-" if math.isnan(v) else f"{v:.2f}" for v in (found[seed][row][k] for seed in args.seeds))
                   for k in range(3)]
        lines.append(markdown_row([kind, f"`{expression}`", f"`{wanted_expression}`", " ".join(map(str, wanted)),
                                   f"{float(frequency[wanted].sum()):.2f}", *by_seed]))
    header = (
        f"`python benchmarks/compose_digits.py --seeds {' '.join(map(str, args.seeds))}` with "
        f"{' '.join(settings[2:]) or 'the default sampler'}; {args.samples} samples per row; digits read by "
        f"classifier_quality's CNN on the digits train split (test accuracy {accuracy:.3f}); chance: the train split's "
        f"fraction of images in the set; the test split's images lie {test_distance:.2f} from their nearest train image.\n\n"
    )
    Path(args.table).write_text(header + "\n".join(lines) + "\n\nThe digits read, as fractions of each row's samples:\n\n"
                                + "\n".join(read_table) + "\n")
    print("\n".join(lines), flush=True)
    print(json.dumps({"table": args.table, "classifier_accuracy": accuracy, "test_distance": test_distance}))


if __name__ == "__main__":
    main()
