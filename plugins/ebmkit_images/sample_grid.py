from __future__ import annotations

from typing import Any, Literal

import attrs
import torch

from ebmkit.params import component
from ebmkit.protocols import EvalContext


@attrs.frozen
class SampleGrid:
    """Draws samples (with its own sampler, or the run's) and writes them as a PNG grid (samples_step*.png)."""

    num_samples: int = attrs.field(default=64, validator=attrs.validators.gt(0))
    source: Literal["buffer", "noise"] = "buffer"
    nrow: int = attrs.field(default=8, validator=attrs.validators.gt(0))
    #: a sampler of its own (``[evaluators.sampler]``), e.g. longer chains than training uses
    sampler: Any = component("samplers")

    def evaluate(self, ctx: EvalContext) -> dict[str, float]:
        from torchvision.utils import save_image

        use_buffer = self.source == "buffer" and ctx.buffer is not None and len(ctx.buffer) >= self.num_samples
        x0 = ctx.buffer.draw(self.num_samples, ctx.noise(self.num_samples)) if use_buffer else ctx.noise(self.num_samples)
        cond = None
        if getattr(ctx.dataset, "num_classes", None):
            # One row per class label, so a conditional model's classes can be told apart.
            cond = torch.arange(self.num_samples, device=x0.device) // self.nrow % ctx.dataset.num_classes
        result = (self.sampler or ctx.sampler).sample(ctx.energy, x0, cond=cond)
        save_image(result.x.clamp(0, 1).cpu(), ctx.out_dir / f"samples_step{ctx.step:07d}.png", nrow=self.nrow)
        with torch.no_grad():
            energy = ctx.energy(result.x, cond).mean()
        return {"sample_energy": float(energy)}
