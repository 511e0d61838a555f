"""Reading a dataset (see :class:`ebmkit.protocols.Dataset`) outside the training loop."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


def stack_samples(dataset: Any, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The samples at ``indices`` as one batch, and their labels (None for unlabelled data)."""
    items = [dataset[i] for i in indices]
    if not isinstance(items[0], tuple | list):
        return torch.stack(items), None
    return torch.stack([item[0] for item in items]), torch.as_tensor([int(item[1]) for item in items])
