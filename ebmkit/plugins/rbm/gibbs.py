from __future__ import annotations

from typing import ClassVar

import attrs
import torch

from ebmkit import EbmkitError, StepContext, StepResult


@attrs.frozen(kw_only=True)
class BlockGibbs:
    """One sweep of block Gibbs sampling in an RBM: h ~ p(h|v), then v ~ p(v|h), with the exact conditionals."""

    #: discrete draws: no graph to the energy's parameters can be kept through a sweep
    differentiable: ClassVar[bool] = False

    def step(self, energy, x: torch.Tensor, ctx: StepContext) -> StepResult:
        if not hasattr(energy, "hidden_probs"):
            raise EbmkitError(f"the gibbs transition needs an RBM energy (with hidden_probs), not {type(energy).__name__}")
        with torch.no_grad():
            h = torch.bernoulli(energy.hidden_probs(x))
            v = torch.bernoulli(energy.visible_probs(h)).view_as(x)
            return StepResult(v, {"energy": energy(v)} if ctx.diagnostics else {})
