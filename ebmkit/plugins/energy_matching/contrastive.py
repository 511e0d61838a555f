from __future__ import annotations

import attrs
import torch

from ebmkit import LossOutput, Needs, TrainBatch

Tensor = torch.Tensor


def _below_one(instance, attribute, value):
    if not 0 <= value < 1:
        raise ValueError(f"trim_fraction must be in [0, 1) (the share of the highest negative energies left out), got {value}")


def trimmed_mean(values: Tensor, fraction: float) -> Tensor:
    """The mean of ``values`` (shape ``(B,)``) less the ⌊fraction·B⌋ highest: a one-sided trimmed mean."""
    k = int(fraction * values.shape[0])
    if k == 0:
        return values.mean()
    return values.sort().values[: values.shape[0] - k].mean()


@attrs.frozen(kw_only=True)
class EnergyMatchingCD:
    """Energy Matching's contrastive term, with the paper's two stabilisers (Balcerak et al., NeurIPS 2025, Algorithm 2).

    L = max( λ·( mean V(x⁺) − trimmed-mean V(x⁻) ),  −β ),   V = temperature·E,

    where the trimmed mean leaves out the ⌊α·B⌋ highest negative energies (``trim_fraction``
    α, 0.1 in the paper: chains that have not arrived yet do not pull the energy down where
    there is no data), and the loss is clamped below at −β (``clamp``, 0.02; None for no clamp:
    once the data sit that far below the samples the term stops pushing). λ is ``cd_weight``
    (1e-3 on CIFAR-10). Reference: m1balcerak/EnergyMatching, ``forward_all``.

    The negatives are the run's sampler's samples: the ``energy_matching`` sampler run with the
    temperature schedule, half of its chains started at the data batch and half at noise
    (``given_starts = 0.5`` over the ``data`` buffer), as the paper's split negatives.
    """

    temperature: float = attrs.field(validator=attrs.validators.gt(0))
    cd_weight: float = attrs.field(default=1e-3, validator=attrs.validators.gt(0))
    trim_fraction: float = attrs.field(default=0.1, validator=_below_one)
    clamp: float | None = attrs.field(default=0.02, validator=attrs.validators.optional(attrs.validators.gt(0)))

    needs = Needs(negatives=True)

    def value(self, v_pos: Tensor, v_neg: Tensor) -> Tensor:
        """The loss from the potentials V of the data (shape ``(B,)``) and of the negatives (``(B',)``)."""
        loss = self.cd_weight * (v_pos.mean() - trimmed_mean(v_neg, self.trim_fraction))
        if self.clamp is not None:
            loss = loss.clamp(min=-self.clamp)
        return loss

    def __call__(self, batch: TrainBatch) -> LossOutput:
        v_pos, v_neg = self.temperature * batch.e_pos, self.temperature * batch.e_neg
        loss = self.value(v_pos, v_neg)
        clamped = loss.detach() <= -self.clamp if self.clamp is not None else torch.zeros((), dtype=torch.bool)
        return LossOutput(loss, {"em_cd/v_pos": v_pos.detach().mean(), "em_cd/v_neg": v_neg.detach().mean(),
                                 "em_cd/clamped": clamped.float()})
