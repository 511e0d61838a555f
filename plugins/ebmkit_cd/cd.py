from __future__ import annotations

import attrs

from ebmkit.protocols import LossOutput, TrainBatch


@attrs.frozen
class ContrastiveDivergence:
    """Contrastive divergence: mean E(x+) - mean E(x-), the negatives detached (scales averaged)."""

    needs_graph = False

    def __call__(self, energy, batch: TrainBatch) -> LossOutput:
        return LossOutput(batch.e_pos.mean() - batch.e_neg.mean())
