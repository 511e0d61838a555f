"""Reading datasets (see :class:`ebmkit.Dataset`): training batches, fresh chain starts,
and batches for evaluators."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from ebmkit._host.errors import EbmkitError


def stack_samples(dataset: Any, indices: Sequence[int] | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The samples at ``indices`` as one batch, and their labels (None for unlabelled data).

    A dataset with ``read_batch`` (see :class:`ebmkit.Dataset`) is read in one call; others
    one sample at a time.
    """
    read_batch = getattr(dataset, "read_batch", None)
    if read_batch is not None:
        return read_batch(indices if isinstance(indices, torch.Tensor) else torch.as_tensor(list(indices), dtype=torch.long))
    return stack_items([dataset[i] for i in (indices.tolist() if isinstance(indices, torch.Tensor) else indices)])


def stack_items(items: Sequence[Any]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Dataset items (samples, or (sample, label) pairs) as one batch and its labels."""
    if not isinstance(items[0], tuple | list):
        return torch.stack(items), None
    return torch.stack([item[0] for item in items]), torch.as_tensor([int(item[1]) for item in items])


def chain_starts(
    shape: Sequence[int], domain: tuple[float, float] | None, device: torch.device | str = "cpu"
) -> Callable[[int], torch.Tensor]:
    """``noise(n)``: fresh chain starts, uniform over ``domain = (low, high)``, or standard normal."""
    shape = tuple(shape)

    def noise(n: int) -> torch.Tensor:
        if domain is None:
            return torch.randn(n, *shape, device=device)
        low, high = domain
        return torch.rand(n, *shape, device=device) * (high - low) + low

    return noise


class DataStream:
    """Training batches in shuffled epochs, with a position that can be saved and restored.

    In a data-parallel run, rank ``rank`` of ``world_size`` reads its own share of each epoch.

    Each epoch is a permutation drawn from the stream's own generator (seeded by the run's
    seed); the last incomplete batch of an epoch is dropped. The draws are those of
    ``torch.utils.data.DataLoader(shuffle=True, drop_last=True, generator=...)``, so the
    batches are the ones a DataLoader gives, and a restored stream continues mid-epoch.
    """

    def __init__(self, dataset: Any, batch_size: int, seed: int, rank: int = 0, world_size: int = 1):
        share = len(dataset) // world_size
        if share < batch_size:
            ranks = f" on each of {world_size} ranks ({share} samples each)" if world_size > 1 else ""
            raise EbmkitError(f"the dataset has {len(dataset)} samples, fewer than one batch of {batch_size}{ranks}")
        self.dataset, self.batch_size = dataset, batch_size
        self.rank, self.world_size, self.share = rank, world_size, share
        self.generator = torch.Generator().manual_seed(seed)
        self.epoch, self.position = -1, 0
        self._order = torch.empty(0, dtype=torch.long)
        self._batches: tuple[torch.Tensor, ...] = ()
        self._epoch_start = self.generator.get_state()

    def _start_epoch(self) -> None:
        if self.epoch >= 0:
            # A DataLoader's RandomSampler draws one more permutation when its epoch runs out.
            torch.randperm(len(self.dataset), generator=self.generator)
        self._epoch_start = self.generator.get_state()
        self._draw_order()
        self.epoch, self.position = self.epoch + 1, 0

    def _draw_order(self) -> None:
        # A DataLoader iterator draws a base seed before its sampler shuffles.
        torch.empty((), dtype=torch.int64).random_(generator=self.generator)
        order = torch.randperm(len(self.dataset), generator=self.generator)
        # Every rank draws the same permutation and takes its own interleaved share of it, as
        # DistributedSampler does (each epoch's shares are disjoint and equally long).
        self._order = order[self.rank :: self.world_size][: self.share]
        self._batches = self._order.split(self.batch_size)  # (views, made once an epoch rather than a slice an update)

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The next batch and its labels (None for unlabelled data)."""
        if self.epoch < 0 or self.position + self.batch_size > len(self._order):
            self._start_epoch()
        chunk, offset = divmod(self.position, self.batch_size)
        indices = self._order[self.position : self.position + self.batch_size] if offset else self._batches[chunk]
        self.position += self.batch_size
        return stack_samples(self.dataset, indices)

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "position": self.position, "epoch_generator": self._epoch_start.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["epoch_generator"])
        self._epoch_start = state["epoch_generator"].clone()
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        if self.epoch >= 0:  # the epoch's permutation, drawn again exactly as it was
            self._draw_order()
