"""ebmkit's RBMs against scikit-learn's BernoulliRBM on binarised real digits, scored exactly.

scikit-learn's 1,797 8x8 digits, binarised (pixel count >= 8 of 16: 64 binary visible units),
train split (1,437) to train, test split (360) to score. Every trainer gets the same hidden
units, epochs, batch size and initialisation scale, plain SGD (no momentum, no weight decay, as
scikit-learn's), and each its best learning rate from the same grid (chosen on seed 0):

- ebmkit CD-1 and CD-10 (``recipes/rbm_digits_cd1.toml``: chains start at the data batch),
- ebmkit PCD-1 (``recipes/rbm_digits_pcd.toml``: persistent chains, one sweep per update),
- scikit-learn's ``BernoulliRBM`` (persistent CD-1 in numpy).

With 16 and 20 hidden units the held-out log-likelihood is exact (log Z sums over every hidden
state), and AIS is checked against it; with 64 and 500 it is AIS's. Training time is each
side's own: ebmkit's ``train_s`` (its updates, not setup or writing the run folder) and
scikit-learn's ``fit``.

    python benchmarks/rbm_digits.py [--epochs 20] [--seeds 0 1 2] [--hidden 16 20 64 500]

Each result is cached in ``--cache``, so an interrupted run continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import time
from pathlib import Path

import torch

RECIPES = Path(__file__).resolve().parent.parent / "recipes"
BATCH_SIZE = 10  # scikit-learn's default
LEARNING_RATES = (0.01, 0.03, 0.1, 0.3)
EXACT_HIDDEN = (16, 20)
AIS_HIDDEN = (64, 500)
AIS_CHAINS, AIS_BETAS = 100, 5000

#: Table label -> (recipe, overrides); None: scikit-learn.
TRAINERS: dict[str, tuple[str, list[str]] | None] = {
    "ebmkit CD-1": ("rbm_digits_cd1.toml", []),
    "ebmkit CD-10": ("rbm_digits_cd1.toml", ["sampler.steps=10"]),
    "ebmkit PCD-1": ("rbm_digits_pcd.toml", []),
    "scikit-learn BernoulliRBM (PCD-1)": None,
}


def digits_split(split: str) -> torch.Tensor:
    """The binarised digits of one split, flattened: (n, 64) of 0/1."""
    from ebmkit._host.data import stack_samples
    from ebmkit.plugins.images.digits import Digits

    data = Digits(split=split, binarize=True)
    return stack_samples(data, range(len(data)))[0].flatten(1).double()


def updates_for(epochs: int, n: int) -> int:
    return epochs * math.ceil(n / BATCH_SIZE)


def train_ebmkit(recipe: str, overrides: list[str], hidden: int, lr: float, epochs: int, seed: int, out: Path):
    """One ebmkit run; returns the trained RBM and its training seconds."""
    from rich.console import Console

    import ebmkit
    from ebmkit._engine.loop import train
    from ebmkit._recipes.recipe import load

    settings = [f"run.seed={seed}", "run.threads=1", f"energy.hidden={hidden}", f"optim.lr={lr}",
                f"train.steps={updates_for(epochs, 1437)}", f"train.batch_size={BATCH_SIZE}", "train.log_every=1000",
                "train.checkpoint_every=0", "evaluators=[]", *overrides]
    result = train(load(RECIPES / recipe, settings), out, console=Console(quiet=True), live=False)
    return ebmkit.load(out, ema=False), float(result.metrics["train_s"])


def train_sklearn(train: torch.Tensor, hidden: int, lr: float, epochs: int, seed: int):
    """scikit-learn's BernoulliRBM, read into an ebmkit RBM (W = components_ᵀ) to be scored the same way."""
    from sklearn.neural_network import BernoulliRBM

    from ebmkit.plugins.rbm.rbm import BinaryRBM

    model = BernoulliRBM(n_components=hidden, learning_rate=lr, batch_size=BATCH_SIZE, n_iter=epochs, random_state=seed)
    start = time.perf_counter()
    model.fit(train.numpy())
    seconds = time.perf_counter() - start
    return as_ebmkit_rbm(model, BinaryRBM), seconds


def as_ebmkit_rbm(model, rbm_class):
    """An ebmkit RBM with a fitted BernoulliRBM's weights and biases (float64)."""
    rbm = rbm_class(hidden=model.n_components, data_shape=(model.components_.shape[1],)).double()
    with torch.no_grad():
        rbm.weight.copy_(torch.from_numpy(model.components_.T))
        rbm.hidden_bias.copy_(torch.from_numpy(model.intercept_hidden_))
        rbm.visible_bias.copy_(torch.from_numpy(model.intercept_visible_))
    return rbm


