from __future__ import annotations

import torch


def sgd(lr: float = 0.01, momentum: float = 0.0, weight_decay: float = 0.0, *, params) -> torch.optim.Optimizer:
    """SGD with momentum and weight decay (torch.optim.SGD), as in Hinton's RBM recipe."""
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
