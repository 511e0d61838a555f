from __future__ import annotations

import math

import attrs
import torch

from ebmkit import StepContext, StepResult, energy_and_grad, normal_like


def _sq_norm(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).pow(2).sum(1)


@attrs.frozen(kw_only=True)
class MALA:
    """Metropolis-adjusted Langevin at temperature T, with accept/reject decided per chain.

    Proposal x' = x − η∇E(x) + √(2ηT)ξ. It is accepted with probability
    min(1, exp(−(E(x') − E(x))/T) · q(x|x')/q(x'|x)), separately for every chain; the
    acceptance is reported as the ``accept`` statistic (0 or 1 per chain).
    """

    step_size: float = attrs.field(validator=attrs.validators.gt(0))
    temperature: float = attrs.field(default=1.0, validator=attrs.validators.gt(0))

    def step(self, energy, x: torch.Tensor, ctx: StepContext) -> StepResult:
        eta, temp = self.step_size, self.temperature
        e, grad = energy_and_grad(energy, x, ctx.cond, create_graph=ctx.create_graph)
        proposal = x - eta * grad + math.sqrt(2 * eta * temp) * normal_like(x)
        e_new, grad_new = energy_and_grad(energy, proposal, ctx.cond, create_graph=ctx.create_graph)
        log_forward = -_sq_norm(proposal - x + eta * grad) / (4 * eta * temp)
        log_backward = -_sq_norm(x - proposal + eta * grad_new) / (4 * eta * temp)
        log_alpha = -(e_new - e) / temp + log_backward - log_forward
        accept = torch.log(torch.rand_like(log_alpha)) < log_alpha.detach()
        mask = accept.view(-1, *([1] * (x.dim() - 1)))
        x_next = torch.where(mask, proposal, x)
        stats = {
            "energy": torch.where(accept, e_new, e).detach(),
            "accept": accept.float(),
            "grad_norm": grad.detach().flatten(1).norm(dim=1),
        }
        return StepResult(x_next, stats)
