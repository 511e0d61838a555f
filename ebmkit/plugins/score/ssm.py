from __future__ import annotations

import math
from typing import Literal

import attrs
import torch

from ebmkit import LossOutput, Needs, TrainBatch, energy_and_grad, normal_like

Tensor = torch.Tensor


def draw_projections(kind: str, num: int, x: Tensor) -> Tensor:
    """``num`` projection vectors per sample of ``x``, shape ``(num, *x.shape)``, each with E[vvᵀ] = I
    over a sample's flattened dimensions.

    - ``gaussian``: v ~ N(0, I);
    - ``rademacher``: independent ±1 entries;
    - ``sphere``: uniform on the sphere of radius √d (d the size of one sample), as in
      ``single_sliced_score_matching`` of ermongroup/sliced_score_matching. Unit vectors would
      scale the objective by 1/d (E[vvᵀ] = I/d) and so set it apart from the other two.
    """
    v = normal_like(x.expand(num, *x.shape))
    if kind == "gaussian":
        return v
    if kind == "rademacher":
        return torch.where(v < 0, -1.0, 1.0).to(v.dtype)
    if kind == "sphere":
        size = math.prod(x.shape[1:])
        norms = v.flatten(2).norm(dim=2).view(num, x.shape[0], *([1] * (x.dim() - 1)))
        return v / norms * math.sqrt(size)
    raise ValueError(f"unknown projection {kind!r}: rademacher, gaussian or sphere")


@attrs.frozen(kw_only=True)
class SlicedScoreMatching:
    """Sliced score matching (Song, Garg, Shi & Ermon 2019) for an energy, with random projections.

    Source: "Sliced Score Matching: A Scalable Approach to Density and Score Estimation" (UAI
    2019); code: ermongroup/sliced_score_matching (``losses/sliced_sm.py``).

    With the model's score s = −∇ₓE and random projections v (``projection``: Rademacher,
    Gaussian, or uniform on the sphere of radius √d; each has E[vvᵀ] = I):

    - SSM:    L = ½(vᵀs)² + vᵀ∇ₓ(vᵀs)
    - SSM-VR (``variance_reduction``): L = ½‖s‖² + vᵀ∇ₓ(vᵀs), the first term replaced by its
      expectation over v, which is ½‖s‖² for any v with E[vvᵀ] = I: all three projections are
      allowed (the reference code offers Gaussian and Rademacher v),

    averaged over ``num_projections`` projections per sample and over the batch. vᵀ∇ₓ(vᵀs) is
    an unbiased estimate of tr ∇ₓs = −tr ∇²ₓE (Hutchinson), so in expectation over v the loss
    is Hyvärinen's explicit score-matching objective E[½‖∇ₓE‖² − tr ∇²ₓE], which equals
    ½E‖s − ∇log p_data‖² up to a θ-free constant. It costs a double backprop: ∇ₓE, then the
    gradient of vᵀ∇ₓE in x, both kept differentiable with respect to the parameters.

    Any sample shape works (images: projections over all of a sample's entries); labels
    (``batch.cond``) are passed to the energy.
    """

    projection: Literal["rademacher", "gaussian", "sphere"] = attrs.field(
        default="gaussian", validator=attrs.validators.in_(("rademacher", "gaussian", "sphere"))
    )
    num_projections: int = attrs.field(default=1, validator=attrs.validators.ge(1))
    variance_reduction: bool = False

    needs = Needs(negatives=False)

    def per_projection(self, energy, x: Tensor, projections: Tensor, cond: Tensor | None = None) -> dict[str, Tensor]:
        """The loss for given projections (shape ``(M, *x.shape)``), per projection and sample,
        shape ``(M, B)``, with its two parts: ``square`` (½(vᵀs)², or ½‖s‖² with variance
        reduction) and ``divergence`` (vᵀ∇ₓ(vᵀs))."""
        num = projections.shape[0]
        # Each projection gets its own copy of x, so that ∇ₓ(vᵀs) of one copy sees only its own v.
        x_copies = x.detach().expand(num, *x.shape).reshape(num * x.shape[0], *x.shape[1:]).requires_grad_(True)
        cond_copies = None if cond is None else cond.expand(num, *cond.shape).reshape(num * cond.shape[0], *cond.shape[1:])
        v = projections.reshape(x_copies.shape)
        _, grad = energy_and_grad(energy, x_copies, cond_copies, create_graph=True)
        score = -grad
        projected = (v * score).flatten(1).sum(1)
        (grad_projected,) = torch.autograd.grad(projected.sum(), x_copies, create_graph=True)
        divergence = (v * grad_projected).flatten(1).sum(1)
        if self.variance_reduction:
            square = 0.5 * score.flatten(1).pow(2).sum(1)
        else:
            square = 0.5 * projected**2
        shape = (num, x.shape[0])
        return {"value": (square + divergence).view(shape), "square": square.view(shape), "divergence": divergence.view(shape)}

    def __call__(self, batch: TrainBatch) -> LossOutput:
        x = batch.x_pos
        projections = draw_projections(self.projection, self.num_projections, x)
        parts = self.per_projection(batch.energy, x, projections, batch.cond)
        metrics = {"ssm/square": parts["square"].detach().mean(), "ssm/divergence": parts["divergence"].detach().mean()}
        return LossOutput(parts["value"].mean(), metrics)
