from __future__ import annotations

from typing import Literal

import attrs
import torch

from ebmkit import LossOutput, Needs, TrainBatch
from ebmkit.plugins.dcd.kernels import GaussianKernel
from ebmkit.plugins.dcd.log_mean_exp import log_mean_exp_over_proposals


@attrs.frozen
class BernoulliFlip:
    """Binary data: flip each bit independently with probability ε.

    The kernel is symmetric, q(y|x) = q(x|y) = ε^h (1 − ε)^(d − h) with h the Hamming
    distance, so the points drawn back from y are flips of y with the same ε.
    """

    flip_prob: float

    def diffuse(self, x: torch.Tensor) -> torch.Tensor:
        return self._flip(x)

    def backward_proposals(self, y: torch.Tensor, num: int) -> torch.Tensor:
        """``num`` flips of each row of ``y``, shape (B·num, ...), grouped by row."""
        return self._flip(y.repeat_interleave(num, dim=0))

    def _flip(self, x: torch.Tensor) -> torch.Tensor:
        flips = torch.rand(x.shape, dtype=x.dtype, device=x.device) < self.flip_prob
        return torch.where(flips, 1 - x, x)


def flip_below_half(instance, attribute, value):
    # At ε = 1/2, y is independent of x: the perturbed distributions are all uniform and the loss is constant.
    if not 0 < value < 0.5:
        raise ValueError(f"flip_prob must be in (0, 0.5), got {value}")


@attrs.frozen(kw_only=True)
class EnergyDiscrepancy:
    """Energy discrepancy (Schröder, Ou, Lim, Li, Vollmer, Duncan, NeurIPS 2023), as its code
    computes it (github.com/J-zin/energy-discrepancy, notebooks/density_estimation.ipynb):

        y_i = perturb(x_i),  x'_ij ~ q(·|y_i) for j = 1..M,
        L = mean_i logsumexp_j([E(x_i) − E(x'_ij), log w])

    with M = ``num_particles`` and w = ``stabilizer`` (w = 0 drops the log w entry).

    - ``perturbation = "gaussian"``: y = x + sξ, x' = y + sξ', s = ``t_noise`` (the code's
      name; it multiplies standard-normal noise, so it is a standard deviation). This is
      ``dcd_log_mean_exp`` with the ``ve`` kernel, σ = s: the same draws, in the same order,
      give the same loss.
    - ``perturbation = "bernoulli"``, for binary data: each bit flips with probability ε =
      ``flip_prob``, for y and again for each x' (the discrete ED code,
      github.com/J-zin/discrete-energy-discrepancy, train_ed.py, energy_discrepancy_bern).

    With w = 0 and M → ∞, L − log M → E_p[E(x)] − E_y[E_q(y)], E_q(y) = −log Σ/∫ q(y|x) e^{−E(x)}:
    the energy discrepancy, minimised by the data distribution for an injective q. Finite M
    biases it (Jensen); w = 1 (the code's default) bounds the loss below and guards against
    the energy of the perturbed points running to −∞.
    """

    perturbation: Literal["gaussian", "bernoulli"] = "gaussian"
    t_noise: float = attrs.field(default=1.0, validator=attrs.validators.gt(0))
    flip_prob: float = attrs.field(default=0.005, validator=flip_below_half)
    num_particles: int = attrs.field(default=4, validator=attrs.validators.ge(1))
    stabilizer: float = attrs.field(default=1.0, validator=attrs.validators.ge(0))

    needs = Needs(negatives=False)

    def kernel(self) -> GaussianKernel | BernoulliFlip:
        if self.perturbation == "bernoulli":
            return BernoulliFlip(self.flip_prob)
        return GaussianKernel("ve", self.t_noise)

    def __call__(self, batch: TrainBatch) -> LossOutput:
        value, e_back = log_mean_exp_over_proposals(self.kernel(), batch, self.num_particles, self.stabilizer)
        return LossOutput(value, {"ed/e_perturbed": e_back.detach().mean()})
