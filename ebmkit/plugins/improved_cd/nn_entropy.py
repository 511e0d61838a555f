from __future__ import annotations

import attrs
import torch

from ebmkit import INFINITE_OK, LossOutput, Needs, TrainBatch, low_below_high


@attrs.frozen(kw_only=True)
class NearestNeighbourEntropy:
    """Improved CD's entropy term: -mean log distance from each KL sample to its nearest of buffer samples.

    Minimising it (with a positive weight; the paper's is 0.3) pushes the sampler's output
    apart: a Kozachenko-Leonenko style estimate of the samples' entropy, up to constants.
    The reference set is ``num_reference`` samples drawn from the replay buffer (augmented
    when the buffer augments its draws), not the current batch; distances are L2 in pixel
    space after clamping to ``clamp``. The term is zero until the buffer holds more than
    ``min_buffer`` samples.
    """

    num_reference: int = attrs.field(default=100, validator=attrs.validators.ge(1))
    min_buffer: int = attrs.field(default=1000, validator=attrs.validators.ge(0))
    #: image recipes set [0, 1], as the reference clamps
    clamp: tuple[float, float] | None = attrs.field(default=None, validator=low_below_high, metadata={INFINITE_OK: True})
    #: only the batch's first ``chains`` chains (the reference's ``n``: 32 for LSUN, ImageNet
    #: and the 48-px sets, the whole batch of 128 for CIFAR-10 and CelebA-HQ); None: all
    chains: int | None = attrs.field(default=None, validator=attrs.validators.optional(attrs.validators.ge(1)))

    needs = Needs(negatives=True, graph_steps=1)

    def __call__(self, batch: TrainBatch) -> LossOutput:
        x, earlier = batch.x_neg_graph[: self.chains], batch.reference_set
        if len(earlier) <= self.min_buffer:
            return LossOutput(x.new_zeros(()), {"nn_entropy/active": 0.0})
        reference = earlier.reference_samples(self.num_reference, dtype=x.dtype, device=x.device)
        if self.clamp is not None:
            x = x.clamp(*self.clamp)
        # Differences, not cdist's default |a|² + |b|² − 2a·b: that cancels catastrophically for
        # close points in float32, returns 0 for a pair 1e-3 apart, and log 0 ends the run.
        distance = torch.cdist(x.flatten(1), reference.flatten(1), compute_mode="donot_use_mm_for_euclid_dist")
        distance = distance.min(dim=1).values
        value = -torch.log(distance).mean()
        return LossOutput(value, {"nn_entropy/active": 1.0, "nn_entropy/log_nn_distance": -value.detach()})
