"""A trace plot of the energy of a few chains, step by step."""

from __future__ import annotations

import math
from typing import Any

import attrs

from ebmkit import EvalContext, component
from ebmkit.plugins.mcmc.diagnostics import chain_cond, run_chains


@attrs.frozen
class ChainTrace:
    """Plots the energy of ``num_chains`` chains against the step (chain_trace_step*.png).

    The chains start from fresh noise and run the sampler's own transitions one step at a
    time (the run's sampler, or ``[evaluators.sampler]``; it must be a ``chain`` sampler), for
    the sampler's number of steps or ``steps``. Flat, overlapping traces mean the chains have
    settled; traces still falling, or settled at different levels, mean they have not. Returns
    the mean final energy and the mean energy change over the last half of the steps.
    """

    num_chains: int = attrs.field(default=4, validator=attrs.validators.ge(1))
    #: the number of steps; None takes the sampler's
    steps: int | None = attrs.field(default=None, validator=attrs.validators.optional(attrs.validators.ge(2)))
    #: draw the energy axis on a symmetric-log scale (energies of untrained models span decades)
    symlog: bool = False
    #: a chain sampler of its own (``[evaluators.sampler]``); else the run's
    sampler: Any = component("samplers")

    def evaluate(self, ctx: EvalContext) -> dict[str, float]:
        n = self.num_chains
        record = run_chains(self.sampler or ctx.sampler, ctx.energy, ctx.noise(n), cond=chain_cond(ctx, n),
                            steps=self.steps, record_energy=True)
        energy = record.energy  # (steps, chains)
        self._plot(ctx, energy)
        half = energy.shape[0] // 2
        return {"final_energy": float(energy[-1].mean()), "late_drift": float((energy[-1] - energy[half]).mean())}

    def _plot(self, ctx: EvalContext, energy) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 3.6))
        steps = range(1, energy.shape[0] + 1)
        for chain in range(energy.shape[1]):
            ax.plot(steps, energy[:, chain].numpy(), lw=0.8, label=f"chain {chain}")
        if self.symlog:
            ax.set_yscale("symlog")
        ax.set_xlabel("sampler step")
        ax.set_ylabel("energy E(x)")
        ax.set_title(f"chain energy traces, step {ctx.step}")
        if energy.shape[1] <= 10 and all(math.isfinite(float(v)) for v in energy[-1]):
            ax.legend(fontsize=7, loc="upper right")
        fig.tight_layout()
        fig.savefig(ctx.out_dir / f"chain_trace_step{ctx.step:07d}.png", dpi=90)
        plt.close(fig)
