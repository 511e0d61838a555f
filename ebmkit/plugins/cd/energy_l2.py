from __future__ import annotations

import attrs

from ebmkit import LossOutput, TrainBatch


@attrs.frozen
class EnergyL2:
    """Energy magnitude regulariser: mean E(x+)^2 + mean E(x-)^2 (each scale squared separately)."""

    def __call__(self, batch: TrainBatch) -> LossOutput:
        return LossOutput((batch.e_pos_scales**2).mean() + (batch.e_neg_scales**2).mean())
