"""Histograms of the energies of data and of samples."""

from __future__ import annotations

from typing import Any

import attrs
import torch

from ebmkit import EbmkitError, EvalContext, component, stack_samples


@attrs.frozen
class EnergyHistogram:
    """Overlaid histograms of E on data and on fresh samples (energy_histogram_step*.png).

    Takes ``num_samples`` data points (a fixed random subset of the dataset) and as many
    samples drawn from fresh noise by the sampler (the run's, or ``[evaluators.sampler]``).
    A well-trained model with a well-mixing sampler gives two histograms that overlap;
    samples far above the data mean the chains have not reached the data's modes. Returns
    ``data_energy_mean``, ``sample_energy_mean`` and their difference ``energy_gap``.
    """

    num_samples: int = attrs.field(default=256, validator=attrs.validators.gt(0))
    bins: int = attrs.field(default=40, validator=attrs.validators.ge(2))
    #: a sampler of its own (``[evaluators.sampler]``); else the run's
    sampler: Any = component("samplers")

    def evaluate(self, ctx: EvalContext) -> dict[str, float]:
        if len(ctx.dataset) == 0:
            raise EbmkitError("the energy_histogram evaluator needs a dataset with at least one sample")
        n = min(self.num_samples, len(ctx.dataset))
        index = torch.randperm(len(ctx.dataset), generator=torch.Generator().manual_seed(0))[:n].tolist()
        x_data, labels = stack_samples(ctx.dataset, index)
        x_data = x_data.to(ctx.device)
        cond = labels.to(ctx.device) if labels is not None and getattr(ctx.dataset, "num_classes", None) else None
        # Samples carry the data's labels, so a conditional model is compared class for class.
        x_samples = (self.sampler or ctx.sampler).sample(ctx.energy, ctx.noise(n), cond=cond).x
        with torch.no_grad():
            e_data = ctx.energy(x_data.float(), cond).double().cpu()
            e_samples = ctx.energy(x_samples, cond).double().cpu()
        self._plot(ctx, e_data, e_samples)
        data_mean, sample_mean = float(e_data.mean()), float(e_samples.mean())
        return {"data_energy_mean": data_mean, "sample_energy_mean": sample_mean, "energy_gap": sample_mean - data_mean}

    def _plot(self, ctx: EvalContext, e_data: torch.Tensor, e_samples: torch.Tensor) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        both = torch.cat([e_data, e_samples])
        finite = both[torch.isfinite(both)]
        low, high = (float(finite.min()), float(finite.max())) if finite.numel() else (0.0, 1.0)
        if high <= low:
            low, high = low - 0.5, high + 0.5
        fig, ax = plt.subplots(figsize=(6, 3.6))
        ax.hist(e_data.numpy(), bins=self.bins, range=(low, high), alpha=0.6, label=f"data (n={len(e_data)})")
        ax.hist(e_samples.numpy(), bins=self.bins, range=(low, high), alpha=0.6, label=f"samples (n={len(e_samples)})")
        ax.set_xlabel("energy E(x)")
        ax.set_ylabel("count")
        ax.set_title(f"energies of data and samples, step {ctx.step}")
        ax.legend()
        fig.tight_layout()
        fig.savefig(ctx.out_dir / f"energy_histogram_step{ctx.step:07d}.png", dpi=90)
        plt.close(fig)
