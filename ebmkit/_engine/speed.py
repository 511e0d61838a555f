"""The faster paths a recipe can switch on in ``[run]``: ``compile``, ``cuda_graphs``,
``channels_last`` and ``autocast``. Each is off by default; off, the energy runs exactly as written.

They wrap the energy the loop and the samplers call (``run.model``), so checkpoints, the EMA and
``state_dict`` keys are those of the plain energy; only ``channels_last`` touches the energy
itself, converting its weights (and so the EMA's copy) to that memory format in place.

- ``compile``: ``torch.compile`` of the energy's forward; AOTAutograd compiles its backward too,
  which is the sampler's input-gradient pass. The compiler cannot differentiate its backward
  again, so every pass that keeps its graph for a second derivative (``energy_and_grad(...,
  create_graph=True)``: improved CD's KL step) runs the same module uncompiled (:func:`ebmkit.eager`).
- ``cuda_graphs``: compile with mode ``"reduce-overhead"``, which captures the fixed-shape
  forward and backward in CUDA graphs and replays them. CUDA only; on another device it is
  reported and ignored.
- ``channels_last``: the energy's weights and 4-D inputs in the channels-last memory format,
  which convolution kernels on CPU (oneDNN) and GPU (cuDNN) prefer.
- ``autocast = "bf16"``: the forward under ``torch.autocast`` in bfloat16, its output (the energy,
  and every reduction of it: the losses, the sum the input gradient starts from) in float32.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ebmkit._host.energy import eager_wanted

#: Values of ``[run].autocast``.
AUTOCAST_DTYPES = {"bf16": torch.bfloat16}


class FastEnergy(nn.Module):
    """The energy with the recipe's fast paths; ``.module`` is the energy itself."""

    def __init__(self, module: nn.Module, *, compile_mode: str | None, channels_last: bool, autocast: str | None):
        super().__init__()
        self.module = module
        self.channels_last = channels_last
        self.autocast_dtype = AUTOCAST_DTYPES[autocast] if autocast else None
        # not a submodule: the parameters keep their one name, module.*
        object.__setattr__(self, "_call", torch.compile(module, mode=compile_mode) if compile_mode else module)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None, **kwargs: Any) -> torch.Tensor:
        x = channels_last_if(x, self.channels_last)
        call = self.module if eager_wanted() else self._call
        if self.autocast_dtype is None:
            return call(x, cond, **kwargs)
        with torch.autocast(x.device.type, dtype=self.autocast_dtype):
            e = call(x, cond, **kwargs)
        return e.float()

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:  # the energy's own attributes (per_scale, labels, ...) show through
            return getattr(self.module, name)


def channels_last_if(x: torch.Tensor, wanted: bool) -> torch.Tensor:
    """``x`` in the channels-last memory format when ``wanted`` and ``x`` is a batch of images.

    Chains started in it stay in it (the sampler's arithmetic keeps the memory format), so the
    energy's forward converts nothing per step.
    """
    return x.contiguous(memory_format=torch.channels_last) if wanted and x.dim() == 4 else x


def fast_energy(energy: nn.Module, settings: Any, device: torch.device) -> tuple[nn.Module, list[str]]:
    """``energy`` with the fast paths ``settings`` (``[run]``) switches on, and notes for the console.

    Off (the default), ``energy`` comes back as it is. ``channels_last`` converts the energy's
    weights in place (the optimizer keeps the same parameters).
    """
    notes: list[str] = []
    mode = None
    if settings.cuda_graphs and device.type != "cuda":
        notes.append(f"[run].cuda_graphs needs a CUDA device, not {device.type}: ignored")
    elif settings.cuda_graphs:
        mode = "reduce-overhead"
    if settings.compile and mode is None:
        mode = "default"
    if settings.channels_last:
        energy.to(memory_format=torch.channels_last)
    if mode is None and not settings.channels_last and not settings.autocast:
        return energy, notes
    on = [f"torch.compile (mode {mode!r})"] if mode else []
    on += ["channels-last"] if settings.channels_last else []
    on += [f"autocast {settings.autocast}"] if settings.autocast else []
    notes.append("fast paths: " + ", ".join(on))
    return FastEnergy(energy, compile_mode=mode, channels_last=settings.channels_last, autocast=settings.autocast), notes
