from __future__ import annotations

import attrs

from ebmkit.protocols import LossOutput, TrainBatch


@attrs.frozen
class EnergyL2:
    """Energy magnitude regulariser: mean E(x+)^2 + mean E(x-)^2."""

    needs_graph = False

    def __call__(self, energy, batch: TrainBatch) -> LossOutput:
        return LossOutput((batch.e_pos**2).mean() + (batch.e_neg**2).mean())
