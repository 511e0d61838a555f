from __future__ import annotations

from typing import Any

import attrs
import torch

from ebmkit import EbmkitError, EvalContext, component, stack_samples
from ebmkit.plugins.rbm.likelihood import MAX_ENUMERATED, ais_log_z, exact_log_z


@attrs.frozen(kw_only=True)
class RBMLikelihood:
    """Mean log-likelihood of data under an RBM: exact log Z when a layer has <= 20 units, else AIS.

    :ivar data: the binary data scored, e.g. a held-out split (default: the run's data).
    :ivar num_data: at most this many of its first samples.
    :ivar ais_chains, ais_betas: AIS's chains and inverse temperatures, when log Z is not exact.
    """

    data: Any = component("datasets")
    num_data: int = attrs.field(default=2000, validator=attrs.validators.gt(0))
    ais_chains: int = attrs.field(default=100, validator=attrs.validators.gt(0))
    ais_betas: int = attrs.field(default=5000, validator=attrs.validators.gt(1))

    def evaluate(self, ctx: EvalContext) -> dict[str, float]:
        rbm = ctx.energy
        if not hasattr(rbm, "num_hidden"):
            raise EbmkitError("the rbm_likelihood evaluator needs an RBM energy ([energy] name = 'rbm')")
        exact = min(rbm.num_visible, rbm.num_hidden) <= MAX_ENUMERATED
        log_z = exact_log_z(rbm) if exact else ais_log_z(rbm, chains=self.ais_chains, betas=self.ais_betas)
        dataset = self.data if self.data is not None else ctx.dataset
        n = min(self.num_data, len(dataset))
        v = stack_samples(dataset, range(n))[0].to(ctx.device)
        if v[0].numel() != rbm.num_visible:
            raise EbmkitError(f"rbm_likelihood: the data's samples have {v[0].numel()} values, the RBM {rbm.num_visible} visible units")
        with torch.no_grad():
            log_likelihood = float((-rbm(v)).double().mean()) - log_z
        return {"log_likelihood": log_likelihood, "log_z": log_z, "exact": float(exact)}
