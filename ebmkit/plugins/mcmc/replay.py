from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import attrs
import torch

from ebmkit import StepContext, checked, component


@attrs.define(kw_only=True)
class ReplayBuffer:
    """Replay buffer of past samples (FIFO or reservoir); chains restart from noise with probability reinit_prob.

    - ``fifo`` keeps the newest ``capacity`` samples; ``reservoir`` keeps a uniform sample of
      everything ever offered. As the Improved-CD reference's reservoir does, it fills by whole
      batches until it holds at least ``capacity`` samples (10,112 for capacity 10,000 and batch
      128), then keeps that size: each of N offers is present with probability size/N.
    - ``uint8`` stores images as 255·clip(x, 0, 1) in one byte per value and dequantises each
      draw as x/256 + U(0, 1/256), as the Improved-CD reference does.
    - ``on_draw`` is a transition applied to every sample drawn from the buffer (e.g.
      ``[buffer.on_draw]`` ``name = "augment"``); fresh noise is not transformed.
    - The full state (samples, counts) goes into checkpoints via ``state_dict``.
    """

    capacity: int = attrs.field(default=10_000, validator=attrs.validators.gt(0))
    reinit_prob: float = attrs.field(default=0.05, validator=[attrs.validators.ge(0), attrs.validators.le(1)])
    policy: Literal["fifo", "reservoir"] = attrs.field(default="fifo", validator=attrs.validators.in_(("fifo", "reservoir")))
    uint8: bool = False
    on_draw: Any = component("transitions")
    noise: Callable[[int], torch.Tensor] | None = attrs.field(default=None, repr=False)
    storage: torch.Tensor | None = attrs.field(default=None, init=False, repr=False)
    size: int = attrs.field(default=0, init=False)
    offered: int = attrs.field(default=0, init=False)

    def __len__(self) -> int:
        return self.size

    def reference_samples(self, n: int, *, dtype: torch.dtype = torch.float32, device: torch.device | None = None) -> torch.Tensor:
        """``n`` stored samples drawn uniformly with replacement (decoded, ``on_draw`` applied)."""
        index = torch.randint(self.size, (n,), device=self.storage.device)
        x = self._decode(self.storage.index_select(0, index), dtype)
        if device is not None:
            x = x.to(device)
        if self.on_draw is not None:
            x = checked.step(self.on_draw, None, x, StepContext(index=0, total=1)).x
        return x

    def draw(self, n: int, data: torch.Tensor) -> torch.Tensor:
        if self.noise is None:
            raise ValueError("the replay buffer needs a noise source (given by the runner)")
        fresh = self.noise(n).to(data.device, data.dtype)
        if self.size < n:
            return fresh
        replay = self.reference_samples(n, dtype=data.dtype, device=data.device)
        keep = torch.rand(n, device=data.device) >= self.reinit_prob
        return torch.where(keep.view(-1, *([1] * (fresh.dim() - 1))), replay, fresh)

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        # Round like the reference's uint8 cast of 255·clip(x): values stay in 0..255 with no wrap-around.
        return (x.clamp(0, 1) * 255).to(torch.uint8) if self.uint8 else x

    def _decode(self, stored: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        if not self.uint8:
            return stored.to(dtype)
        return stored.to(dtype) / 256 + torch.rand(stored.shape, device=stored.device, dtype=dtype) / 256

    def push(self, x: torch.Tensor) -> None:
        x = self._encode(x.detach())
        if self.storage is None:
            self.storage = torch.empty(self.capacity, *x.shape[1:], dtype=x.dtype, device=x.device)
        elif self.storage.device != x.device:  # restored from a checkpoint saved on another device
            self.storage = self.storage.to(x.device)
        n = x.shape[0]
        if self.policy == "fifo":
            slots = (self.offered + torch.arange(n, device=x.device)) % self.capacity
            if n > self.capacity:  # only the newest `capacity` survive
                slots, x = slots[-self.capacity:], x[-self.capacity:]
            self.storage[slots] = x
            self.size = min(self.capacity, self.size + n)
        elif self.size < self.capacity:  # filling: the whole batch goes in, as in the reference
            if self.size + n > len(self.storage):
                extra = self.storage.new_empty(self.size + n - len(self.storage), *self.storage.shape[1:])
                self.storage = torch.cat([self.storage, extra])
            self.storage[self.size : self.size + n] = x
            self.size += n
        else:
            self._reservoir(x)
        self.offered += n

    def _reservoir(self, x: torch.Tensor) -> None:
        # Offer number m (1-based, over all time) is kept with probability size/m, replacing a
        # uniform slot (Algorithm R): then every offer is present with probability size/N.
        n = x.shape[0]
        counts = self.offered + torch.arange(1, n + 1, device=x.device)
        slots = (torch.rand(n, device=x.device) * counts).long()
        accepted = slots < self.size
        # When two offers of one batch pick the same slot, the later one wins, as in a sequential loop.
        winner = torch.full((self.size,), -1, dtype=torch.long, device=x.device)
        winner.scatter_reduce_(0, slots[accepted], torch.arange(n, device=x.device)[accepted], reduce="amax")
        filled = winner >= 0
        self.storage[: self.size][filled] = x[winner[filled]]

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"size": torch.tensor(self.size), "offered": torch.tensor(self.offered)}
        if self.storage is not None:
            state["storage"] = self.storage[: self.size].clone()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.size, self.offered = int(state["size"]), int(state["offered"])
        if "storage" in state:
            stored = state["storage"]
            slots = max(self.capacity, self.size)  # a reservoir may hold up to a batch more
            self.storage = torch.empty(slots, *stored.shape[1:], dtype=stored.dtype, device=stored.device)
            self.storage[: self.size] = stored
