"""Which attributes samples of shapes carry: a small classifier trained on the shapes dataset's labels."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import attrs
import torch
import torch.nn.functional as F
from torch import nn

from ebmkit import EbmkitError, EvalContext
from ebmkit.plugins.images.shapes import ATTRIBUTES, Shapes

CLASSIFIER_SEED = 20_211_130  # its own data, never the training run's


class ShapesClassifier(nn.Module):
    """A small CNN with one head per shapes attribute (shape, color, size, position)."""

    def __init__(self, image_size: int):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(),
        )
        self.heads = nn.ModuleDict({name: nn.Linear(64 * 16, len(values)) for name, values in ATTRIBUTES.items()})
        self.image_size = image_size

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.features(x)
        return {name: head(h) for name, head in self.heads.items()}


def _noisy(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    # Samples of an EBM are noisier than the data; a classifier that saw only clean images would
    # call a slightly noisy red circle something else.
    scale = torch.rand(len(x), 1, 1, 1, generator=generator) * 0.08
    return (x + scale * torch.randn(x.shape, generator=generator)).clamp(0, 1)


def train_classifier(image_size: int, steps: int, seed: int = CLASSIFIER_SEED) -> tuple[ShapesClassifier, dict[str, float]]:
    """Train on generated shapes; return it and its accuracy per attribute on held-out shapes."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        train = Shapes(size=min(6000, 128 * steps), image_size=image_size, seed=seed)
        held_out = Shapes(size=min(1000, 128 * steps), image_size=image_size, seed=seed + 1)
        model = ShapesClassifier(image_size)
        optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
        images = train.images.float() / 255
        for _ in range(steps):
            index = torch.randint(len(images), (128,), generator=generator)
            logits = model(_noisy(images[index], generator))
            loss = sum(F.cross_entropy(logits[name], train.attributes[index, i]) for i, name in enumerate(ATTRIBUTES))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            predicted = model(held_out.images.float() / 255)
        accuracy = {
            name: float((predicted[name].argmax(1) == held_out.attributes[:, i]).float().mean()) for i, name in enumerate(ATTRIBUTES)
        }
    return model, accuracy


def cached_classifier(folder: Path, image_size: int, steps: int) -> tuple[ShapesClassifier, dict[str, float]]:
    """The classifier cached in ``folder`` (trained and written there on first use)."""
    import safetensors.torch

    stem = folder / f"shapes_classifier_{image_size}px_{steps}steps"
    weights, record = stem.with_suffix(".safetensors"), stem.with_suffix(".json")
    if weights.exists() and record.exists():
        model = ShapesClassifier(image_size)
        safetensors.torch.load_model(model, str(weights))
        return model.eval(), json.loads(record.read_text())["held_out_accuracy"]
    model, accuracy = train_classifier(image_size, steps)
    folder.mkdir(parents=True, exist_ok=True)
    safetensors.torch.save_model(model, str(weights))
    record.write_text(json.dumps({"image_size": image_size, "steps": steps, "held_out_accuracy": accuracy}, indent=1))
    return model, accuracy


def chance(requirement) -> float:
    """How often a shape drawn as the dataset draws them (every combination equally likely) meets ``requirement``."""
    combinations = list(itertools.product(*ATTRIBUTES.values()))
    labels = {name: [c[i] for c in combinations] for i, name in enumerate(ATTRIBUTES)}
    return sum(requirement.holds(labels)) / len(combinations)


@attrs.frozen
class AttributeClassifier:
    """The fraction of samples that carry the requested shapes attributes, scored by a classifier.

    The classifier is trained on the shapes dataset's labels once, and cached in the run folder's ``cache/``.

    In a training run of a conditional shapes model, it samples ``num_samples`` chains spread
    over the classes and scores whether each carries its class. Under ``ebmkit compose`` it
    scores the composition's samples against what the expression asks for (``red + circle``:
    color=red and shape=circle) and reports the chance level beside it.
    """

    num_samples: int = attrs.field(default=60, validator=attrs.validators.gt(0))
    train_steps: int = attrs.field(default=400, validator=attrs.validators.gt(0))

    def labels(self, ctx: EvalContext, x: torch.Tensor) -> tuple[dict[str, list[str]], dict[str, float]]:
        if x.dim() != 4 or x.shape[1] != 3 or x.shape[2] != x.shape[3]:
            raise EbmkitError(f"the shapes attribute classifier reads RGB square images, got samples of shape {tuple(x.shape[1:])}")
        model, accuracy = cached_classifier(ctx.cache, x.shape[-1], self.train_steps)
        with torch.no_grad():
            logits = model(x.detach().float().cpu().clamp(0, 1))
        labels = {name: [ATTRIBUTES[name][i] for i in logits[name].argmax(1).tolist()] for name in ATTRIBUTES}
        return labels, {f"classifier_accuracy/{name}": value for name, value in accuracy.items()}

    def evaluate(self, ctx: EvalContext) -> dict[str, float]:
        if ctx.samples is not None:
            return self._score_composition(ctx)
        conditioning = getattr(ctx.dataset, "conditioning", None)
        if conditioning is None or conditioning.attribute not in ATTRIBUTES:
            raise EbmkitError(
                "the attribute_classifier evaluator scores a conditional shapes model (data.label set) or a "
                "composition (ebmkit compose); this run's data has no shapes attribute as its label"
            )
        count = len(conditioning.classes)
        cond = torch.arange(self.num_samples, device=ctx.device) % count
        x = ctx.sampler.sample(ctx.energy, ctx.noise(self.num_samples), cond=cond).x
        labels, metrics = self.labels(ctx, x)
        carried = [got == conditioning.classes[c] for got, c in zip(labels[conditioning.attribute], cond.tolist(), strict=True)]
        for index, name in enumerate(conditioning.classes):
            rows = [carried[i] for i in range(self.num_samples) if cond[i] == index]
            metrics[f"carries/{name}"] = sum(rows) / len(rows)
        metrics["carries_condition"] = sum(carried) / len(carried)
        metrics["chance"] = 1 / count
        return metrics

    def _score_composition(self, ctx: EvalContext) -> dict[str, float]:
        requirement = ctx.requirement
        if requirement is None:
            raise EbmkitError("the expression asks for no attribute (its models are unconditional); nothing to score")
        labels, metrics = self.labels(ctx, ctx.samples)
        attributes = _attributes(requirement)
        unknown = sorted(attributes - set(ATTRIBUTES))
        if unknown:
            raise EbmkitError(
                f"the shapes attribute classifier knows {', '.join(ATTRIBUTES)}; the expression asks for {', '.join(unknown)}"
            )
        met = requirement.holds(labels)
        metrics["carries_expression"] = sum(met) / len(met)
        metrics["chance"] = chance(requirement)
        for name in sorted(attributes):
            for value in ATTRIBUTES[name]:
                metrics[f"fraction/{name}={value}"] = labels[name].count(value) / len(met)
        return metrics


def _attributes(requirement) -> set[str]:
    if hasattr(requirement, "attribute"):
        return {requirement.attribute}
    parts = requirement.parts if hasattr(requirement, "parts") else (requirement.part,)
    return set().union(*(_attributes(p) for p in parts))
