from __future__ import annotations

import torch

from ebmkit import EbmkitError

Tensor = torch.Tensor


def optimal_assignment(x0: Tensor, x1: Tensor) -> Tensor:
    """The exact optimal transport of a batch of noise onto a batch of data of the same size,
    under the squared Euclidean cost: ``perm`` such that pairing ``x0[i]`` with ``x1[perm[i]]``
    minimises Σᵢ‖x0ᵢ − x1_perm(i)‖².

    With uniform weights on two equal batches the optimal plan is a permutation (Birkhoff), so
    the exact OT problem the reference solves with POT's ``ot.emd`` (through torchcfm) is the
    assignment problem, solved exactly by scipy's ``linear_sum_assignment``.
    """
    if x0.shape[0] != x1.shape[0]:
        raise ValueError(f"minibatch OT pairs batches of one size, got {x0.shape[0]} and {x1.shape[0]}")
    cost = torch.cdist(x0.detach().flatten(1).double(), x1.detach().flatten(1).double()).square()
    rows, cols = linear_sum_assignment()(cost.cpu().numpy())
    perm = torch.empty(len(rows), dtype=torch.long)
    perm[torch.as_tensor(rows)] = torch.as_tensor(cols)
    return perm.to(x0.device)


def ot_pairs(x0: Tensor, x1: Tensor, resample: bool = True, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Indices ``(i, j)``: the pairs ``(x0[i], x1[j])`` of the batches' exact optimal transport plan.

    With ``resample`` the pairs are drawn from the plan with replacement, as many as the batch,
    as torchcfm's ``OTPlanSampler.sample_plan`` does (the reference's coupling); otherwise every
    pair of the plan once.
    """
    perm = optimal_assignment(x0, x1)
    n = x0.shape[0]
    if resample:
        i = torch.randint(n, (n,), device=x0.device, generator=generator)
    else:
        i = torch.arange(n, device=x0.device)
    return i, perm[i]


def linear_sum_assignment():
    try:
        from scipy.optimize import linear_sum_assignment as solve
    except ImportError:
        raise EbmkitError(
            'minibatch optimal transport is solved with scipy, which is not installed: pip install "ebmkit[energy-matching]"'
        ) from None
    return solve
