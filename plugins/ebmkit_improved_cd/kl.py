from __future__ import annotations

import attrs
import torch
from torch.func import functional_call

from ebmkit import EbmkitError
from ebmkit.protocols import LossOutput, TrainBatch


def frozen_energy(energy, x: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
    """E_θ(x) with θ detached: a functional call on the same module, not a deep copy.

    The result depends on the parameters only through ``x``. A multi-scale energy is
    averaged over its scales, as in the loss.
    """
    frozen = {name: p.detach() for name, p in energy.named_parameters()}
    frozen.update(dict(energy.named_buffers()))
    return functional_call(energy, frozen, (x, cond), strict=False) / getattr(energy, "num_scales", 1)


@attrs.frozen
class KLTerm:
    """Improved CD's KL term: E of the sampler's last step with the parameters frozen; its gradient flows through the sampler.

    The sampler redoes its last ``last_steps`` steps with their autograd graph kept
    (``x_kl``); the loss is mean E_{stop_grad θ}(x_kl). So the parameter gradient is
    ∂E(x_kl)/∂x_kl · ∂x_kl/∂θ, through the gradient steps only, with no direct ∂E/∂θ term.
    """

    last_steps: int = attrs.field(default=1, validator=attrs.validators.ge(1))

    @property
    def needs_graph(self) -> int:
        return self.last_steps

    def __call__(self, energy, batch: TrainBatch) -> LossOutput:
        x_kl = batch.sample.x_graph
        if x_kl is None:
            raise EbmkitError("the kl loss needs a sampler that keeps the graph of its last step (e.g. 'chain')")
        value = frozen_energy(energy, x_kl, batch.cond).mean()
        return LossOutput(value, {"kl/energy": float(value.detach())})
