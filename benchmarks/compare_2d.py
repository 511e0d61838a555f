"""Every training method on every 2-D density, each for the same training time, with several seeds.

Every method is a shipped recipe, trained on each density until ``--budget`` seconds of
training (evaluations not counted: ``[train].time_limit_s``). The exact grid KL(data||model)
and NLL are measured every 100 updates on the EMA weights, with nothing sampled (the density
normalised on a 100x100 grid over [-4, 4]^2). Writes a Markdown table (mean and range over
seeds, and every run), the KL-against-time curves and the learned densities:

    python benchmarks/compare_2d.py [--budget 40] [--densities all] [--seeds 0 1] [--out benchmarks/results] [--docs docs]

Each finished run is kept in ``--cache`` (its metrics and its learned density), so an interrupted
comparison continues where it stopped; ``--fresh`` starts over. Runs are sequential on a shared
machine: a run can be slowed by other load, so compare budgets rather than single seconds, and
read the spread over seeds.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
from pathlib import Path

import torch
from rich.console import Console
from safetensors.torch import load_file, save_file

import ebmkit
from ebmkit._recipes.recipe import load
from ebmkit._engine.loop import train
from ebmkit.plugins.toy.densities import DENSITIES, Grid
from ebmkit.plugins.toy.density2d import energies

from phases import FIRST_PHASE_SHARE, first_phase, train_first_phase

RECIPES = Path(__file__).resolve().parent.parent / "recipes"

#: Table label -> recipe. The recipes are written for 8 Gaussians; other densities swap [data].name.
METHODS = {
    "CD-10 from data": "cd_8gaussians.toml",
    "PCD (replay buffer)": "quickstart.toml",
    "PCD + parallel tempering": "pcd_tempering_8gaussians.toml",
    "improved CD": "improved_cd_8gaussians.toml",
    "DCD-A (recovery Langevin)": "dcd_recovery_8gaussians.toml",
    "DCD-B (MCMC-free)": "dcd_8gaussians.toml",
    "energy discrepancy": "energy_discrepancy_8gaussians.toml",
    "denoising score matching": "dsm_8gaussians.toml",
    "sliced score matching": "ssm_8gaussians.toml",
    "NCE": "nce_8gaussians.toml",
    "Energy Matching": "energy_matching_8gaussians.toml",
}


def run_method(recipe_file: str, density: str, budget: float, seed: int, out_dir: Path) -> dict:
    """Train one recipe for ``budget`` seconds; a recipe that starts from another run (Energy
    Matching's second phase) trains that run first, within the same budget."""
    overrides = [
        f"data.name={density}",
        f"run.seed={seed}",
        "train.steps=100000000",
        "train.log_every=100",
        'evaluators=[{name = "density2d", every = 100, plot = false}]',
    ]
    first, updates, curve, offset = first_phase(RECIPES / recipe_file), 0, [], 0.0
    if first is not None:
        share = FIRST_PHASE_SHARE[recipe_file]
        warmup, start = train_first_phase(first, [*overrides, f"train.time_limit_s={budget * share}"], out_dir)
        updates, curve, offset = int(warmup["updates"]), kl_curve(out_dir / "first"), warmup["train_s"]
        overrides.append(start)
        budget -= offset
    recipe = load(RECIPES / recipe_file, [*overrides, f"train.time_limit_s={budget}"])
    final = train(recipe, out_dir, console=Console(quiet=True), live=False).metrics  # the latest value of each
    curve += [(offset + t, kl) for t, kl in kl_curve(out_dir)]
    return {
        "updates": updates + int(final["updates"]), "train_s": offset + final["train_s"], "kl": final["density2d/grid_kl"],
        "nll": final["density2d/grid_nll"], "nll_true": final["density2d/grid_nll_true"], "curve": curve,
        "density": model_density(ebmkit.load(out_dir), Grid()),
    }


def kl_curve(run: Path) -> list[tuple[float, float]]:
    """The grid KL a run logged, against its training seconds."""
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train_s = {line["step"]: line["train_s"] for line in lines if "train_s" in line}
    return [(train_s.get(line["step"], 0.0), line["density2d/grid_kl"]) for line in lines if "density2d/grid_kl" in line]


def model_density(energy, grid: Grid) -> torch.Tensor:
    e = energies(energy, grid.centers(), torch.device("cpu"))
    return torch.softmax(-e, 0).reshape(grid.bins, grid.bins)


def write_figure(results: dict, densities: list[str], seed: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = Grid()
    methods = [m for m in METHODS if all((d, m, seed) in results for d in densities)]
    columns = 2 + len(methods)
    fig, axes = plt.subplots(len(densities), columns, figsize=(2.3 * columns, 2.4 * len(densities)), squeeze=False)
    extent = (grid.low, grid.high, grid.low, grid.high)
    for row, density in enumerate(densities):
        axes[row, 0].imshow(DENSITIES[density].grid_log_mass(grid).exp().reshape(grid.bins, grid.bins), origin="lower", extent=extent)
        axes[row, 0].set_title(f"{density}: data", fontsize=8)
        for col, method in enumerate(methods, start=1):
            r = results[(density, method, seed)]
            axes[row, col].imshow(r["density"], origin="lower", extent=extent)
            axes[row, col].set_title(f"{method}\nKL {r['kl']:.3f}", fontsize=7)
        ax = axes[row, -1]
        for method in methods:
            times, kls = zip(*results[(density, method, seed)]["curve"], strict=True)
            ax.plot(times, kls, label=method)
        ax.set_yscale("log")
        ax.set_xlabel("training time (s)", fontsize=7)
        ax.set_ylabel("grid KL", fontsize=7)
        ax.set_title(f"exact grid KL(data||model), seed {seed}", fontsize=8)
        if row == 0:
            ax.legend(fontsize=5)
        for ax in axes[row, :-1]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def cached_run(cache: Path, density: str, method: str, seed: int, budget: float) -> dict:
    """A run's results, from the cache when it was made with the same budget."""
    stem = cache / f"{density}-{METHODS[method].removesuffix('.toml')}-{seed}"
    record, grid = stem.with_suffix(".json"), stem.with_suffix(".safetensors")
    if record.exists() and grid.exists():
        r = json.loads(record.read_text())
        if r.get("budget") == budget:
            return {**r, "density": load_file(grid)["density"]}
    folder = stem.parent / f"{stem.name}.run"
    if folder.exists():  # an interrupted run: start it again
        shutil.rmtree(folder)
    r = run_method(METHODS[method], density, budget, seed, folder)
    save_file({"density": r["density"].contiguous()}, grid)
    record.write_text(json.dumps({k: v for k, v in r.items() if k != "density"} | {"budget": budget}))
    return r


def summary_table(results: dict, densities: list[str], seeds: list[int]) -> str:
    """Grid KL per density (rows) and method (columns): the mean over seeds, and the range."""
    methods = list(METHODS)
    rows = ["| density | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    for density in densities:
        cells = []
        kls = {m: [results[(density, m, s)]["kl"] for s in seeds if (density, m, s) in results] for m in methods}
        best = min((statistics.mean(v) for v in kls.values() if v), default=None)
        for method in methods:
            values = kls[method]
            if not values:
                cells.append("–")
                continue
            mean = statistics.mean(values)
            cell = f"{mean:.3f}" + (f" ({min(values):.3f}–{max(values):.3f})" if len(values) > 1 else "")
            cells.append(f"**{cell}**" if mean == best else cell)
        rows.append(f"| {density} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=40.0, help="training seconds per run")
    parser.add_argument("--densities", nargs="+", default=["all"], help="density names, or all")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--methods", nargs="+", default=None, help="a subset of the methods, by label")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--docs", type=Path, default=None, help="also write DOCS/compare_2d.md and DOCS/images/compare_2d.png")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/ebmkit_compare_2d"))
    parser.add_argument("--fresh", action="store_true", help="ignore runs kept in --cache")
    args = parser.parse_args()
    densities = sorted(DENSITIES) if args.densities == ["all"] else args.densities
    methods = args.methods or list(METHODS)
    args.out.mkdir(parents=True, exist_ok=True)
    args.cache.mkdir(parents=True, exist_ok=True)
    if args.fresh:
        for old in args.cache.glob("*"):
            if old.is_file():
                old.unlink()
    threads = torch.get_num_threads()
    print(f"torch {torch.__version__}, {threads} threads, budget {args.budget:g} s of training per run")

    rows = ["| density | method | seed | updates | updates/s | grid KL | grid NLL (true) |", "|---|---|---|---|---|---|---|"]
    results: dict = {}
    for density in densities:
        for seed in args.seeds:
            for method in methods:
                r = cached_run(args.cache, density, method, seed, args.budget)
                results[(density, method, seed)] = r
                row = (f"| {density} | {method} | {seed} | {r['updates']} | {r['updates'] / r['train_s']:.0f} | "
                       f"{r['kl']:.4f} | {r['nll']:.3f} ({r['nll_true']:.3f}) |")
                rows.append(row)
                print(row, flush=True)
    header = (f"Budget: {args.budget:g} s of training per run, seeds {', '.join(map(str, args.seeds))} "
              f"(torch {torch.__version__}, {threads} threads).")
    summary = summary_table(results, densities, args.seeds)
    full = "\n".join(rows)
    (args.out / "compare_2d.md").write_text(f"{header}\n\nGrid KL, mean over seeds (range):\n\n{summary}\n\nEvery run:\n\n{full}\n")
    write_figure(results, densities, args.seeds[-1], args.out / "compare_2d.png")
    print(f"wrote {args.out / 'compare_2d.md'} and {args.out / 'compare_2d.png'}")
    if args.docs is not None:
        (args.docs / "images").mkdir(parents=True, exist_ok=True)
        write_figure(results, densities, args.seeds[-1], args.docs / "images" / "compare_2d.png")
        command = "python benchmarks/compare_2d.py " + " ".join(
            [f"--budget {args.budget:g}", "--seeds " + " ".join(map(str, args.seeds)), "--docs docs"]
            + ([] if args.densities == ["all"] else ["--densities " + " ".join(densities)])
        )
        page = DOCS_PAGE.format(header=header, command=command, summary=summary, full=full)
        (args.docs / "compare_2d.md").write_text(page)
        print(f"wrote {args.docs / 'compare_2d.md'}")


DOCS_PAGE = """# Training methods compared on the 2-D densities

<!-- generated by benchmarks/compare_2d.py; do not edit by hand -->

Every training method ebmkit ships that learns an unlabelled density, each trained from its
shipped 8-Gaussians recipe (with `[data].name` swapped) on each of the seven 2-D densities for
the same training time, with two seeds. The score is the exact grid KL(data‖model): the model's
density normalised on a 100×100 grid over [−4, 4]², against the true density's mass on the same
grid, on the EMA weights, with nothing sampled. Parallel tempering, a sampler, appears as the
quickstart's persistent CD with its chains tempered (docs/tempering.md). JEM is not here: it
needs labels, and the 2-D densities have none; on unlabelled data its generative term is CD on
the marginal energy, which the CD rows already show (docs/jem.md). Energy Matching trains its two
phases within the one budget, a third for the flow-matching warm-up and the rest for the
contrastive phase that starts from it (benchmarks/phases.py); its updates count both, and its
curve starts with the warm-up, whose density is not yet the data's (docs/energy_matching.md).

```bash
{command}
```

{header} The machine is a shared 2-core CPU: a run slowed by other load trains fewer updates in
its budget, so read the updates column and the spread over seeds before a small difference.

## Grid KL, mean over seeds (range); the lowest per density in bold

{summary}

![learned densities (last seed) and KL against training time](images/compare_2d.png)

## Every run

{full}
"""


if __name__ == "__main__":
    main()
