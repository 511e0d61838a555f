"""Intra-op threads for small and larger energies: updates per second at 1 and 2 threads, side by side.

Runs the training loop of a recipe for a few updates at each thread count, interleaved over
rounds, and reports the median rate and the ratio. With --busy, a single-threaded process keeps
one core busy meanwhile (a shared machine). This is what [run].threads' default rests on
(ebmkit/_engine/run.py: SMALL_ENERGY_PARAMETERS).

    .venv/bin/python benchmarks/bench_threads.py --busy
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from ebmkit._engine.loop import Trainer
from ebmkit._recipes.recipe import load
from ebmkit._engine.run import setup

ROOT = Path(__file__).resolve().parent.parent
CASES = {
    "quickstart (MLP, 33.5 k parameters)": (ROOT / "recipes/quickstart.toml", ["evaluators=[]", "data.size=4096"]),
    "improved_cd_shapes (resnet_ebm width 16, 0.42 M)": (ROOT / "recipes/improved_cd_shapes.toml", ["evaluators=[]", "data.size=256"]),
    "improved_cd_shapes (resnet_ebm width 64, 6.6 M)": (ROOT / "recipes/improved_cd_shapes.toml", ["evaluators=[]", "data.size=256", "energy.width=64"]),
}


def rate(path: Path, overrides: list[str], threads: int, updates: int) -> float:
    with tempfile.TemporaryDirectory() as folder:
        trainer = Trainer(setup(load(path, [*overrides, f"run.threads={threads}"]), Path(folder), live=False))
        trainer.update()  # warm-up
        started = time.perf_counter()
        for _ in range(updates):
            trainer.update()
        return updates / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--busy", action="store_true", help="keep one core busy with another process")
    args = parser.parse_args()
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if args.busy else None
    try:
        for name, (path, overrides) in CASES.items():
            updates = 30 if "quickstart" in name else 3
            rates: dict[int, list[float]] = {1: [], 2: []}
            for _ in range(args.rounds):
                for threads in (1, 2):
                    rates[threads].append(rate(path, overrides, threads, updates))
            one, two = statistics.median(rates[1]), statistics.median(rates[2])
            print(f"{name}: 1 thread {one:.2f} it/s, 2 threads {two:.2f} it/s, 1-thread/2-thread = {one / two:.2f}x"
                  f"{' (one core busy)' if args.busy else ''}", flush=True)
    finally:
        if busy is not None:
            busy.kill()
        torch.set_num_threads(torch.get_num_threads())


if __name__ == "__main__":
    main()
