from __future__ import annotations

import math

import attrs
import torch

from ebmkit import INFINITE_OK, StepContext, StepResult, energy_and_grad, low_below_high, normal_like


@attrs.frozen(kw_only=True)
class Langevin:
    """Langevin step x <- x - step_size*grad E(x) + noise_std*xi (set noise_std, or a temperature).

    Two forms, chosen by ``noise_std``:

    - image-EBM practice (``noise_std`` set): step size η and noise std σ are independent;
      with σ ≪ √(2η) this is noisy gradient descent, as in IGEBM and improved CD.
    - exact unadjusted Langevin (``noise_std`` unset): σ = √(2ηT) at ``temperature`` T,
      which samples exp(−E/T) as η → 0.
    """

    step_size: float = attrs.field(validator=attrs.validators.gt(0))
    noise_std: float | None = attrs.field(default=None, validator=attrs.validators.optional(attrs.validators.ge(0)))
    temperature: float = attrs.field(default=1.0, validator=attrs.validators.gt(0))
    noise_first: bool = False
    clamp: tuple[float, float] | None = attrs.field(default=None, validator=low_below_high, metadata={INFINITE_OK: True})
    grad_clip: float | None = attrs.field(default=None, validator=attrs.validators.optional(attrs.validators.gt(0)))
    anneal_noise: bool = False

    @property
    def sigma(self) -> float:
        return self.noise_std if self.noise_std is not None else math.sqrt(2 * self.step_size * self.temperature)

    def step(self, energy, x: torch.Tensor, ctx: StepContext) -> StepResult:
        sigma = self.sigma
        if self.anneal_noise:
            sigma = sigma * (ctx.total - ctx.index - 1) / ctx.total
        if self.noise_first:  # improved CD: noise, then a gradient step at the noised point
            x = x + sigma * normal_like(x)
        e, grad = energy_and_grad(energy, x, ctx.cond, create_graph=ctx.create_graph)
        if self.grad_clip is not None:
            grad = grad.clamp(-self.grad_clip, self.grad_clip)
        x = x - self.step_size * grad
        if not self.noise_first:
            x = x + sigma * normal_like(x)
        if self.clamp is not None:
            x = x.clamp(*self.clamp)
        if not ctx.diagnostics:
            return StepResult(x)
        grad_norm = torch.linalg.vector_norm(grad.detach().flatten(1), dim=1)
        return StepResult(x, {"energy": e.detach(), "grad_norm": grad_norm})
