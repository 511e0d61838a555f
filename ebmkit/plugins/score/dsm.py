from __future__ import annotations

import math

import attrs
import torch

from ebmkit import LossOutput, Needs, TrainBatch, energy_and_grad, normal_like

Tensor = torch.Tensor


def _positive_or_none(instance, attribute, value):
    if value is not None and not value > 0:
        raise ValueError(f"{attribute.name} must be > 0, got {value}")


def _one_noise_choice(instance, attribute, sigma):
    """Validator of ``sigma``: either one noise level, or a schedule from sigma_min to sigma_max."""
    low, high = instance.sigma_min, instance.sigma_max
    if sigma is not None:
        if low is not None or high is not None:
            raise ValueError("give either sigma (one noise level) or sigma_min and sigma_max (a schedule), not both")
        return
    if low is None or high is None:
        raise ValueError("give sigma (one noise level), or sigma_min and sigma_max (a geometric schedule)")
    if not low < high:
        raise ValueError(f"a schedule needs sigma_min < sigma_max, got {low} and {high}")


@attrs.frozen(kw_only=True)
class DenoisingScoreMatching:
    """Denoising score matching (Vincent 2011) for an energy, weighted as in NCSN (Song & Ermon 2019).

    Sources: P. Vincent, "A Connection Between Score Matching and Denoising Autoencoders",
    Neural Computation 2011; Y. Song & S. Ermon, "Generative Modeling by Estimating Gradients
    of the Data Distribution", NeurIPS 2019 (the weighting λ(σ) = σ² and the schedule).

    L = ½ E_{x,ε} λ(σ) ‖ −∇ₓE(x̃) + (x̃ − x)/σ² ‖²,  x̃ = x + σε,  ε ~ N(0, I),  λ(σ) = σ²,

    the squared norm summed over every dimension of a sample (any sample shape), averaged over
    the batch. For one σ its expectation is σ²·½E‖−∇E(x̃) − ∇log p_σ(x̃)‖² + a θ-free constant,
    where p_σ = p_data ∗ N(0, σ²I): the energy learns the *noisy* data density p_σ (for Gaussian
    data N(m, Σ), the optimum is N(m, Σ + σ²I)). The score −∇ₓE is differentiated with respect
    to the parameters (``create_graph=True``), so each update costs a double backprop.

    With a schedule (``sigma_min``, ``sigma_max``, ``num_levels``), σ is drawn per sample from
    ``num_levels`` levels spaced geometrically between the two, as NCSN's
    ``anneal_dsm_score_estimation`` (ermongroup/ncsn, ``losses/dsm.py``). ebmkit energies take
    no noise level, so one energy is fitted to every level at once: it learns a compromise
    between the scores of p_σ over the levels, a model of the data blurred by a *mixture* of
    noise scales, not of the clean data. For Gaussian data N(m, Σ) the optimum is
    N(m, Σ + σ̄²I), with σ̄² = Σσ⁴/Σσ² over the levels, dominated by the largest σ.

    Labels (``batch.cond``) are passed to the energy.
    """

    sigma: float | None = attrs.field(default=None, validator=[_positive_or_none, _one_noise_choice])
    sigma_min: float | None = attrs.field(default=None, validator=_positive_or_none)
    sigma_max: float | None = attrs.field(default=None, validator=_positive_or_none)
    num_levels: int = attrs.field(default=10, validator=attrs.validators.ge(2))

    needs = Needs(negatives=False)

    def levels(self) -> list[float]:
        """The noise levels: [sigma], or the schedule's, geometric from sigma_max down to sigma_min."""
        if self.sigma is not None:
            return [self.sigma]
        ratio = math.log(self.sigma_min / self.sigma_max) / (self.num_levels - 1)
        return [self.sigma_max * math.exp(ratio * i) for i in range(self.num_levels)]

    def draw_sigmas(self, x: Tensor) -> Tensor:
        """One noise level per sample of ``x``, shape ``(B,)``: uniformly among :meth:`levels`."""
        levels = torch.tensor(self.levels(), dtype=x.dtype, device=x.device)
        if len(levels) == 1:
            return levels.expand(x.shape[0])
        return levels[torch.randint(len(levels), (x.shape[0],), device=x.device)]

    def per_sample(self, energy, x: Tensor, noise: Tensor, sigmas: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The loss of each sample, shape ``(B,)``, for given noise ε (shaped like ``x``) and levels σ
        (shape ``(B,)``), and the norm of each noisy sample's score."""
        sigma = sigmas.view(-1, *([1] * (x.dim() - 1)))
        x_noisy = x + sigma * noise
        _, grad = energy_and_grad(energy, x_noisy, cond, create_graph=True)
        # λ(σ)‖s − target‖² with λ = σ², s = −∇E and target −(x̃ − x)/σ² = −ε/σ, written as
        # ‖σ·s + ε‖²: the same number, without dividing by a small σ twice.
        residual = sigma * -grad + noise
        return 0.5 * residual.flatten(1).pow(2).sum(1), grad.detach().flatten(1).norm(dim=1)

    def __call__(self, batch: TrainBatch) -> LossOutput:
        x = batch.x_pos
        sigmas = self.draw_sigmas(x)
        losses, score_norms = self.per_sample(batch.energy, x, normal_like(x), sigmas, batch.cond)
        return LossOutput(losses.mean(), {"dsm/score_norm": score_norms.mean()})
