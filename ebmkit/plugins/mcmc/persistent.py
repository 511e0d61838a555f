from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import torch

from ebmkit import EbmkitError


@attrs.define(kw_only=True)
class PersistentChains:
    """Persistent chains (PCD, Tieleman 2008): the same chains continue from one update to the next.

    The first draw starts ``n`` chains from noise; every later draw returns them where the
    sampler left them (``push`` stores the sampler's output). The state goes into checkpoints.
    """

    noise: Callable[[int], torch.Tensor] | None = attrs.field(default=None, repr=False)
    chains: torch.Tensor | None = attrs.field(default=None, init=False, repr=False)

    def __len__(self) -> int:
        return 0 if self.chains is None else len(self.chains)

    def draw(self, n: int, data: torch.Tensor) -> torch.Tensor:
        if self.chains is None:
            self.chains = self.noise(n).to(data.device, data.dtype)
        if n != len(self.chains):
            raise EbmkitError(f"persistent chains were started with {len(self.chains)} chains, but {n} were asked for")
        self.chains = self.chains.to(data.device)  # a no-op unless restored from another device
        return self.chains

    def push(self, x: torch.Tensor) -> None:
        self.chains = x.detach().clone()

    def state_dict(self) -> dict[str, Any]:
        return {} if self.chains is None else {"chains": self.chains.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.chains = state["chains"].clone() if "chains" in state else None


@attrs.define(kw_only=True)
class DataChains:
    """Chains that start at the current data batch: contrastive divergence CD-k (Hinton 2002)."""

    def __len__(self) -> int:
        return 0

    def draw(self, n: int, data: torch.Tensor) -> torch.Tensor:
        return data.detach().clone() if data.requires_grad else data.clone()

    def push(self, x: torch.Tensor) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass
