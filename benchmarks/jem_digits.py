"""JEM on real handwritten digits beside the same network trained as a plain classifier: test accuracy,
expected calibration error, and out-of-distribution AUROCs.

Trains ``recipes/jem_digits.toml`` (JEM) and the same recipe with ``losses.0.generate_weight=0``
(cross-entropy only, no sampler: the plain classifier) for each seed, on one thread each. Both
are scored on their EMA weights: ``classification_accuracy`` on the digits test split (360
images; accuracy and the expected calibration error in 15 equal-width bins) at the end of
training, then the ``ood`` evaluator (``ebmkit eval``) with the digits test split as the
in-distribution set against uniform noise, grey shapes, inverted digits (1 − x) and blurred
digits (Gaussian, σ = 1 px), once with JEM's log p(x) (``score = "energy"``: −E(x) =
logsumexp_y f(x)[y]) and once with max_y p(y | x) (``score = "max_probability"``). With
``--improved-cd RUN_DIR`` (a run of ``ebmkit run recipes/improved_cd_digits.toml``) that model's
−E(x) is scored on the same sets; the run folder is copied first and never written. Writes a
Markdown table (mean and range over seeds, and every run) and JEM's sample grid of the first
seed (a row per digit, scaled up nearest-neighbour):

    python benchmarks/jem_digits.py [--seeds 0 1 2] [--improved-cd RUN_DIR] [--jobs 1] [--docs docs]

Each finished run is kept in ``--cache`` by what its recipe sets, so an interrupted benchmark
continues where it stopped and a changed recipe trains again. ``--jobs`` runs that many at
once, each on one thread: on a machine with fewer free cores than jobs they slow each other,
so read the training seconds.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import tempfile
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "jem_digits.toml"

#: Table label -> overrides of the JEM recipe.
MODELS = {
    "JEM": [],
    "plain classifier": ["losses.0.generate_weight=0"],
}

#: The in-distribution set: the digits test split (the models never saw it), without labels.
TEST_SET = '{name = "digits", split = "test", label = "digits test"}'
#: The OOD sets, 8 px and one grey channel like the digits, in the ood evaluator's TOML.
OOD_SETS = (
    '[{name = "uniform_noise", image_size = 8, channels = 1, size = 1000, label = "uniform noise"}, '
    '{name = "transformed", dataset = {name = "shapes", image_size = 8, size = 1000, seed = 1}, grey = true, label = "grey shapes"}, '
    '{name = "transformed", dataset = {name = "digits", split = "test"}, invert = true, label = "inverted digits"}, '
    '{name = "transformed", dataset = {name = "digits", split = "test"}, blur = 1.0, label = "blurred digits"}]'
)
OOD_LABELS = ("uniform noise", "grey shapes", "inverted digits", "blurred digits")
#: ood evaluator score -> how the table names it for JEM, and for the plain classifier (the same
#: scores of its logits: logsumexp_y f(x)[y] and max softmax). The backslash keeps the | of p(y|x)
#: from ending a Markdown table cell.
SCORES = {"energy": "log p(x) = −E(x)", "max_probability": "max p(y\\|x)"}
CLASSIFIER_SCORES = {"energy": "logsumexp f(x)", "max_probability": "max softmax"}
ACCURACY = "classification_accuracy"


def ood_overrides(score: str) -> list[str]:
    """The ood evaluator's settings, as ``ebmkit eval --set`` takes them."""
    return [f"test_set={TEST_SET}", f"ood_sets={OOD_SETS}", f"score={score}", "plot=false"]


def ood_aurocs(run_dir: Path, score: str) -> dict[str, float]:
    """AUROC per OOD set of the run's latest checkpoint (EMA weights), as ``ebmkit eval`` measures it."""
    from rich.console import Console

    from ebmkit._model.evaluate import evaluate

    metrics = evaluate(run_dir, ["ood"], ood_overrides(score), console=Console(quiet=True))
    prefix = "ood/auroc/" if score == "energy" else f"ood/auroc_{score}/"
    return {key.removeprefix(prefix): value for key, value in metrics.items() if key.startswith(prefix)}


