from __future__ import annotations

from typing import Annotated

import attrs
import torch


def sgd(
    lr: Annotated[float, attrs.validators.gt(0)] = 0.01,
    momentum: Annotated[float, attrs.validators.ge(0), attrs.validators.lt(1)] = 0.0,
    weight_decay: Annotated[float, attrs.validators.ge(0)] = 0.0,
    *,
    params,
) -> torch.optim.Optimizer:
    """SGD with momentum and weight decay (torch.optim.SGD), as in Hinton's RBM recipe."""
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
