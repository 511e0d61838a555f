"""What a checkpoint costs, held against a training update of the same run, side by side.

The CIFAR-10 improved-CD recipe (ResNet energy of width 64, multi-scale, self-attention; a
reservoir buffer of 10 000 uint8 images, filled before measuring), on the shipped shapes data
at 32 px as a stand-in for the CIFAR-10 files, with a reduced batch and sampler on this CPU.
Rounds interleave one update and one checkpoint; the report gives the medians, their ratio,
the share of training time a checkpoint every ``checkpoint_every`` updates adds, and the
checkpoint's size.

    .venv/bin/python benchmarks/bench_checkpoint.py [--device cuda] [--batch 16] [--steps 5]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from ebmkit._engine.checkpoint import save_checkpoint
from ebmkit._engine.loop import Trainer
from ebmkit._recipes.recipe import load
from ebmkit._engine.run import setup

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=5, help="Langevin steps per update")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    overrides = [
        'data={name = "shapes", image_size = 32, size = 512}', f"run.device={args.device!r}", "evaluators=[]",
        f"train.batch_size={args.batch}", f"sampler.steps={args.steps}", "losses[3].min_buffer=0",
    ]
    recipe = load(ROOT / "recipes/improved_cd_cifar10.toml", overrides)
    with tempfile.TemporaryDirectory() as folder:
        run = setup(recipe, Path(folder), live=False)
        trainer, buffer = Trainer(run), run.components.buffer
        while len(buffer) < buffer.capacity:  # a full buffer, as after the first few hundred updates
            buffer.push(torch.rand(1000, *run.components.dataset.sample_shape, device=run.device))
        trainer.update()  # warm-up
        updates, checkpoints = [], []
        for _ in range(args.rounds):
            started = time.perf_counter()
            trainer.update()
            updates.append(time.perf_counter() - started)
            started = time.perf_counter()
            written = save_checkpoint(run)
            checkpoints.append(time.perf_counter() - started)
        size = sum(f.stat().st_size for f in written.iterdir())
    update, checkpoint = statistics.median(updates), statistics.median(checkpoints)
    every = recipe.train.checkpoint_every
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, device {args.device}, "
          f"torch {torch.__version__}")
    print(f"update (batch {args.batch}, {args.steps} Langevin steps): median {update * 1e3:.0f} ms (min {min(updates) * 1e3:.0f})")
    print(f"checkpoint ({size / 2**20:.1f} MiB: weights, EMA, Adam moments, 10 000-image buffer): "
          f"median {checkpoint * 1e3:.0f} ms (min {min(checkpoints) * 1e3:.0f})")
    print(f"checkpoint / update = {checkpoint / update:.2f}; one every {every} updates adds "
          f"{100 * checkpoint / (every * update):.3f}% to training time")


if __name__ == "__main__":
    main()
