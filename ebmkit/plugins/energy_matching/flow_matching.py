from __future__ import annotations

from typing import Literal

import attrs
import torch

from ebmkit import LossOutput, Needs, TrainBatch, energy_and_grad, normal_like
from ebmkit.plugins.energy_matching.ot_pairs import linear_sum_assignment, ot_pairs
from ebmkit.plugins.energy_matching.schedule import flow_weight

Tensor = torch.Tensor


def _cutoff(instance, attribute, value):
    if value is not None and not 0 <= value <= 1:
        raise ValueError(f"weight_cutoff must be in [0, 1], got {value}")


@attrs.frozen(kw_only=True)
class FlowMatching:
    """Energy Matching's transport term: flow matching of the potential's velocity −∇V (Balcerak et al., NeurIPS 2025).

    Source: M. Balcerak et al., "Energy Matching: Unifying Flow Matching and Energy-Based
    Models for Generative Modeling", NeurIPS 2025 (Algorithm 1); reference code
    m1balcerak/EnergyMatching, ``forward_all`` with torchcfm's
    ``ExactOptimalTransportConditionalFlowMatcher``.

    L = E_t w(t)·mean_d ( −∇V(x_t) − (x₁ − x₀) )²,  x_t = t·x₁ + (1 − t)·x₀ + σ·ξ,  t ~ U(0, 1),

    the squared error averaged over the dimensions of a sample, then over the batch; x₀ ~ N(0, I)
    is the transport's source, x₁ the data batch, paired by the batch's exact optimal transport
    (``coupling = "ot"``, pairs drawn from the plan with replacement as torchcfm does) or
    independently (``"independent"``: plain conditional flow matching). The potential is one
    time-independent scalar field: ebmkit's energy E defines the density exp(−E), and
    V = ``temperature``·E, so the velocity is −temperature·∇E and at the data the model samples
    exp(−V/temperature) = exp(−E) (see :class:`TemperatureSchedule`). Give the same
    ``temperature`` to the contrastive term and the sampler.

    ``weight_cutoff`` = τ weights the loss by w(t) = 1 before τ, falling to 0 at t = 1 (the
    reference's optional weighting in the contrastive phase); None weights every t alike.
    Labels (``batch.cond``) follow the data sample of each pair. The velocity is differentiated
    with respect to the parameters (double backprop).
    """

    temperature: float = attrs.field(validator=attrs.validators.gt(0))
    sigma: float = attrs.field(default=0.0, validator=attrs.validators.ge(0))
    coupling: Literal["ot", "independent"] = attrs.field(default="ot", validator=attrs.validators.in_(("ot", "independent")))
    weight_cutoff: float | None = attrs.field(default=None, validator=_cutoff)

    needs = Needs(negatives=False)

    def __attrs_post_init__(self):
        if self.coupling == "ot":
            linear_sum_assignment()  # a missing solver is a build error, not one at the first update

    def velocity(self, energy, x: Tensor, cond: Tensor | None = None) -> Tensor:
        """−∇V(x) = −temperature·∇E(x), differentiable with respect to the energy's parameters."""
        _, grad = energy_and_grad(energy, x, cond, create_graph=True)
        return -self.temperature * grad

    def per_sample(self, energy, x0: Tensor, x1: Tensor, t: Tensor, noise: Tensor | None = None, cond: Tensor | None = None) -> Tensor:
        """Each pair's weighted squared error, shape ``(B,)``, for given pairs ``(x0, x1)``, times ``t``
        (shape ``(B,)``) and path noise ξ (None: σ = 0 or no noise)."""
        tb = t.view(-1, *([1] * (x1.dim() - 1)))
        x_t = tb * x1 + (1 - tb) * x0
        if noise is not None and self.sigma > 0:
            x_t = x_t + self.sigma * noise
        error = (self.velocity(energy, x_t, cond) - (x1 - x0)).square().flatten(1).mean(1)
        if self.weight_cutoff is not None:
            error = flow_weight(t, self.weight_cutoff) * error
        return error

    def __call__(self, batch: TrainBatch) -> LossOutput:
        x1, cond = batch.x_pos, batch.cond
        x0 = normal_like(x1)
        if self.coupling == "ot":
            i, j = ot_pairs(x0, x1)
            x0, x1 = x0[i], x1[j]
            cond = cond[j] if cond is not None else None
        t = torch.rand(x1.shape[0], device=x1.device, dtype=x1.dtype)
        noise = normal_like(x1) if self.sigma > 0 else None
        losses = self.per_sample(batch.energy, x0, x1, t, noise, cond)
        return LossOutput(losses.mean(), {"flow_matching/mse": losses.detach().mean()})
