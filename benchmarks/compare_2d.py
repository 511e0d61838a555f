"""CD, persistent CD, improved CD and DCD on the same 2-D densities, each for the same training time.

Every method is a shipped recipe, trained on each density until ``--budget`` seconds of
training (evaluations not counted: ``[train].time_limit_s``). The exact grid KL(data||model)
and NLL are measured every 100 updates on the EMA weights, with nothing sampled (the density
normalised on a 100x100 grid over [-4, 4]^2). Writes a Markdown table, the KL-against-time
curves and the learned densities:

    python benchmarks/compare_2d.py [--budget 40] [--densities 8gaussians rings] [--out benchmarks/results]

Runs are sequential on a shared machine: a method's run can be slowed by other load, so
compare budgets rather than single seconds, and repeat with ``--seeds`` to see the spread.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch
from rich.console import Console

import ebmkit
from ebmkit.recipe import load
from ebmkit.loop import train
from ebmkit_toy.densities import DENSITIES, Grid
from ebmkit_toy.density2d import energies

RECIPES = Path(__file__).resolve().parent.parent / "recipes"

#: Table label -> recipe. The recipes are written for 8 Gaussians; other densities swap [data].name.
METHODS = {
    "CD-10 from data": "cd_8gaussians.toml",
    "PCD (replay buffer)": "quickstart.toml",
    "improved CD": "improved_cd_8gaussians.toml",
    "DCD-A (recovery Langevin)": "dcd_recovery_8gaussians.toml",
    "DCD-B (MCMC-free)": "dcd_8gaussians.toml",
}


def run_method(recipe_file: str, density: str, budget: float, seed: int, out_dir: Path) -> dict:
    overrides = [
        f"data.name={density}",
        f"run.seed={seed}",
        "train.steps=100000000",
        f"train.time_limit_s={budget}",
        "train.log_every=100",
        'evaluators=[{name = "density2d", every = 100, plot = false}]',
    ]
    recipe = load(RECIPES / recipe_file, overrides)
    final = train(recipe, out_dir, console=Console(quiet=True), live=False).metrics  # the latest value of each
    lines = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    train_s = {line["step"]: line["train_s"] for line in lines if "train_s" in line}
    curve = [(train_s.get(line["step"], 0.0), line["density2d/grid_kl"]) for line in lines if "density2d/grid_kl" in line]
    return {
        "updates": int(final["updates"]), "train_s": final["train_s"], "kl": final["density2d/grid_kl"],
        "nll": final["density2d/grid_nll"], "nll_true": final["density2d/grid_nll_true"], "curve": curve,
        "energy": ebmkit.load(out_dir),
    }


def model_density(energy, grid: Grid) -> torch.Tensor:
    e = energies(energy, grid.centers(), torch.device("cpu"))
    return torch.softmax(-e, 0).reshape(grid.bins, grid.bins)


def write_figure(results: dict, densities: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = Grid()
    columns = 2 + len(METHODS)
    fig, axes = plt.subplots(len(densities), columns, figsize=(2.6 * columns, 2.7 * len(densities)), squeeze=False)
    extent = (grid.low, grid.high, grid.low, grid.high)
    for row, density in enumerate(densities):
        axes[row, 0].imshow(DENSITIES[density].grid_log_mass(grid).exp().reshape(grid.bins, grid.bins), origin="lower", extent=extent)
        axes[row, 0].set_title(f"{density}: data", fontsize=9)
        for col, method in enumerate(METHODS, start=1):
            r = results[density][method]
            axes[row, col].imshow(model_density(r["energy"], grid), origin="lower", extent=extent)
            axes[row, col].set_title(f"{method}\nKL {r['kl']:.3f}", fontsize=8)
        ax = axes[row, -1]
        for method in METHODS:
            times, kls = zip(*results[density][method]["curve"], strict=True)
            ax.plot(times, kls, label=method)
        ax.set_yscale("log")
        ax.set_xlabel("training time (s)", fontsize=8)
        ax.set_title("exact grid KL(data||model)", fontsize=9)
        if row == 0:
            ax.legend(fontsize=6)
        for ax in axes[row, :-1]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=40.0, help="training seconds per run")
    parser.add_argument("--densities", nargs="+", default=["8gaussians", "rings"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, budget {args.budget:g} s of training per run")

    rows = ["| density | method | seed | updates | updates/s | grid KL | grid NLL (true) |", "|---|---|---|---|---|---|---|"]
    results: dict = {}
    with tempfile.TemporaryDirectory() as scratch:
        for density in args.densities:
            results[density] = {}
            for seed in args.seeds:
                for method, recipe_file in METHODS.items():
                    r = run_method(recipe_file, density, args.budget, seed, Path(scratch) / f"{density}-{seed}-{recipe_file}")
                    results[density][method] = r  # the figure shows the last seed
                    row = (f"| {density} | {method} | {seed} | {r['updates']} | {r['updates'] / r['train_s']:.0f} | "
                           f"{r['kl']:.4f} | {r['nll']:.3f} ({r['nll_true']:.3f}) |")
                    rows.append(row)
                    print(row, flush=True)
    table = "\n".join(rows)
    (args.out / "compare_2d.md").write_text(
        f"Budget: {args.budget:g} s of training per run (torch {torch.__version__}, {torch.get_num_threads()} threads).\n\n{table}\n"
    )
    write_figure(results, args.densities, args.out / "compare_2d.png")
    print(f"wrote {args.out / 'compare_2d.md'} and {args.out / 'compare_2d.png'}")


if __name__ == "__main__":
    main()
