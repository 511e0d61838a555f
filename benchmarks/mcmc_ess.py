"""Effective sample size of unadjusted Langevin, MALA and HMC on a correlated Gaussian.

The target is a 2-D Gaussian N(0, Σ), Σ = [[1, ρ], [ρ, 1]] with ρ = 0.9 (precision
eigenvalues 0.53 and 10: a condition number of 19), written as ebmkit's own quadratic energy
with its mean and precision set to the truth. Each sampler runs ``--chains`` independent
chains from N(0, I) with the same budget of ``--budget`` energy gradients per chain
(Langevin takes 1 per step, MALA 2, HMC leapfrog_steps + 1), and the first ``--burn-in``
share of the steps is dropped. Per sampler the table gives the minimum bulk and tail ESS over
the coordinates (and the bulk ESS of the squared coordinates, x²) and the largest R-hat (ArviZ, through ``ebmkit.plugins.mcmc.diagnostics`` as the
``mcmc_diagnostics`` evaluator computes them), ESS per 1000 gradients (of the kept steps),
the mean acceptance of the adjusted samplers, and the error of the pooled sample covariance
whitened by the truth, ‖Σ^-½ Σ̂ Σ^-½ − I‖_F (0 is exact; Monte Carlo noise alone gives about
√(d(d+1)/ESS)).

How the step sizes were chosen (printed with the table):

- MALA and HMC (``--leapfrog`` steps, 5 by default): a short sweep over a fixed grid, on
  another seed and a quarter of the budget; each sampler runs at the step with the highest
  least of bulk ESS of x, bulk ESS of x² and tail ESS per gradient (the adjustment keeps
  every step exact, so efficiency decides). x² and the tails are in the criterion because
  HMC on a Gaussian turns antithetic at some trajectory lengths (about half a period, x -> -x):
  bulk ESS of x beyond the number of draws, while x², the spread, is barely mixed.
- Unadjusted Langevin: its stationary law on a Gaussian is known in closed form (variance
  1 / (λ(1 − ηλ/2)) along a precision eigenvalue λ), so a larger step always mixes faster
  but samples a wider law. It runs at the largest step of its grid whose own stationary
  covariance is within ``--bias`` (5 %) of the truth in the whitened norm above.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/mcmc_ess.py [--chains 8] [--budget 6000] [--seed 0]
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from ebmkit.plugins.mcmc.chain import Chain
from ebmkit.plugins.mcmc.diagnostics import ess_rhat, run_chains, summarize
from ebmkit.plugins.mcmc.hmc import HMC
from ebmkit.plugins.mcmc.langevin import Langevin
from ebmkit.plugins.mcmc.mala import MALA
from ebmkit.plugins.toy.gaussian import QuadraticEnergy

LANGEVIN_GRID = [0.001 * 2 ** (k / 2) for k in range(12)]  # 0.001 .. 0.045
MALA_GRID = [0.02, 0.05, 0.08, 0.1, 0.13, 0.16, 0.2, 0.25, 0.3]
HMC_GRID = [0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6]  # leapfrog is unstable from 2/√10 = 0.63


def gaussian_energy(cov: torch.Tensor) -> QuadraticEnergy:
    """The quadratic energy of N(0, cov): E(x) = ½ xᵀ Σ⁻¹ x."""
    dim = cov.shape[0]
    energy = QuadraticEnergy(data_shape=(dim,))
    chol = torch.linalg.cholesky(torch.linalg.inv(cov))  # P = L Lᵀ, the energy's own parametrisation
    with torch.no_grad():
        energy.mean.zero_()
        energy.lower.copy_(torch.tril(chol, -1))
        energy.raw_diagonal.copy_(torch.log(torch.expm1(torch.diagonal(chol))))  # softplus⁻¹
    return energy.requires_grad_(False)


def whitened_error(cov_hat: torch.Tensor, cov: torch.Tensor) -> float:
    """‖Σ^-½ Σ̂ Σ^-½ − I‖_F: the covariance error measured in the target's own scale."""
    values, vectors = torch.linalg.eigh(cov)
    inv_sqrt = vectors @ torch.diag(values.rsqrt()) @ vectors.T
    return float(torch.linalg.matrix_norm(inv_sqrt @ cov_hat @ inv_sqrt - torch.eye(len(cov), dtype=cov.dtype)))


def langevin_bias(step: float, cov: torch.Tensor) -> float:
    """The whitened covariance error of unadjusted Langevin's exact stationary law."""
    precision = torch.linalg.eigvalsh(torch.linalg.inv(cov))
    if (step * precision >= 2).any():
        return math.inf
    return float(((1 / (1 - step * precision / 2)) - 1).norm())


def score(row: dict) -> float:
    """The sweep's criterion: the least of bulk ESS of x, of x² and tail ESS, per 1000 gradients."""
    return row["ess_per_1000_grads"] * min(1.0, row["ess_tail_min"] / row["ess_bulk_min"], row["ess_sq_min"] / row["ess_bulk_min"])


def make(name: str, step: float, leapfrog: int):
    if name == "langevin":
        return Langevin(step_size=step), 1
    if name == "mala":
        return MALA(step_size=step), 2
    return HMC(step_size=step, leapfrog_steps=leapfrog), leapfrog + 1


def measure(name: str, step: float, energy, cov, *, chains: int, budget: int, burn_in: float, seed: int, leapfrog: int) -> dict:
    transition, grads_per_step = make(name, step, leapfrog)
    steps = budget // grads_per_step
    sampler = Chain(steps=steps, transitions=[transition])
    torch.manual_seed(seed)
    x0 = torch.randn(chains, cov.shape[0])
    start = time.perf_counter()
    record = run_chains(sampler, energy, x0)
    seconds = time.perf_counter() - start
    burn = int(burn_in * steps)
    out = summarize(record, burn)
    kept = record.x[burn:].flatten(0, 1).double()
    out["ess_sq_min"] = float(ess_rhat(record.x[burn:].transpose(0, 1).double() ** 2)["ess"].min())
    out |= {"step_size": step, "steps": steps, "seconds": seconds, "cov_error": whitened_error(torch.cov(kept.T), cov)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rho", type=float, default=0.9)
    parser.add_argument("--chains", type=int, default=8)
    parser.add_argument("--budget", type=int, default=6000, help="energy gradients per chain")
    parser.add_argument("--burn-in", type=float, default=0.2, help="share of the steps dropped")
    parser.add_argument("--leapfrog", type=int, default=5)
    parser.add_argument("--bias", type=float, default=0.05, help="Langevin's largest allowed stationary covariance error")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    wall = time.perf_counter()

    cov = torch.tensor([[1.0, args.rho], [args.rho, 1.0]], dtype=torch.float64)
    energy = gaussian_energy(cov.float())
    common = {"chains": args.chains, "burn_in": args.burn_in, "leapfrog": args.leapfrog}

    chosen = {"langevin": max(s for s in LANGEVIN_GRID if langevin_bias(s, cov) <= args.bias)}
    sweeps = {}
    for name, grid in (("mala", MALA_GRID), ("hmc", HMC_GRID)):
        sweeps[name] = {s: measure(name, s, energy, cov, budget=args.budget // 4, seed=args.seed + 1, **common) for s in grid}
        chosen[name] = max(grid, key=lambda s: score(sweeps[name][s]))

    rows = {name: measure(name, chosen[name], energy, cov, budget=args.budget, seed=args.seed, **common) for name in ("langevin", "mala", "hmc")}

    print(f"target: 2-D Gaussian, correlation {args.rho}; {args.chains} chains x {args.budget} gradients each, "
          f"first {args.burn_in:.0%} of steps dropped, seed {args.seed}; HMC with {args.leapfrog} leapfrog steps\n")
    print("| sampler | step size | steps | min bulk ESS | min tail ESS | min ESS of x² | bulk ESS / 1000 grads | max R-hat | accept | cov. error (whitened) | seconds |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    labels = {"langevin": "unadjusted Langevin", "mala": "MALA", "hmc": f"HMC (L = {args.leapfrog})"}
    for name, r in rows.items():
        accept = f"{r['accept']:.2f}" if "accept" in r else "–"
        print(f"| {labels[name]} | {r['step_size']:.4g} | {r['steps']} | {r['ess_bulk_min']:.0f} | {r['ess_tail_min']:.0f} | {r['ess_sq_min']:.0f} | {r['ess_per_1000_grads']:.1f} | "
              f"{r['rhat_max']:.3f} | {accept} | {r['cov_error']:.3f} | {r['seconds']:.1f} |")
    print(f"\nunadjusted Langevin's stationary covariance error at its step (closed form): {langevin_bias(chosen['langevin'], cov):.3f}")
    for name, sweep in sweeps.items():
        cells = ", ".join(f"{s:g}: {m['ess_per_1000_grads']:.1f}/{score(m):.1f} (acc {m['accept']:.2f})" for s, m in sweep.items())
        print(f"{name} sweep (step: bulk/criterion ESS per 1000 grads, seed {args.seed + 1}, budget {args.budget // 4}): {cells}")
    print(f"\nwall time {time.perf_counter() - wall:.1f} s")


if __name__ == "__main__":
    main()
