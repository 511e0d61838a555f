from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import attrs
import torch


@attrs.define(kw_only=True)
class ReplayBuffer:
    """Replay buffer of past samples (FIFO or reservoir); chains restart from noise with probability reinit_prob."""

    capacity: int = attrs.field(default=10_000, validator=attrs.validators.gt(0))
    reinit_prob: float = attrs.field(default=0.05, validator=[attrs.validators.ge(0), attrs.validators.le(1)])
    policy: Literal["fifo", "reservoir"] = attrs.field(default="fifo", validator=attrs.validators.in_(("fifo", "reservoir")))
    noise: Callable[[int], torch.Tensor] = attrs.field(default=None, repr=False)
    storage: torch.Tensor | None = attrs.field(default=None, init=False, repr=False)
    size: int = attrs.field(default=0, init=False)
    offered: int = attrs.field(default=0, init=False)

    def __len__(self) -> int:
        return self.size

    def draw(self, n: int, data: torch.Tensor) -> torch.Tensor:
        fresh = self.noise(n).to(data.device)
        if self.size < n:
            return fresh
        index = torch.randint(self.size, (n,), device=self.storage.device)
        replay = self.storage[index].to(data.device, data.dtype)
        keep = torch.rand(n, device=data.device) >= self.reinit_prob
        return torch.where(keep.view(-1, *([1] * (fresh.dim() - 1))), replay, fresh)

    def push(self, x: torch.Tensor) -> None:
        x = x.detach()
        if self.storage is None:
            self.storage = torch.empty(self.capacity, *x.shape[1:], dtype=x.dtype, device=x.device)
        n = x.shape[0]
        if self.policy == "fifo":
            slots = (self.offered + torch.arange(n, device=x.device)) % self.capacity
            if n > self.capacity:  # only the newest `capacity` survive
                slots, x = slots[-self.capacity:], x[-self.capacity:]
            self.storage[slots] = x
            self.size = min(self.capacity, self.size + n)
        else:
            self._reservoir(x)
        self.offered += n

    def _reservoir(self, x: torch.Tensor) -> None:
        # Item k of all offers (1-based count m) is kept with probability capacity/m, replacing
        # a uniform slot: afterwards every offered item is present with probability capacity/N.
        n = x.shape[0]
        counts = self.offered + torch.arange(1, n + 1, device=x.device)
        filling = counts <= self.capacity
        slots = torch.where(filling, counts - 1, (torch.rand(n, device=x.device) * counts).long())
        accepted = slots < self.capacity
        # When two offers of one batch pick the same slot, the later one wins, as in a sequential loop.
        order = torch.arange(n, device=x.device)
        winner = torch.full((self.capacity,), -1, dtype=torch.long, device=x.device)
        winner.scatter_reduce_(0, slots[accepted], order[accepted], reduce="amax")
        filled = winner >= 0
        self.storage[filled] = x[winner[filled]]
        self.size = min(self.capacity, self.offered + n)

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"size": self.size, "offered": self.offered}
        if self.storage is not None:
            state["storage"] = self.storage[: self.size].clone()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.size, self.offered = int(state["size"]), int(state["offered"])
        if "storage" in state:
            stored = state["storage"]
            self.storage = torch.empty(self.capacity, *stored.shape[1:], dtype=stored.dtype, device=stored.device)
            self.storage[: self.size] = stored