def held_out_log_likelihood(rbm, test: torch.Tensor, seed: int) -> dict:
    """Mean log p(v) over the test split: exact when the hidden layer can be enumerated (with
    AIS beside it), else AIS's."""
    from ebmkit.plugins.rbm.likelihood import MAX_ENUMERATED, ais_log_z, exact_log_z

    rbm = rbm.double()
    with torch.no_grad():
        mean_neg_free = float((-rbm(test)).mean())
    start = time.perf_counter()
    ais = ais_log_z(rbm, chains=AIS_CHAINS, betas=AIS_BETAS, generator=torch.Generator().manual_seed(seed))
    scored = {"ais_ll": mean_neg_free - ais, "ais_s": time.perf_counter() - start}
    if rbm.num_hidden <= MAX_ENUMERATED:
        scored["exact_ll"] = mean_neg_free - exact_log_z(rbm)
    scored["ll"] = scored.get("exact_ll", scored["ais_ll"])
    return scored


def run_one(trainer: str, hidden: int, lr: float, epochs: int, seed: int, cache: Path) -> dict:
    """Train one model and score it (cached by what it sets)."""
    record = cache / f"{trainer.split()[0]}-{trainer.split()[1]}-h{hidden}-lr{lr:g}-e{epochs}-s{seed}.json"
    if record.exists():
        return json.loads(record.read_text())
    torch.manual_seed(seed)
    train, test = digits_split("train"), digits_split("test")
    spec = TRAINERS[trainer]
    if spec is None:
        rbm, seconds = train_sklearn(train, hidden, lr, epochs, seed)
    else:
        folder = cache / record.stem
        if folder.exists():
            shutil.rmtree(folder)
        rbm, seconds = train_ebmkit(*spec, hidden, lr, epochs, seed, folder)
    result = {"trainer": trainer, "hidden": hidden, "lr": lr, "epochs": epochs, "seed": seed, "train_s": seconds,
              **held_out_log_likelihood(rbm, test, seed)}
    record.write_text(json.dumps(result))
    return result


def spread(values: list[float], digits: int = 2) -> str:
    mean = statistics.mean(values)
    return f"{mean:.{digits}f}" + (f" ({min(values):.{digits}f} to {max(values):.{digits}f})" if len(values) > 1 else "")


def tables(results: list[dict], seeds: list[int]) -> str:
    out = []
    for hidden in (*EXACT_HIDDEN, *AIS_HIDDEN):
        exact = hidden in EXACT_HIDDEN
        rows = [r for r in results if r["hidden"] == hidden]
        out += [f"### {hidden} hidden units ({'exact log Z' if exact else f'AIS, {AIS_CHAINS} chains, {AIS_BETAS} temperatures'})", ""]
        out += ["| trainer | best lr | held-out log-likelihood, nats | AIS − exact | training s |", "|---|---|---|---|---|"]
        for trainer in TRAINERS:
            lr = best_lr(rows, trainer, seeds[0])
            best = [r for r in rows if r["trainer"] == trainer and r["lr"] == lr]
            gap = spread([r["ais_ll"] - r["exact_ll"] for r in best], 3) if exact else "—"
            out.append(f"| {trainer} | {lr:g} | {spread([r['ll'] for r in best])} | {gap} | {spread([r['train_s'] for r in best], 1)} |")
        out += ["", "Every learning rate, seed " + str(seeds[0]) + ":", "",
                "| trainer | " + " | ".join(f"lr {lr:g}" for lr in LEARNING_RATES) + " |", "|---" * (len(LEARNING_RATES) + 1) + "|"]
        for trainer in TRAINERS:
            cells = []
            for lr in LEARNING_RATES:
                found = [r["ll"] for r in rows if r["trainer"] == trainer and r["lr"] == lr and r["seed"] == seeds[0]]
                cells.append(f"{found[0]:.2f}" if found else "")
            out.append(f"| {trainer} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def best_lr(rows: list[dict], trainer: str, seed: int) -> float:
    tried = [r for r in rows if r["trainer"] == trainer and r["seed"] == seed]
    return max(tried, key=lambda r: r["ll"])["lr"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--hidden", type=int, nargs="+", default=[*EXACT_HIDDEN, *AIS_HIDDEN])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--cache", type=Path, default=Path("/tmp/ebmkit_rbm_digits"))
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    args.cache.mkdir(parents=True, exist_ok=True)
    results = []
    for hidden in args.hidden:
        for trainer in TRAINERS:
            grid = [run_one(trainer, hidden, lr, args.epochs, args.seeds[0], args.cache) for lr in LEARNING_RATES]
            results += grid
            lr = max(grid, key=lambda r: r["ll"])["lr"]
            results += [run_one(trainer, hidden, lr, args.epochs, seed, args.cache) for seed in args.seeds[1:]]
            print(f"{hidden} hidden, {trainer}: best lr {lr:g}, held-out LL {max(r['ll'] for r in grid):.3f}", flush=True)
    header = (f"{args.epochs} epochs of the 1,437 train digits, batch {BATCH_SIZE} ({updates_for(args.epochs, 1437)} updates), "
              f"initial weights N(0, 0.01²), plain SGD; best learning rate of {', '.join(f'{lr:g}' for lr in LEARNING_RATES)} "
              f"on seed {args.seeds[0]}, then seeds {' '.join(map(str, args.seeds))} at it (mean, range). Held-out: the 360 "
              "test digits. One CPU thread.")
    text = f"{header}\n\n{tables(results, args.seeds)}"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "rbm_digits.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
