from __future__ import annotations

import math

import attrs
import torch

from ebmkit import StepContext, StepResult, energy_and_grad, normal_like


def _sq_norm(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).pow(2).sum(1)


@attrs.frozen(kw_only=True)
class HMC:
    """Hamiltonian Monte Carlo: L leapfrog steps with unit mass, accept/reject per chain.

    Targets exp(−E/T). Momentum p ~ N(0, T·I); H(x, p) = E(x) + ‖p‖²/2, and each chain's
    trajectory is accepted with probability min(1, exp((H₀ − H₁)/T)). The acceptance is
    reported as the ``accept`` statistic (0 or 1 per chain).
    """

    step_size: float = attrs.field(validator=attrs.validators.gt(0))
    leapfrog_steps: int = attrs.field(default=10, validator=attrs.validators.ge(1))
    temperature: float = attrs.field(default=1.0, validator=attrs.validators.gt(0))

    def step(self, energy, x: torch.Tensor, ctx: StepContext) -> StepResult:
        eps, temp, graph = self.step_size, self.temperature, ctx.create_graph
        e0, grad = energy_and_grad(energy, x, ctx.cond, create_graph=graph)
        p0 = math.sqrt(temp) * normal_like(x)
        p = p0 - 0.5 * eps * grad
        q = x
        for i in range(self.leapfrog_steps):
            q = q + eps * p
            e1, grad = energy_and_grad(energy, q, ctx.cond, create_graph=graph)
            p = p - (eps if i < self.leapfrog_steps - 1 else 0.5 * eps) * grad
        h0 = e0 + 0.5 * _sq_norm(p0)
        h1 = e1 + 0.5 * _sq_norm(p)
        log_alpha = (h0 - h1) / temp
        accept = torch.log(torch.rand_like(log_alpha)) < log_alpha.detach()
        mask = accept.view(-1, *([1] * (x.dim() - 1)))
        stats = {"energy": torch.where(accept, e1, e0).detach(), "accept": accept.float(),
                 "grad_norm": grad.detach().flatten(1).norm(dim=1)}
        return StepResult(torch.where(mask, q, x), stats)
