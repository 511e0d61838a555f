"""The JEM objective (Grathwohl et al., ICLR 2020, "Your classifier is secretly an energy based
model", §3; code: wgrathwohl/JEM, train_wrn_ebm.py).

JEM maximises log p(x, y) = log p(y | x) + log p(x) of a classifier read as an energy
(:mod:`ebmkit.plugins.jem.classifier_energy`: E(x, y) = −f(x)[y], E(x) = −logsumexp_y f(x)[y])::

    L = classify_weight · CE(softmax(f(x+)), y+)  +  generate_weight · [mean E(x+) − mean E(x−)]

The first term is ordinary cross-entropy, −log p(y | x). The second is the contrastive-
divergence surrogate of −log p(x) for the *marginal* energy: its gradient is
E_data[∇θ E(x)] − E_model[∇θ E(x)], with x− drawn from p(x) ∝ exp(−E(x)) by SGLD
(persistent chains in a replay buffer). The loss therefore asks the loop for negatives from
the marginal, ``Needs(conditional=False)``: the sampler runs with ``cond=None`` even on
labelled data, and ``batch.e_neg`` is E(x−).
"""

from __future__ import annotations

import attrs
import torch
import torch.nn.functional as F

from ebmkit import EbmkitError, LossOutput, Needs, TrainBatch, unwrap


def has_logits(energy: torch.nn.Module) -> bool:
    """Whether ``energy`` (under any device wrapper) has class logits, a ``logits(x)`` method."""
    return callable(getattr(unwrap(energy), "logits", None))


def class_logits(energy: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """f(x), shape (B, K), from an energy that has a ``logits(x)`` method (under any device wrapper)."""
    if not has_logits(energy):
        raise EbmkitError(
            f"the jem loss's classification term needs an energy with class logits f(x) (a logits(x) method, e.g. "
            f"energy 'classifier'); {type(unwrap(energy)).__name__} has none"
        )
    return unwrap(energy).logits(x)


def marginal_negative_energies(batch: TrainBatch) -> torch.Tensor:
    """E(x−) with no labels, shape (B,): the batch's shared ``e_neg`` when the loop sampled from
    the marginal (or the data has no labels), else computed here with ``cond=None``."""
    if batch.x_neg is None:
        raise EbmkitError("the jem loss's generative term needs negative samples, but the sampler was not run")
    if not batch.conditional_negatives or batch.cond is None:
        return batch.e_neg
    # A batch built by hand (not by the loop) may hold conditional negatives' energies in e_neg.
    return batch.energy(batch.x_neg.detach(), None)


def _validate_weights(instance: JEM, attribute: attrs.Attribute, value: float) -> None:
    if instance.classify_weight == 0 and instance.generate_weight == 0:
        raise ValueError("classify_weight and generate_weight are both 0: the jem loss would train nothing")


@attrs.frozen(kw_only=True)
class JEM:
    """JEM: classify_weight·CE(softmax f(x+), y) + generate_weight·[mean E(x+) − mean E(x−)], E(x) = −logsumexp_y f(x)[y].

    The cross-entropy needs an energy with class logits (energy ``classifier``) and labelled
    data; with ``classify_weight = 0`` any energy takes the generative term, E(x) = E(x, None). Negatives are sampled from the marginal p(x) (``Needs(conditional=False)``),
    so a recipe cannot mix it with a term that wants conditional negatives (``cd``).
    ``data_noise`` adds N(0, σ²) to the data before both terms, as JEM does (σ = 0.03 on
    images in [−1, 1]). ``energy_l2`` = α adds α·(mean E(x+)² + mean E(x−)²) of the marginal
    energies with the generative term: IGEBM's regulariser (Du & Mordatch 2019), not in JEM's
    code, off by default (the standalone ``energy_l2`` term cannot join this recipe: it asks
    for conditional negatives). Metrics: ``jem/accuracy`` and ``jem/cross_entropy`` of the
    batch, ``jem/gap`` = mean E(x+) − mean E(x−) of the marginal energy.
    """

    classify_weight: float = attrs.field(default=1.0, validator=attrs.validators.ge(0))
    generate_weight: float = attrs.field(default=1.0, validator=[attrs.validators.ge(0), _validate_weights])
    data_noise: float = attrs.field(default=0.0, validator=attrs.validators.ge(0))
    energy_l2: float = attrs.field(default=0.0, validator=attrs.validators.ge(0))

    @property
    def needs(self) -> Needs:
        # A pure classifier (generate_weight = 0) needs no sampling at all.
        return Needs(negatives=self.generate_weight > 0, conditional=False)

    def __call__(self, batch: TrainBatch) -> LossOutput:
        x = batch.x_pos
        if self.data_noise:
            x = x + self.data_noise * torch.randn_like(x)
        # An energy without logits can still take the generative term alone (classify_weight = 0).
        logits = class_logits(batch.energy, x) if self.classify_weight or has_logits(batch.energy) else None
        value = x.new_zeros(())
        metrics: dict[str, torch.Tensor] = {}
        if logits is not None and batch.cond is not None:
            labels = batch.cond.long()
            cross_entropy = F.cross_entropy(logits, labels)
            metrics["jem/cross_entropy"] = cross_entropy.detach()
            metrics["jem/accuracy"] = (logits.detach().argmax(1) == labels).float().mean()
            if self.classify_weight:
                value = value + self.classify_weight * cross_entropy
        elif self.classify_weight:
            raise EbmkitError(
                "the jem loss's classification term (classify_weight > 0) needs labelled data, but the batch has no labels; "
                "choose labels in [data] (e.g. label = \"shape\"), or set classify_weight = 0"
            )
        if self.generate_weight:
            # E(x+) = −logsumexp_y f(x+)[y], the marginal (not E(x+, y+)), from the logits already computed
            e_pos = -torch.logsumexp(logits, dim=1) if logits is not None else batch.energy(x, None)
            e_neg = marginal_negative_energies(batch)
            gap = e_pos.mean() - e_neg.mean()
            metrics["jem/gap"] = gap.detach()
            value = value + self.generate_weight * gap
            if self.energy_l2:
                value = value + self.energy_l2 * (e_pos.pow(2).mean() + e_neg.pow(2).mean())
        return LossOutput(value, metrics)
