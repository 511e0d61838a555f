"""Sample grids: samples drawn from the model, written as one PNG, small images scaled up to be seen."""

from __future__ import annotations

from typing import Any, Literal

import attrs
import torch

from ebmkit import EvalContext, component, save_grid

@attrs.frozen
class SampleGrid:
    """Draws samples (with its own sampler, or the run's) and writes them as a PNG grid (samples_step*.png).

    Images smaller than 64 px are scaled up by a whole factor (nearest neighbour) to at least
    64 px, unless ``scale`` says otherwise (1: as they are).
    """

    num_samples: int = attrs.field(default=64, validator=attrs.validators.gt(0))
    source: Literal["buffer", "noise"] = "buffer"
    nrow: int = attrs.field(default=8, validator=attrs.validators.gt(0))
    #: a sampler of its own (``[evaluators.sampler]``), e.g. longer chains than training uses
    sampler: Any = component("samplers")
    #: each pixel becomes a scale x scale block; by default the factor that shows images at 64 px or more
    scale: int | None = attrs.field(default=None, validator=attrs.validators.optional(attrs.validators.ge(1)))

    def evaluate(self, ctx: EvalContext) -> dict[str, float]:
        use_buffer = self.source == "buffer" and ctx.buffer is not None and len(ctx.buffer) >= self.num_samples
        x0 = ctx.buffer.draw(self.num_samples, ctx.noise(self.num_samples)) if use_buffer else ctx.noise(self.num_samples)
        cond = None
        if getattr(ctx.dataset, "num_classes", None):
            # One row per class label, so a conditional model's classes can be told apart.
            cond = torch.arange(self.num_samples, device=x0.device) // self.nrow % ctx.dataset.num_classes
        result = (self.sampler or ctx.sampler).sample(ctx.energy, x0, cond=cond)
        save_grid(result.x, ctx.out_dir / f"samples_step{ctx.step:07d}.png", nrow=self.nrow, scale=self.scale)
        with torch.no_grad():
            energy = ctx.energy(result.x, cond).mean()
        return {"sample_energy": float(energy)}
