from __future__ import annotations

import attrs

from ebmkit import LossOutput, TrainBatch


@attrs.frozen
class ContrastiveDivergence:
    """Contrastive divergence: mean E(x+) - mean E(x-), the negatives detached (scales averaged)."""

    def __call__(self, batch: TrainBatch) -> LossOutput:
        return LossOutput(batch.e_pos_mean - batch.e_neg_mean)
