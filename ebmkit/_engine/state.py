"""The run state: every piece of a run's changing state, owned by one object."""

from __future__ import annotations

import copy
from typing import Any

import torch

from ebmkit._host.data import DataStream
from ebmkit._host.protocols import Stateful
from ebmkit._host.random import global_state, set_global_state


class EMA:
    """An exponential moving average of a module's parameters (buffers are copied):
    ema <- decay * ema + (1 - decay) * current."""

    def __init__(self, module: torch.nn.Module, decay: float):
        self.decay = decay
        self.module = copy.deepcopy(module).requires_grad_(False)
        self._pairs: tuple[torch.nn.Module, list, list, list] | None = None

    def _tensors(self, module: torch.nn.Module) -> tuple[list, list, list]:
        # the tensor lists, gathered once per module (walking the module tree each update costs
        # more than the update itself on a small model); loading weights keeps the same tensors
        if self._pairs is None or self._pairs[0] is not module:
            buffers = list(zip(self.module.buffers(), module.buffers(), strict=True))
            self._pairs = (module, list(self.module.parameters()), list(module.parameters()), buffers)
        return self._pairs[1:]

    @torch.no_grad()
    def update(self, module: torch.nn.Module) -> None:
        ema_params, params, buffers = self._tensors(module)
        torch._foreach_lerp_(ema_params, params, 1 - self.decay)
        for ema_buffer, buffer in buffers:
            ema_buffer.copy_(buffer)

    def state_dict(self, module: bool = True) -> dict[str, Any]:
        return {"decay": self.decay, **({"module": self.module.state_dict()} if module else {})}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the decay, and the weights when ``state`` has them."""
        self.decay = float(state["decay"])
        if "module" in state:
            self.module.load_state_dict(state["module"])


class RunState:
    """Everything that changes while a run trains, with ``state_dict`` / ``load_state_dict``.

    The energy, its EMA, the optimizer, the data position, every other stateful component
    (anything following :class:`ebmkit.Stateful`: the buffer, a plugin's schedule),
    saved under its TOML path, the global random-number states, the number of updates, the
    training time and the number of divergence rollbacks so far. Restoring a state dict into a run built from the same recipe makes it
    continue exactly as the run it came from.
    """

    def __init__(
        self, energy: torch.nn.Module, optimizer: torch.optim.Optimizer, data: DataStream,
        ema: EMA | None = None, components: dict[str, Stateful] | None = None,
    ):
        self.energy, self.optimizer, self.data, self.ema = energy, optimizer, data, ema
        self.components = dict(components or {})
        self.step = 0
        self.train_seconds = 0.0
        self.retries = 0

    @classmethod
    def stateful_components(cls, built: dict[str, Any], *exclude: Any) -> dict[str, Stateful]:
        """The built components (by TOML path) that carry state, less those owned elsewhere."""
        return {where: obj for where, obj in built.items() if isinstance(obj, Stateful) and all(obj is not e for e in exclude)}

    def state_dict(self, modules: bool = True) -> dict[str, Any]:
        """The whole state; without ``modules``, less the energy's and the EMA's weights
        (a checkpoint writes those as files of their own)."""
        return {
            "step": self.step,
            "train_seconds": self.train_seconds,
            "retries": self.retries,
            **({"energy": self.energy.state_dict()} if modules else {}),
            "optimizer": self.optimizer.state_dict(),
            "ema": None if self.ema is None else self.ema.state_dict(modules),
            "data": self.data.state_dict(),
            "components": {where: obj.state_dict() for where, obj in self.components.items()},
            "rng": global_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state; the weights only when ``state`` has them (see ``state_dict``)."""
        self.step, self.train_seconds = int(state["step"]), float(state["train_seconds"])
        self.retries = int(state.get("retries", 0))
        if "energy" in state:
            self.energy.load_state_dict(state["energy"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        self.data.load_state_dict(state["data"])
        for where, obj in self.components.items():
            obj.load_state_dict(state["components"][where])
        set_global_state(state["rng"])
