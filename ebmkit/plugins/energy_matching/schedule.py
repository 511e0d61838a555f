from __future__ import annotations

import attrs
import torch

Tensor = torch.Tensor


def _in_unit_interval(instance, attribute, value):
    if not 0 <= value <= 1:
        raise ValueError(f"{attribute.name} must be in [0, 1] (a time along the transport, which reaches the data at 1), got {value}")


@attrs.frozen(kw_only=True)
class TemperatureSchedule:
    """Energy Matching's temperature ε(t) along a trajectory (Balcerak et al., NeurIPS 2025, eq. for ε(t)).

    ε(t) = 0 for t < τ*; ε_max·(t − τ*)/(1 − τ*) for τ* ≤ t < 1; ε_max for t ≥ 1.

    Samples travel noise-free along the transport until τ*, are warmed up to the data's
    temperature by t = 1, and from then on sample the Boltzmann density exp(−V/ε_max).
    ``tau_star = 1`` switches the noise on at t = 1 at once (the CIFAR-10 configuration).

    ebmkit's energy E defines the density exp(−E), so Energy Matching's potential is
    V = ε_max·E: the drift −∇V = −ε_max∇E, and at t ≥ 1 the dynamics are Langevin on E.
    """

    epsilon_max: float = attrs.field(validator=attrs.validators.gt(0))
    tau_star: float = attrs.field(default=1.0, validator=_in_unit_interval)

    def ramp(self, t: Tensor) -> Tensor:
        """ε(t)/ε_max, elementwise: 0 before τ*, rising to 1 at t = 1, 1 after."""
        if self.tau_star >= 1:
            return (t >= 1).to(t.dtype)
        return ((t - self.tau_star) / (1 - self.tau_star)).clamp(0, 1)

    def __call__(self, t: Tensor) -> Tensor:
        """ε(t), elementwise."""
        return self.epsilon_max * self.ramp(t)


def flow_weight(t: Tensor, cutoff: float) -> Tensor:
    """The reference's optional weight of the flow-matching loss in the contrastive phase:
    1 before ``cutoff``, falling linearly to 0 at t = 1 (the data belongs to the contrastive term there)."""
    if cutoff >= 1:
        return (t < 1).to(t.dtype)
    return (1 - (t - cutoff) / (1 - cutoff)).clamp(0, 1)
