"""Random-number states: captured and restored, for work that must not disturb the run's random
streams and for a run state that must continue exactly where it stopped."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch


def rng_state(device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The global CPU state, and the state of ``device``'s generator when it is a GPU."""
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


def set_rng_state(device: torch.device, state: tuple[torch.Tensor, torch.Tensor | None]) -> None:
    cpu, cuda = state
    torch.set_rng_state(cpu)
    if cuda is not None:
        torch.cuda.set_rng_state(cuda, device)


def global_state() -> dict[str, Any]:
    """Every global generator: the CPU one, and each visible GPU's once CUDA is in use (a run
    that never touched CUDA has drawn nothing from it, and reading it would start CUDA)."""
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_global_state(state: dict[str, Any]) -> None:
    """Restore :func:`global_state`; GPUs beyond those visible now are left out."""
    torch.set_rng_state(state["cpu"])
    if state.get("cuda") and torch.cuda.is_available():
        for index, cuda in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda, index)


def normal_like(x: torch.Tensor) -> torch.Tensor:
    """Standard normal noise of ``x``'s shape, dtype and device, drawn in logical (row-major) order
    whatever ``x``'s memory format: a channels-last chain draws the numbers a contiguous one does
    (``torch.randn_like`` fills memory order, which would give each element another number)."""
    if x.is_contiguous():  # memory order is logical order: randn_like draws the same numbers, and costs less
        return torch.randn_like(x)
    return torch.randn(x.shape, dtype=x.dtype, device=x.device)


@contextlib.contextmanager
def seeded(seed: int | None) -> Iterator[None]:
    """Inside the block, the random numbers start from ``seed`` (when given); afterwards every
    generator is as it was. manual_seed reseeds every GPU's generator too, so all are forked."""
    with torch.random.fork_rng(devices=list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []):
        if seed is not None:
            torch.manual_seed(seed)
        yield