def run_settings(model: str, seed: int, extra: tuple[str, ...] = ()) -> list[str]:
    """The recipe's overrides for one run: the seed, one thread, the model's own, then ``extra``."""
    return [f"run.seed={seed}", "run.threads=1", *MODELS[model], *extra]


def run_key(model: str, seed: int) -> str:
    """The run's name in the cache: a digest of everything the run sets, so a changed recipe trains again."""
    from ebmkit._recipes.recipe import load

    settings = load(RECIPE, run_settings(model, seed)).data
    digest = hashlib.sha1(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:10]
    return f"{model.replace(' ', '_')}-{digest}-{seed}"


def run_model(model: str, seed: int, out_dir: Path, extra: tuple[str, ...] = ()) -> dict:
    """Train one model, then score it: accuracy and ECE from its end evaluation, AUROCs per score.
    ``extra``: more overrides of the recipe (a shorter run)."""
    import torch
    from rich.console import Console

    from ebmkit._engine.loop import train
    from ebmkit._recipes.recipe import load

    torch.set_num_threads(1)
    final = train(load(RECIPE, run_settings(model, seed, extra)), out_dir, console=Console(quiet=True), live=False).metrics
    grid = sorted(out_dir.glob("samples_step*.png"))[-1]
    return {
        "updates": int(final["updates"]), "train_s": final["train_s"],
        "accuracy": final[f"{ACCURACY}/accuracy"], "ece": final[f"{ACCURACY}/ece"],
        "confidence": final[f"{ACCURACY}/confidence"], "cross_entropy": final[f"{ACCURACY}/cross_entropy"],
        "auroc": {score: ood_aurocs(out_dir, score) for score in SCORES}, "grid": str(grid),
    }


def cached_run(cache: Path, model: str, seed: int) -> dict:
    """A run's results, from the cache when it was made with the same settings."""
    stem = cache / run_key(model, seed)
    record = stem.with_suffix(".json")
    if record.exists():
        return json.loads(record.read_text())
    folder = stem.parent / f"{stem.name}.run"
    if folder.exists():  # an interrupted run: start it again
        shutil.rmtree(folder)
    result = run_model(model, seed, folder) | {"model": model, "seed": seed}
    record.write_text(json.dumps(result))
    return result


def run_all(jobs: list[tuple[str, int]], cache: Path, workers: int) -> list[dict]:
    """Every (model, seed), ``workers`` at a time, each in its own one-thread process."""
    os.environ["OMP_NUM_THREADS"] = "1"
    if workers == 1:
        return [cached_run(cache, model, seed) for model, seed in jobs]
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        return [f.result() for f in [pool.submit(cached_run, cache, model, seed) for model, seed in jobs]]


def improved_cd_aurocs(run_dir: Path, cache: Path) -> dict:
    """The improved-CD model's −E(x) AUROCs and its checkpoint's step, measured on a copy of its
    run folder (``ebmkit eval`` writes into the folder it evaluates)."""
    from ebmkit._engine.checkpoint import find_checkpoint, read_meta

    copy = cache / f"improved_cd-{hashlib.sha1(str(run_dir.resolve()).encode()).hexdigest()[:10]}.run"
    if copy.exists():
        shutil.rmtree(copy)
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("*.png", "metrics.jsonl"))
    return {"step": int(read_meta(find_checkpoint(copy))["step"]), "auroc": ood_aurocs(copy, "energy")}


def spread(values: list[float], digits: int = 3) -> str:
    mean = statistics.mean(values)
    return f"{mean:.{digits}f}" + (f" ({min(values):.{digits}f}–{max(values):.{digits}f})" if len(values) > 1 else "")


def summary_table(results: list[dict], improved_cd: dict | None) -> str:
    """Accuracy, ECE and the AUROC per OOD set of each model and score: the mean over seeds (range)."""
    rows = ["| model | OOD score | test accuracy | ECE | " + " | ".join(OOD_LABELS) + " |", "|---|---|---|---|" + "---|" * len(OOD_LABELS)]
    for model in MODELS:
        runs = [r for r in results if r["model"] == model]
        if not runs:
            continue
        accuracy, ece = spread([r["accuracy"] for r in runs]), spread([r["ece"] for r in runs])
        for score, named in SCORES.items():
            named = named if model == "JEM" else CLASSIFIER_SCORES[score]
            aurocs = [spread([r["auroc"][score][label] for r in runs]) for label in OOD_LABELS]
            rows.append(f"| {model} | {named} | {accuracy} | {ece} | " + " | ".join(aurocs) + " |")
    if improved_cd is not None:
        rows.append(f"| improved CD (improved_cd_digits.toml, {improved_cd['step']:,} updates) | −E(x) | – | – | "
                    + " | ".join(f"{improved_cd['auroc'][label]:.3f}" for label in OOD_LABELS) + " |")
    return "\n".join(rows)


def every_run(results: list[dict]) -> str:
    rows = ["| model | seed | updates | train s | test accuracy | ECE | mean confidence | test cross-entropy | score | "
            + " | ".join(OOD_LABELS) + " |", "|---|---|---|---|---|---|---|---|---|" + "---|" * len(OOD_LABELS)]
    for r in results:
        for score in SCORES:
            rows.append(f"| {r['model']} | {r['seed']} | {r['updates']} | {r['train_s']:.0f} | {r['accuracy']:.3f} | {r['ece']:.3f} | "
                        f"{r['confidence']:.3f} | {r['cross_entropy']:.3f} | {score} | "
                        + " | ".join(f"{r['auroc'][score][label]:.3f}" for label in OOD_LABELS) + " |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--improved-cd", type=Path, default=None, help="a run folder of recipes/improved_cd_digits.toml, scored too")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once, one thread each")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--docs", type=Path, default=None, help="also copy JEM's sample grid to DOCS/images/jem_digits_samples.png")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "ebmkit_jem_digits")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    args.cache.mkdir(parents=True, exist_ok=True)
    jobs = [(model, seed) for seed in args.seeds for model in MODELS]
    print(f"{len(jobs)} runs of {RECIPE.name}, {args.jobs} at a time", flush=True)
    results = run_all(jobs, args.cache, args.jobs)
    improved_cd = improved_cd_aurocs(args.improved_cd, args.cache) if args.improved_cd is not None else None
    command = f"python benchmarks/jem_digits.py --seeds {' '.join(map(str, args.seeds))} --jobs {args.jobs}" + (
        " --improved-cd RUN_DIR" if improved_cd is not None else "") + (" --docs docs" if args.docs is not None else "")
    improved = " (RUN_DIR: a run of `ebmkit run recipes/improved_cd_digits.toml`)" if improved_cd is not None else ""
    header = (f"`{command}`{improved}. Seeds {', '.join(map(str, args.seeds))}; one CPU thread per run, {args.jobs} at a "
              "time. EMA weights. In-distribution: the digits test split (360 images); AUROC: P(score of a test digit > "
              "score of an OOD image), ties counting one half.")
    text = f"{header}\n\nMean over seeds (range):\n\n{summary_table(results, improved_cd)}\n\nEvery run:\n\n{every_run(results)}\n"
    (args.out / "jem_digits.md").write_text(text)
    print(f"{text}\nwrote {args.out / 'jem_digits.md'}")
    if args.docs is not None:
        (args.docs / "images").mkdir(parents=True, exist_ok=True)
        first = next(r for r in results if r["model"] == "JEM" and r["seed"] == args.seeds[0])
        shutil.copy2(first["grid"], args.docs / "images" / "jem_digits_samples.png")
        print(f"copied JEM's seed-{args.seeds[0]} sample grid to {args.docs / 'images' / 'jem_digits_samples.png'}")


if __name__ == "__main__":
    main()
