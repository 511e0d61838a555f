from __future__ import annotations

from typing import Any, Literal

import attrs
import torch

from ebmkit import LossOutput, Needs, StepContext, TrainBatch, checked, component
from ebmkit.plugins.dcd.kernels import GaussianKernel, sigma_fits_kernel


@attrs.frozen(kw_only=True)
class DCDRecovery:
    """DCD, estimator A: contrastive divergence against samples of the recovery posterior.

    Each data point x is diffused, y = αx + σε, and a short chain of ``transition`` (K =
    ``steps`` steps, started at y/α) samples the recovery posterior
    p_θ(x̃|y) ∝ exp(−U(x̃) − ‖y − αx̃‖²/(2σ²)). The loss is mean U(x) − mean U(x̃), x̃
    detached: CD's form with the negatives drawn given the diffused data instead of from
    p_θ, and so no sampler-gradient term. With exact posterior samples its gradient is that
    of KL(p_d||p_θ) − KL(Q p_d||Q p_θ). The posterior is concentrated (scale ≈ σ/α), so
    the transition's step size should be small against σ²; finite K biases the estimate.
    ``energy_l2`` adds λ·(mean U(x)² + mean U(x̃)²), the regulariser CD recipes use: when the
    posterior chains cannot follow a sharpening energy, nothing else bounds it.

    The negatives never leave the loss: it needs no negatives from the loop, so the recipe's
    sampler is not run for this term.
    """

    sigma: float = attrs.field(validator=sigma_fits_kernel)
    transition: Any = component("transitions", default=attrs.NOTHING)
    steps: int = attrs.field(default=5, validator=attrs.validators.ge(1))
    kernel: Literal["ve", "vp"] = "ve"
    energy_l2: float = attrs.field(default=0.0, validator=attrs.validators.ge(0))

    needs = Needs(negatives=False)

    def recover(self, energy, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Posterior samples x̃ ~ p_θ(x̃|y), y the diffused ``x``; detached."""
        kernel = GaussianKernel(self.kernel, self.sigma)
        y = kernel.diffuse(x)
        posterior = energy + kernel.tether(y)
        x_tilde = y / kernel.alpha
        for k in range(self.steps):
            x_tilde = checked.step(self.transition, posterior, x_tilde, StepContext(k, self.steps, cond)).x
        return x_tilde.detach()

    def __call__(self, batch: TrainBatch) -> LossOutput:
        energy = batch.energy
        x_tilde = self.recover(energy, batch.x_pos, batch.cond)
        e_data, e_recovered = batch.e_pos, energy(x_tilde, batch.cond)
        value = e_data.mean() - e_recovered.mean()
        if self.energy_l2:
            value = value + self.energy_l2 * ((e_data**2).mean() + (e_recovered**2).mean())
        shift = (x_tilde - batch.x_pos).flatten(1).norm(dim=1).mean()
        metrics = {"dcd/e_recovered": e_recovered.detach().mean(), "dcd/recovery_distance": shift.detach()}
        return LossOutput(value, metrics)
