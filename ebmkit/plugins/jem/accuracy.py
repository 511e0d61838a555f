"""Test classification accuracy of a conditional energy, read as a classifier:
p(y | x) = softmax_y(−E(x, y)) (JEM, Grathwohl et al., ICLR 2020, §2; for the classifier energy
−E(x, y) = f(x)[y], so this is its softmax), and the expected calibration error of that classifier."""

from __future__ import annotations

from typing import Any

import attrs
import torch
import torch.nn.functional as F

from ebmkit import EbmkitError, EvalContext, component, stack_samples

#: Equal-width confidence bins of the expected calibration error: 15, as Guo et al. (ICML 2017,
#: "On calibration of modern neural networks") use.
ECE_BINS = 15


def class_energies(energy: torch.nn.Module, x: torch.Tensor, num_classes: int) -> torch.Tensor:
    """E(x, y) for every class y, shape (B, K): one pass over the batch per class."""
    return torch.stack([energy(x, torch.full((len(x),), y, device=x.device, dtype=torch.long)) for y in range(num_classes)], 1)


def expected_calibration_error(confidence: torch.Tensor, correct: torch.Tensor, bins: int = ECE_BINS) -> float:
    """Σ_b (n_b / n)·|accuracy_b − mean confidence_b| over ``bins`` equal-width bins of the
    confidence (bin b holds confidences in ((b − 1)/bins, b/bins], the first also 0): how far the
    classifier's stated confidence is from how often it is right (0: calibrated).

    :param confidence: max_y p(y | x) of each sample, (N,), in [0, 1].
    :param correct: whether each prediction was right, (N,).
    """
    confidence, correct = confidence.double().flatten(), correct.double().flatten()
    if len(confidence) == 0 or len(confidence) != len(correct):
        raise EbmkitError(
            f"expected_calibration_error needs as many confidences as predictions, at least one; got {len(confidence)} and {len(correct)}"
        )
    index = (torch.ceil(confidence * bins).long() - 1).clamp(0, bins - 1)
    # n_b·(accuracy_b − confidence_b) is the bin's sum of (right − confidence)
    gap = torch.bincount(index, weights=correct - confidence, minlength=bins)
    return float(gap.abs().sum() / len(confidence))


@attrs.frozen
class ClassificationAccuracy:
    """Accuracy and cross-entropy of p(y | x) = softmax(−E(x, ·)) on a held-out labelled test set.

    The test set is ``test_set`` (a dataset table with the training data's labels) when given;
    otherwise the training dataset generated again with ``seed = held_out_seed`` and
    ``num_test`` samples (a procedural dataset with a ``seed`` parameter, such as shapes: the
    same distribution, other samples). ``num_test`` samples are scored. ``majority`` is the
    accuracy of always guessing the test set's most frequent class. ``ece`` is the expected
    calibration error of max_y p(y | x) in ECE_BINS (15) equal-width confidence bins, and
    ``confidence`` the mean of max_y p(y | x).
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
        nll, counts, confidence, right = 0.0, torch.zeros(classes), [], []
        for start in range(0, n, self.batch_size):
            x, y = stack_samples(test, range(start, min(start + self.batch_size, n)))
            x, y = x.to(ctx.device), y.to(ctx.device)
            logits = -class_energies(ctx.energy, x, classes).float()
            probability, predicted = logits.softmax(1).max(1)
            confidence.append(probability.cpu())
            right.append((predicted == y).cpu())
            nll += float(F.cross_entropy(logits, y, reduction="sum"))
            counts += torch.bincount(y.cpu(), minlength=classes)
        confidence, right = torch.cat(confidence), torch.cat(right)
        return {
            "accuracy": float(right.double().mean()),
            "ece": expected_calibration_error(confidence, right),
            "confidence": float(confidence.double().mean()),
            "cross_entropy": nll / n,
            "majority": float(counts.max()) / n,
            "protocol": f"argmax_y of -E(x, y) on {n} test samples, {classes} classes, ECE in {ECE_BINS} equal-width confidence bins, "
            + ("EMA weights" if ctx.ema else "the trained weights" if ctx.ema is False else "the weights given"),
        }
