from __future__ import annotations

import math
from typing import Literal

import attrs
import torch
import torch.nn.functional as F
from torch.distributions import Distribution, Independent, MultivariateNormal, Normal, Uniform

from ebmkit import LossOutput, Needs, TrainBatch

#: A ridge on the fitted covariance, relative to its mean variance (with a floor of 1e-8 for a
#: batch of one repeated point): a batch no larger than the dimension has a singular
#: covariance, and q must have a density.
RIDGE = 1e-4


def high_above_low(instance, attribute, high):
    if not high > instance.noise_low:
        raise ValueError(f"noise_high must be above noise_low, got noise_low={instance.noise_low}, noise_high={high}")


@attrs.frozen(kw_only=True)
class NoiseContrastiveEstimation:
    """Noise-contrastive estimation (Gutmann & Hyvärinen, AISTATS 2010).

    Logistic regression of data against noise drawn from a known density q, ν = ``noise_ratio``
    noise samples per data point:

        L = −E_d[log σ(G(x))] − ν·E_q[log(1 − σ(G(x)))],   G(x) = −E(x) − log(ν·q(x)),

    written as mean softplus(−G(data)) + ν·mean softplus(G(noise)). Its optimum, when the
    family can reach it, is exp(−E) = p_d: the energy is self-normalised, so it must carry
    its own log-normaliser (a learned constant: an MLP's output bias is one; the quadratic
    energy's with ``learn_offset = true``).

    Each update draws ⌈ν⌉·B noise samples (labelled like the batch for a conditional energy)
    and weights their term by ν, so its expectation is the objective above for any ν > 0.
    ``noise`` chooses q, whose log density is exact:

    - ``batch_gaussian``: N(m, s²C) with m, C the batch's mean and maximum-likelihood
      covariance (detached), s = ``noise_scale``; for low-dimensional data.
    - ``gaussian``: N(``noise_mean``, ``noise_std``²·I).
    - ``uniform``: uniform on the box [``noise_low``, ``noise_high``]^d; data outside the box
      have q = 0 and teach nothing (``nce/data_outside_noise`` counts them).
    """

    noise: Literal["batch_gaussian", "gaussian", "uniform"] = "batch_gaussian"
    noise_ratio: float = attrs.field(default=1.0, validator=attrs.validators.gt(0))
    noise_scale: float = attrs.field(default=1.0, validator=attrs.validators.gt(0))
    noise_mean: float = 0.0
    noise_std: float = attrs.field(default=1.0, validator=attrs.validators.gt(0))
    noise_low: float = -4.0
    noise_high: float = attrs.field(default=4.0, validator=high_above_low)

    # The noise samples are the term's own: the loop need not run the sampler.
    needs = Needs(negatives=False)

    def noise_distribution(self, flat: torch.Tensor) -> Distribution:
        """q over flattened samples, given a detached batch ``flat`` of shape (B, d)."""
        d, dtype, device = flat.shape[1], flat.dtype, flat.device
        if self.noise == "gaussian":
            loc = torch.full((d,), self.noise_mean, dtype=dtype, device=device)
            return Independent(Normal(loc, torch.full_like(loc, self.noise_std)), 1)
        if self.noise == "uniform":
            low = torch.full((d,), self.noise_low, dtype=dtype, device=device)
            # validate_args=False: the log density of a point outside the box is −inf, not an error.
            return Independent(Uniform(low, torch.full_like(low, self.noise_high), validate_args=False), 1)
        # In float64: a nearly singular covariance loses its Cholesky factor in float32.
        points = flat.double()
        mean = points.mean(0)
        centred = points - mean
        cov = self.noise_scale**2 * (centred.T @ centred) / points.shape[0]
        ridge = RIDGE * cov.diagonal().mean() + 1e-8
        chol = torch.linalg.cholesky(cov + ridge * torch.eye(d, dtype=cov.dtype, device=device))
        return MultivariateNormal(mean.to(dtype), scale_tril=chol.to(dtype))

    def __call__(self, batch: TrainBatch) -> LossOutput:
        x, cond, energy = batch.x_pos, batch.cond, batch.energy
        flat = x.detach().flatten(1)
        q = self.noise_distribution(flat)
        per_point = math.ceil(self.noise_ratio)
        y = q.sample((per_point * x.shape[0],)).view(-1, *x.shape[1:])
        cond_noise = cond.repeat_interleave(per_point, dim=0) if cond is not None else None
        log_nu = math.log(self.noise_ratio)
        e_noise = energy(y, cond_noise)
        g_data = -batch.e_pos - log_nu - q.log_prob(flat)
        g_noise = -e_noise - log_nu - q.log_prob(y.flatten(1))
        value = F.softplus(-g_data).mean() + self.noise_ratio * F.softplus(g_noise).mean()
        metrics = {
            "nce/data_accuracy": (g_data.detach() > 0).float().mean(),
            "nce/noise_accuracy": (g_noise.detach() < 0).float().mean(),
            "nce/e_noise": e_noise.detach().mean(),
        }
        if self.noise == "uniform":
            metrics["nce/data_outside_noise"] = torch.isinf(g_data.detach()).float().mean()
        return LossOutput(value, metrics)
