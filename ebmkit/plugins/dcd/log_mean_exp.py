from __future__ import annotations

import math
from typing import Literal

import attrs
import torch

from ebmkit import LossOutput, Needs, TrainBatch
from ebmkit.plugins.dcd.kernels import GaussianKernel, sigma_fits_kernel


@attrs.frozen(kw_only=True)
class DCDLogMeanExp:
    """DCD, estimator B: MCMC-free, with no gradient in x and no sampling from the model.

    L = mean_i log( w + Σ_j exp(U(x_i) − U(x'_ij)) ), with y_i = αx_i + σε_i and M =
    ``num_particles`` draws x'_ij ~ N(y_i/α, (σ/α)²I). The inner average estimates
    exp(U(x) − U_t(y)), where U_t is the diffused energy, so with w = 0 and M → ∞ the loss
    tends to E[U(x)] − E[U_t(y)] + log M, which is DCD up to a θ-free constant. It is
    biased for finite M (Jensen); the stabiliser w (the Energy Discrepancy code's w = 1)
    bounds the loss below and guards against collapse.
    """

    sigma: float = attrs.field(default=1.0, validator=sigma_fits_kernel)
    num_particles: int = attrs.field(default=4, validator=attrs.validators.ge(1))
    stabilizer: float = attrs.field(default=1.0, validator=attrs.validators.ge(0))
    kernel: Literal["ve", "vp"] = "ve"

    needs = Needs(negatives=False)

    def __call__(self, batch: TrainBatch) -> LossOutput:
        value, e_back = log_mean_exp_over_proposals(GaussianKernel(self.kernel, self.sigma), batch, self.num_particles, self.stabilizer)
        return LossOutput(value, {"dcd/e_diffused": e_back.detach().mean()})


def log_mean_exp_over_proposals(kernel, batch: TrainBatch, num_particles: int, stabilizer: float) -> tuple[torch.Tensor, torch.Tensor]:
    """mean_i log(w + Σ_j exp(U(x_i) − U(x'_ij))), the x'_ij drawn by ``kernel`` from a perturbation of
    x_i (``diffuse``, then ``backward_proposals``): the loss, and the energies U(x'), shape (B, M).
    DCD's estimator B and energy discrepancy share it."""
    energy, x, cond, m = batch.energy, batch.x_pos, batch.cond, num_particles
    with torch.no_grad():
        x_back = kernel.backward_proposals(kernel.diffuse(x), m)
    cond_back = cond.repeat_interleave(m, dim=0) if cond is not None else None
    e_back = energy(x_back, cond_back).view(x.shape[0], m)
    differences = batch.e_pos[:, None] - e_back
    if stabilizer > 0:
        log_w = torch.full_like(differences[:, :1], math.log(stabilizer))
        differences = torch.cat([differences, log_w], dim=1)
    return torch.logsumexp(differences, dim=1).mean(), e_back
