"""The entropy term under the two push orders: the Improved-CD reference's (new samples enter the
replay buffer before the losses) against pushing after the optimizer step.

Trains recipes/improved_cd_shapes.toml (uint8 reservoir buffer with augmented draws, as the
reference's) twice with the same seed, once per ``[train].push_negatives``, logging every update,
and prints when the entropy term switches on, its log nearest-neighbour distance around then and
late in the run, and how often its reference set holds a sample of the current batch:

    python benchmarks/push_order.py [--steps 150] [--set data.image_size=16 ...]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import torch
from rich.console import Console

from ebmkit._engine.loop import train
from ebmkit._recipes.recipe import load

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "improved_cd_shapes.toml"
KEY = "nn_entropy/log_nn_distance"


def own_sample_probability(size: int, batch: int, offered: int, references: int) -> float:
    """P(at least one of ``references`` uniform draws from a reservoir of ``size`` is a sample of
    the batch just offered): the batch's samples present in it number ``batch`` while filling,
    then ``batch · size / offered`` on average."""
    present = batch if offered <= size else batch * size / offered
    return 1 - (1 - present / size) ** references


def run(order: str, steps: int, overrides: list[str], folder: Path) -> list[dict]:
    settings = [f"train.steps={steps}", "train.log_every=1", "evaluators=[]", f"train.push_negatives={order}", *overrides]
    train(load(RECIPE, settings), folder / order, console=Console(quiet=True), live=False)
    return [json.loads(line) for line in (folder / order / "metrics.jsonl").read_text().splitlines()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--set", dest="overrides", action="append", default=["data.image_size=16", "sampler.steps=10"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    recipe = load(RECIPE, args.overrides)
    batch = recipe.train.batch_size
    entropy = next(spec for spec in recipe.many("losses") if spec.entry.name == "nn_entropy")
    min_buffer, references = entropy.values["min_buffer"], entropy.values["num_reference"]
    print(f"{RECIPE.name} {' '.join(args.overrides)}: batch {batch}, min_buffer {min_buffer}, {references} reference samples")
    with tempfile.TemporaryDirectory() as tmp:
        for order in ("before_losses", "after_step"):
            rows = [r for r in run(order, args.steps, args.overrides, Path(tmp)) if KEY in r or "nn_entropy/active" in r]
            active = [r for r in rows if r.get("nn_entropy/active") == 1.0]
            first = active[0]["step"]
            # before the losses the buffer already holds this update's batch
            held = first * batch if order == "before_losses" else (first - 1) * batch
            early = [r[KEY] for r in active[:10]]
            late = [r[KEY] for r in active[-50:]]
            share = own_sample_probability(held, batch, held, references) if order == "before_losses" else 0.0
            end = rows[-1]["step"] * batch
            capacity = recipe.one("buffer").values["capacity"]
            late_share = own_sample_probability(min(end, capacity), batch, end, references) if order == "before_losses" else 0.0
            print(f"{order}: first active at update {first}; log NN distance, first 10 active updates "
                  f"{statistics.mean(early):.3f} (first {early[0]:.3f}), last 50 {statistics.mean(late):.3f}; "
                  f"P(reference set holds a sample of the batch) {share:.2f} at the first active update, "
                  f"{late_share:.2f} at update {rows[-1]['step']}")


if __name__ == "__main__":
    main()
