"""Log partition functions of an RBM: exact by enumeration, or estimated by annealed importance sampling."""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F

from ebmkit import EbmkitError

MAX_ENUMERATED = 20


def all_states(n: int, dtype=torch.float64) -> torch.Tensor:
    """Every binary vector of length n, shape (2^n, n)."""
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=n)), dtype=dtype)


def exact_log_z(rbm) -> float:
    """log Z by summing out the larger layer analytically and enumerating the smaller one (≤ 20 units)."""
    w, a, b = rbm.weight.detach().double(), rbm.visible_bias.detach().double(), rbm.hidden_bias.detach().double()
    n_v, n_h = w.shape
    if min(n_v, n_h) > MAX_ENUMERATED:
        raise EbmkitError(f"exact log Z enumerates the smaller layer, at most {MAX_ENUMERATED} units; this RBM has {n_v} visible and {n_h} hidden (use AIS)")
    total = []
    if n_h <= n_v:  # log Σ_h exp(bᵀh) Π_i (1 + exp(a_i + (Wh)_i))
        for h in all_states(n_h).split(65536):
            total.append(h @ b + F.softplus(a + h @ w.T).sum(1))
    else:  # log Σ_v exp(−F(v))
        for v in all_states(n_v).split(65536):
            total.append(v @ a + F.softplus(b + v @ w).sum(1))
    return float(torch.logsumexp(torch.cat(total), 0))


def ais_log_z(rbm, *, chains: int = 100, betas: int = 5000, generator: torch.Generator | None = None) -> float:
    """log Z by annealed importance sampling (Salakhutdinov & Murray, 2008).

    The base model keeps the visible biases and drops the interaction (β = 0):
    log Z₀ = Σ_i softplus(a_i) + H log 2. Intermediate models temper the interaction by β,
    with −F_β(v) = aᵀv + Σ_j softplus(β(b_j + (vᵀW)_j)), and are moved by block Gibbs at β.
    """
    w, a, b = rbm.weight.detach().double(), rbm.visible_bias.detach().double(), rbm.hidden_bias.detach().double()
    n_h = w.shape[1]
    schedule = torch.linspace(0.0, 1.0, betas, dtype=torch.float64)

    def neg_free(v, beta):
        return v @ a + F.softplus(beta * (b + v @ w)).sum(1)

    v = torch.bernoulli(torch.sigmoid(a).expand(chains, -1), generator=generator)
    log_w = torch.zeros(chains, dtype=torch.float64)
    for previous, beta in zip(schedule[:-1], schedule[1:], strict=True):
        log_w += neg_free(v, beta) - neg_free(v, previous)
        h = torch.bernoulli(torch.sigmoid(beta * (b + v @ w)), generator=generator)
        v = torch.bernoulli(torch.sigmoid(a + beta * h @ w.T), generator=generator)
    log_z0 = float(F.softplus(a).sum()) + n_h * math.log(2)
    return log_z0 + float(torch.logsumexp(log_w, 0) - math.log(chains))
