from __future__ import annotations

import attrs
import torch
from torch.func import functional_call

from ebmkit import LossOutput, Needs, TrainBatch, eager, is_multiscale


def frozen_energy(energy, x: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
    """E_θ(x) with θ detached: a functional call on the same module, not a deep copy.

    The result depends on the parameters only through ``x``. A multi-scale energy is
    averaged over its scales, as in the loss.
    """
    frozen = {name: p.detach() for name, p in energy.named_parameters()}
    frozen.update(dict(energy.named_buffers()))
    with eager():  # a compiled energy would recompile for the swapped-in parameters
        if is_multiscale(energy):
            return functional_call(energy, frozen, (x, cond), {"per_scale": True}, strict=False).mean(1)
        return functional_call(energy, frozen, (x, cond), strict=False)


@attrs.frozen
class KLTerm:
    """Improved CD's KL term: E of the sampler's last step with the parameters frozen; its gradient flows through the sampler.

    The sampler computes its last ``last_steps`` steps with their autograd graph kept
    (``batch.x_neg_graph``); the loss is mean E_{stop_grad θ}(x_kl). So the parameter gradient is
    ∂E(x_kl)/∂x_kl · ∂x_kl/∂θ, through the gradient steps only, with no direct ∂E/∂θ term.
    """

    last_steps: int = attrs.field(default=1, validator=attrs.validators.ge(1))
    #: only the batch's first ``chains`` chains feed the term (the reference's ``n``: 32 for
    #: LSUN, ImageNet and the 48-px sets, the whole batch of 128 for CIFAR-10 and CelebA-HQ); None: all
    chains: int | None = attrs.field(default=None, validator=attrs.validators.optional(attrs.validators.ge(1)))

    @property
    def needs(self) -> Needs:
        return Needs(negatives=True, graph_steps=self.last_steps)

    def __call__(self, batch: TrainBatch) -> LossOutput:
        cond = batch.cond[: self.chains] if batch.cond is not None else None
        value = frozen_energy(batch.energy, batch.x_neg_graph[: self.chains], cond).mean()
        return LossOutput(value, {"kl/energy": value.detach()})
