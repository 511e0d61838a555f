"""Test classification accuracy of a conditional energy, read as a classifier:
p(y | x) = softmax_y(−E(x, y)) (JEM, Grathwohl et al., ICLR 2020, §2; for the classifier energy
−E(x, y) = f(x)[y], so this is its softmax)."""

from __future__ import annotations

from typing import Any

import attrs
import torch
import torch.nn.functional as F

from ebmkit import EbmkitError
from ebmkit.data import stack_samples
from ebmkit.params import component
from ebmkit.protocols import EvalContext


def class_energies(energy: torch.nn.Module, x: torch.Tensor, num_classes: int) -> torch.Tensor:
    """E(x, y) for every class y, shape (B, K): one pass over the batch per class."""
    return torch.stack([energy(x, torch.full((len(x),), y, device=x.device, dtype=torch.long)) for y in range(num_classes)], 1)


@attrs.frozen
class ClassificationAccuracy:
    """Accuracy and cross-entropy of p(y | x) = softmax(−E(x, ·)) on a held-out labelled test set.

    The test set is ``test_set`` (a dataset table with the training data's labels) when given;
    otherwise the training dataset generated again with ``seed = held_out_seed`` and
    ``num_test`` samples (a procedural dataset with a ``seed`` parameter, such as shapes: the
    same distribution, other samples). ``num_test`` samples are scored. ``majority`` is the
    accuracy of always guessing the test set's most frequent class.
    """

    test_set: Any = component("datasets")
    held_out_seed: int = 1
    num_test: int = attrs.field(default=1000, validator=attrs.validators.gt(0))
    batch_size: int = attrs.field(default=250, validator=attrs.validators.gt(0))

    def held_out(self, dataset: Any) -> Any:
        """The test set: ``test_set``, or ``dataset`` generated again with ``held_out_seed``."""
        if self.test_set is not None:
            return self.test_set
        fields = attrs.fields_dict(type(dataset)) if attrs.has(type(dataset)) else {}
        if "seed" not in fields or not fields["seed"].init:
            raise EbmkitError(
                f"classification_accuracy cannot generate a held-out split of {type(dataset).__name__} (it has no seed "
                "parameter); give a labelled test set: [evaluators.test_set]"
            )
        if dataset.seed == self.held_out_seed:
            raise EbmkitError(
                f"held_out_seed = {self.held_out_seed} is the training data's own seed: the test set would be the training set"
            )
        changes = {"seed": self.held_out_seed}
        if "size" in fields and fields["size"].init:
            changes["size"] = self.num_test
        return attrs.evolve(dataset, **changes)

    @torch.no_grad()
    def evaluate(self, ctx: EvalContext) -> dict[str, float | str]:
        classes = getattr(ctx.dataset, "num_classes", None)
        if not classes:
            raise EbmkitError("classification_accuracy scores a model of labelled data; this run's data has no labels")
        test = self.held_out(ctx.dataset)
        if test.num_classes != classes:
            raise EbmkitError(f"the test set has {test.num_classes} classes, the training data {classes}: they must be the same labels")
        trained_on, tested_on = getattr(ctx.dataset, "conditioning", None), getattr(test, "conditioning", None)
        if trained_on is not None and tested_on is not None and trained_on != tested_on:
            raise EbmkitError(
                f"the test set's labels are {tested_on.attribute} ({', '.join(tested_on.classes)}), the training data's "
                f"{trained_on.attribute} ({', '.join(trained_on.classes)}): they must be the same"
            )
        if tuple(test.sample_shape) != tuple(ctx.dataset.sample_shape):
            raise EbmkitError(f"the test set has samples of shape {tuple(test.sample_shape)}, the training data {tuple(ctx.dataset.sample_shape)}")
        n = min(self.num_test, len(test))
        correct, nll, counts = 0.0, 0.0, torch.zeros(classes)
        for start in range(0, n, self.batch_size):
            x, y = stack_samples(test, range(start, min(start + self.batch_size, n)))
            x, y = x.to(ctx.device), y.to(ctx.device)
            logits = -class_energies(ctx.energy, x, classes)
            correct += float((logits.argmax(1) == y).sum())
            nll += float(F.cross_entropy(logits.float(), y, reduction="sum"))
            counts += torch.bincount(y.cpu(), minlength=classes)
        return {
            "accuracy": correct / n,
            "cross_entropy": nll / n,
            "majority": float(counts.max()) / n,
            "protocol": f"argmax_y of -E(x, y) on {n} test samples, {classes} classes, "
            + ("EMA weights" if ctx.ema else "the trained weights" if ctx.ema is False else "the weights given"),
        }
