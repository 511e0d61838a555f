from __future__ import annotations

from typing import Any

import torch


def as_items(x: torch.Tensor, labels: torch.Tensor | None) -> list[Any]:
    """A batch as ``__getitems__`` returns it: the list of its samples, or of (sample, label) pairs."""
    samples = list(x.unbind(0))
    return samples if labels is None else list(zip(samples, labels.unbind(0), strict=True))
