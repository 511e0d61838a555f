from __future__ import annotations

from typing import Any

import torch


def first_item(batch: tuple[torch.Tensor, torch.Tensor | None]) -> Any:
    """The first sample of a batch that ``read_batch`` returned, as ``dataset[i]`` gives it:
    the sample, or (sample, label)."""
    x, labels = batch
    return x[0] if labels is None else (x[0], labels[0])
