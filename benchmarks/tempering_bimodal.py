"""Parallel tempering against single chains on a two-mode target, at the same steps and at the same cost.

The target is a mixture of two unit Gaussians in 2-D at (−m, 0) and (+m, 0), m = 4.5 by default
(a barrier of about m²/2 ≈ 10 between them), with weights w and 1 − w. Every chain starts in the
mode at −m. A chain at temperature 1 crosses such a barrier about once in 10^4 time units, so a
single chain leaves the other mode empty; parallel tempering should put its weight, 1 − w, there.

Rows: the chain sampler with Langevin (noise unset: exact up to its step-size bias) and MALA, at
the parallel-tempering run's steps and at its number of energy gradients (steps × K); parallel
tempering at several ladders; and one "EBM-practice" Langevin row (an independent noise_std),
which does not sample E/T and so is not parallel tempering of the target. Cost is counted by an
energy wrapper: gradients (forward + backward) and forward-only evaluations (the swap rounds'),
per chain. Wall time is one CPU thread, and moves with the machine's load.

    python benchmarks/tempering_bimodal.py [--chains 2000] [--separation 4.5] [--weight 0.5] [--seed 0]
"""

from __future__ import annotations

import argparse
import time

import torch

import ebmkit
from ebmkit import Energy


class TwoModes(Energy):
    """−log(w N(x; −m e₁, I) + (1 − w) N(x; +m e₁, I)) + const."""

    def __init__(self, separation: float, weight: float, dim: int = 2):
        super().__init__()
        shift = torch.zeros(dim, dtype=torch.float64)
        shift[0] = separation
        self.register_buffer("shift", shift)
        self.register_buffer("log_w", torch.log(torch.tensor([weight, 1 - weight], dtype=torch.float64)))

    def forward(self, x, cond=None):
        start = (x + self.shift).pow(2).sum(1) / 2
        other = (x - self.shift).pow(2).sum(1) / 2
        return -torch.logsumexp(torch.stack([self.log_w[0] - start, self.log_w[1] - other]), 0)


class Counted(Energy):
    """Counts the samples the energy is evaluated on: with a gradient (a transition's) or without (a swap round's)."""

    def __init__(self, inner: Energy):
        super().__init__()
        self.inner = inner
        self.grads = 0
        self.forwards = 0

    def forward(self, x, cond=None):
        if x.requires_grad:
            self.grads += x.shape[0]
        else:
            self.forwards += x.shape[0]
        return self.inner(x, cond)


def run(target: Energy, chains: int, seed: int, separation: float, sampler: str, steps: int, transition: dict, **ladder) -> dict:
    energy = Counted(target)
    x0 = torch.randn(chains, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    x0[:, 0] -= separation
    started = time.perf_counter()
    params = {"transitions": [transition], **ladder}
    result = ebmkit.sample(energy, chains, x0=x0, sampler=sampler, steps=steps, seed=seed, return_result=True, **params)
    seconds = time.perf_counter() - started
    other = float((result.x[:, 0] > 0).double().mean())
    k = ladder.get("num_temperatures", 1)
    pairs = [float(result.trace[f"swap_rate_{i}_{i + 1}"].mean()) for i in range(k - 1)]
    return {"other": other, "start": 1 - other, "grads": energy.grads / chains, "forwards": energy.forwards / chains,
            "swap": float(result.trace["swap_rate"].mean()) if k > 1 else None, "pairs": pairs, "seconds": seconds,
            "accept": float(result.trace["accept"].mean()) if "accept" in result.trace else None}


def describe(transition: dict) -> str:
    extra = ", ".join(f"{k} {v:g}" for k, v in transition.items() if k != "name")
    return f"{transition['name']} ({extra})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chains", type=int, default=2000)
    parser.add_argument("--separation", type=float, default=4.5)
    parser.add_argument("--weight", type=float, default=0.5, help="the weight of the mode the chains start in")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    target = TwoModes(args.separation, args.weight)

    langevin = ({"name": "langevin", "step_size": 0.3}, 600)
    mala = ({"name": "mala", "step_size": 1.0}, 300)
    practice = ({"name": "langevin", "step_size": 0.3, "noise_std": 0.1}, 600)
    ladders = [(2, 50.0), (4, 50.0), (6, 50.0), (8, 50.0), (6, 10.0), (6, 3.0)]
    equal_cost_k = 6

    rows = []
    for transition, steps in (langevin, mala):
        rows.append(("chain", transition, steps, None, run(target, args.chains, args.seed, args.separation, "chain", steps, transition)))
        rows.append(("chain, equal gradients", transition, steps * equal_cost_k, None,
                     run(target, args.chains, args.seed, args.separation, "chain", steps * equal_cost_k, transition)))
        for k, t_max in ladders:
            ladder = {"num_temperatures": k, "max_temperature": t_max}
            rows.append(("parallel_tempering", transition, steps, (k, t_max),
                         run(target, args.chains, args.seed, args.separation, "parallel_tempering", steps, transition, **ladder)))
    transition, steps = practice
    ladder = {"num_temperatures": equal_cost_k, "max_temperature": 50.0}
    rows.append(("parallel_tempering", transition, steps, (equal_cost_k, 50.0),
                 run(target, args.chains, args.seed, args.separation, "parallel_tempering", steps, transition, **ladder)))

    print(f"Two unit Gaussians in 2-D at (±{args.separation:g}, 0), weight {args.weight:g} at the start mode (−) and "
          f"{1 - args.weight:g} at the other (+); {args.chains} chains, all started at the − mode; seed {args.seed}; "
          f"torch {torch.__version__}, {args.threads} CPU thread(s).\n")
    print("| sampler | transition | K, T_max | steps | gradients / chain | forwards / chain | mass at − (start) | mass at + (other) "
          "| MH accept | swap rate (mean) | swap rate per pair | wall s |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|")
    for name, transition, steps, ladder, r in rows:
        ladder_text = "—" if ladder is None else f"{ladder[0]}, {ladder[1]:g}"
        accept = "—" if r["accept"] is None else f"{r['accept']:.2f}"
        swap = "—" if r["swap"] is None else f"{r['swap']:.2f}"
        pairs = "—" if not r["pairs"] else " / ".join(f"{p:.2f}" for p in r["pairs"])
        print(f"| {name} | {describe(transition)} | {ladder_text} | {steps} | {r['grads']:.0f} | {r['forwards']:.0f} | "
              f"{r['start']:.3f} | {r['other']:.3f} | {accept} | {swap} | {pairs} | {r['seconds']:.1f} |")


if __name__ == "__main__":
    main()
