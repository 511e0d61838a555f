"""Sample quality of small images measured with a classifier trained on the data itself.

FID's Inception network reads 299 px photographs; on 8-16 px images (digits) its features mean
little, and it cannot be downloaded offline. Here a small CNN is trained once on a labelled train
split (cached in the run's ``cache/``), and its penultimate layer is the feature space: the Fréchet
distance of the samples to half of the test split is reported beside the same distance for the
other half of the test split (the floor: real images) and for uniform noise (the ceiling), each
with the same number of images, since the Fréchet distance is biased by sample size. The
classifier's predictions also say which classes the samples fall into, and, for a conditional
model, whether each sample carries the class it was drawn for.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, Literal

import attrs
import torch
import torch.nn.functional as F
from torch import nn

from ebmkit import EbmkitError, EvalContext, component, stack_samples
from ebmkit.plugins.images.attribute_classifier import _noisy
from ebmkit.plugins.images.fidelity import _describe, _weights, frechet_distance

CLASSIFIER_SEED = 20_240_611  # its own draws: never the training run's, and the same in every run
#: the images read of each split (dequantising datasets draw per read) and the test halves
READ_SEED = 1
NOISE_SEED = 2
ARCHITECTURE = "conv16-bn-conv16-bn-maxpool2-conv32-bn-avgpool4x4-fc32-relu"
FEATURE_DIM = 32


class QualityClassifier(nn.Module):
    """A small CNN whose penultimate layer (``features``, 32-d) is the feature space."""

    def __init__(self, channels: int, num_classes: int, width: int = 16):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(2 * width * 16, FEATURE_DIM), nn.ReLU(),
        )
        self.head = nn.Linear(FEATURE_DIM, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@attrs.frozen
class Labelled:
    """Images (N, C, H, W) as float32 on the CPU, their labels, and what they were read from."""

    images: torch.Tensor
    labels: torch.Tensor
    described: str

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.images.shape[1:])

    def digest(self) -> str:
        content = hashlib.sha256(self.images.contiguous().numpy().tobytes())
        content.update(self.labels.contiguous().numpy().tobytes())
        return content.hexdigest()[:16]


def require_labels(dataset: Any, role: str) -> None:
    if not getattr(dataset, "num_classes", None):
        raise EbmkitError(
            f"the classifier_quality {role} must be labelled (num_classes set), got {_describe(dataset)}; "
            "e.g. {name = \"digits\", conditional = true}"
        )


def read_labelled(dataset: Any, limit: int) -> Labelled:
    """At most ``limit`` images of ``dataset`` (a seeded random subset when it holds more), read
    under a fixed seed so that a dataset that dequantises per read gives the same pixels each time."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(READ_SEED)
        order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(READ_SEED))
        chosen = sorted(order[:limit].tolist()) if len(dataset) > limit else range(len(dataset))
        images, labels = stack_samples(dataset, chosen)
    return Labelled(images.detach().float().cpu().contiguous(), labels, f"{len(labels)} images of {_describe(dataset)}")


def _shifted(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    # The test split's writers are not the train split's: a one-pixel shift stands in for the
    # placement that differs between writers (and between samples and data).
    height, width = x.shape[-2:]
    padded = F.pad(x, (1, 1, 1, 1), mode="replicate")
    offsets = torch.randint(0, 3, (len(x), 2), generator=generator)
    out = torch.empty_like(x)
    for dy in range(3):
        for dx in range(3):
            rows = (offsets[:, 0] == dy) & (offsets[:, 1] == dx)
            out[rows] = padded[rows, :, dy : dy + height, dx : dx + width]
    return out


def train_classifier(train: Labelled, num_classes: int, steps: int, batch_size: int = 128) -> QualityClassifier:
    """Adam with a cosine learning rate, on noisy and shifted training images, under its own seed."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(CLASSIFIER_SEED)
        generator = torch.Generator().manual_seed(CLASSIFIER_SEED)
        model = QualityClassifier(train.shape[0], num_classes)
        optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / steps)))
        for _ in range(steps):
            index = torch.randint(len(train.images), (min(batch_size, len(train.images)),), generator=generator)
            logits = model(_shifted(_noisy(train.images[index], generator), generator))
            loss = F.cross_entropy(logits, train.labels[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    return model.eval()


def cached_classifier(folder: Path, train: Labelled, num_classes: int, steps: int) -> QualityClassifier:
    """The classifier for these training images and settings: read from ``folder``, or trained and
    written there. The key is a digest of the images and labels, so other data never reuse it."""
    import safetensors.torch

    key = hashlib.sha256(f"{train.digest()}|{num_classes}|{steps}|{ARCHITECTURE}|{CLASSIFIER_SEED}".encode()).hexdigest()[:16]
    stem = folder / f"classifier_quality_{'x'.join(map(str, train.shape))}_{steps}steps_{key}"
    weights, record = stem.with_suffix(".safetensors"), stem.with_suffix(".json")
    if weights.is_file() and record.is_file():
        with torch.random.fork_rng(devices=[]):  # its initial weights, overwritten at once, must not draw from the run's stream
            model = QualityClassifier(train.shape[0], num_classes)
        safetensors.torch.load_model(model, str(weights))
        return model.eval()
    model = train_classifier(train, num_classes, steps)
    folder.mkdir(parents=True, exist_ok=True)
    safetensors.torch.save_model(model, str(weights))
    record.write_text(json.dumps({"train": train.described, "image_shape": list(train.shape), "num_classes": num_classes,
                                  "steps": steps, "architecture": ARCHITECTURE, "seed": CLASSIFIER_SEED}, indent=1))
    return model


def split_halves(labels: torch.Tensor, halving: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of halves A and B of a test split, the ``halving``-th of a seeded series: each
    class's images shuffled and dealt half to each (A takes an odd one out), each half ordered so
    that any prefix of it is as balanced over the classes as it can be (the floor may use the
    first few of half B)."""
    generator = torch.Generator().manual_seed(READ_SEED + halving)
    dealt: dict[str, list[tuple[int, int, int]]] = {"a": [], "b": []}
    for label in labels.unique().tolist():
        rows = torch.nonzero(labels == label).flatten()
        rows = rows[torch.randperm(len(rows), generator=generator)].tolist()
        middle = (len(rows) + 1) // 2
        dealt["a"] += [(rank, label, row) for rank, row in enumerate(rows[:middle])]
        dealt["b"] += [(rank, label, row) for rank, row in enumerate(rows[middle:])]
    return tuple(torch.tensor([row for _, _, row in sorted(half)]) for half in (dealt["a"], dealt["b"]))


def own_test_split(dataset: Any) -> Any | None:
    """The test split of an attrs dataset with ``split = "train"`` or ``train = true``, else None."""
    if not attrs.has(type(dataset)):
        return None
    names = {f.name for f in attrs.fields(type(dataset)) if f.init}
    if "split" in names and dataset.split == "train":
        return attrs.evolve(dataset, split="test")
    if "train" in names and dataset.train is True:
        return attrs.evolve(dataset, train=False)
    return None


def coverage(predicted: torch.Tensor, num_classes: int) -> tuple[float, torch.Tensor]:
    """exp(entropy of the predicted-class histogram) / K (1: every class equally; 1/K: one class),
    and the histogram as fractions."""
    fractions = torch.bincount(predicted, minlength=num_classes).double() / len(predicted)
    entropy = -(fractions[fractions > 0] * fractions[fractions > 0].log()).sum()
    return float(entropy.exp()) / num_classes, fractions


@attrs.frozen(kw_only=True)
class ClassifierQuality:
    """Sample quality of small images, measured with a CNN trained on the data's labels.

    Reports ``fd`` (Fréchet distance of the samples to half A of the test split, in the
    classifier's 32-d feature space), ``fd_real`` (half B against half A: the floor, what real
    images score), ``fd_noise`` (uniform noise against half A: the ceiling), ``fd_ratio`` =
    fd / fd_real, and ``fd_train`` (images of the classifier's train set against half A: what a
    model that gave back its training images would score; above the floor, for the classifier
    was fit to them), all with the same number of images and each the mean over ``halvings``
    random halvings of the test split, every halving with samples of its own; ``fd_sd``, the
    spread of ``fd`` over the halvings; ``coverage`` (exp of the entropy of the
    predicted classes / K), ``fraction/<class>``, ``confidence`` (mean max softmax); for a
    conditional model, ``carries_condition``, ``carries/<class>`` and ``chance`` = 1/K; and
    ``classifier_accuracy`` on the whole test split, with a ``protocol`` line.

    :ivar train_set: the labelled dataset the classifier learns (default: the run's data, when
        labelled). The classifier is cached in the run's ``cache/``, keyed by a digest of its
        training images and labels, the image shape and ``train_steps``.
    :ivar test_set: the labelled test split (default: the train set's own test split, for a
        dataset with ``split = "train"`` or ``train = true``; otherwise required).
    :ivar num_samples: samples scored per halving (default: half the test split, the size of half B).
    :ivar halvings: how many random halvings of the test split the distances average over. One
        halving's floor depends on which images fell in which half (on digits its standard
        deviation is a quarter of its mean), and so does one draw of samples.
    :ivar source: ``"noise"`` (fresh chains, as short-run models sample) or ``"buffer"``.
    :ivar sampler: a sampler of its own; by default the run's.
    :ivar num_train, num_test: at most this many images of each split (a seeded random subset).
    """

    train_set: Any = component("datasets")
    test_set: Any = component("datasets")
    num_samples: int | None = attrs.field(default=None, validator=attrs.validators.optional(attrs.validators.gt(1)))
    halvings: int = attrs.field(default=5, validator=attrs.validators.gt(0))
    batch_size: int = attrs.field(default=100, validator=attrs.validators.gt(0))
    source: Literal["noise", "buffer"] = "noise"
    sampler: Any = component("samplers")
    train_steps: int = attrs.field(default=300, validator=attrs.validators.gt(0))
    num_train: int = attrs.field(default=10_000, validator=attrs.validators.gt(1))
    num_test: int = attrs.field(default=2_000, validator=attrs.validators.gt(3))

    def evaluate(self, ctx: EvalContext) -> dict[str, Any]:
        train_source, test_source = self._datasets(ctx)
        train = read_labelled(train_source, self.num_train)
        test = read_labelled(test_source, self.num_test)
        if train.shape != test.shape:
            raise EbmkitError(f"classifier_quality: the train set's images are {train.shape}, the test set's {test.shape}")
        num_classes = int(train_source.num_classes)
        model = cached_classifier(ctx.cache, train, num_classes, self.train_steps)
        with torch.no_grad():
            accuracy = float((model(test.images).argmax(1) == test.labels).double().mean())
        halves = [split_halves(test.labels, k) for k in range(self.halvings)]
        count = self._count(ctx, len(halves[0][1]))
        samples, cond, how = self._samples(ctx, count * self.halvings, num_classes)
        if tuple(samples.shape[1:]) != test.shape:
            raise EbmkitError(
                f"classifier_quality: the samples are images of shape {tuple(samples.shape[1:])}, the test set's {test.shape}; "
                "give a train_set and test_set at the samples' size and channels (image_size, channels)"
            )
        domain = getattr(test_source, "domain", None)
        samples = self._clamped(samples, domain)
        with torch.no_grad():
            sample_features = model.features(samples).double()
            probabilities = model.head(sample_features.float()).softmax(1)
        halves = halves[: max(1, min(self.halvings, len(samples) // count))]  # given samples may not fill them all
        per_halving = [
            self._distances(model, sample_features[k * count : (k + 1) * count], train, test.images[a], test.images[b[:count]], domain, k)
            for k, (a, b) in enumerate(halves)
        ]
        metrics: dict[str, Any] = {key: sum(d[key] for d in per_halving) / len(halves) for key in per_halving[0]}
        metrics["fd_ratio"] = metrics["fd"] / metrics["fd_real"] if metrics["fd_real"] > 0 else math.inf
        metrics["fd_sd"] = float(torch.tensor([d["fd"] for d in per_halving]).std()) if len(halves) > 1 else 0.0
        metrics["classifier_accuracy"] = accuracy
        metrics |= self._spread(probabilities, cond, self._class_names(train_source, num_classes))
        metrics["protocol"] = self._protocol(train, test, accuracy, len(halves[0][0]), count, len(halves), len(samples), how, domain)
        return metrics

    @staticmethod
    @torch.no_grad()
    def _distances(model: QualityClassifier, sample_features: torch.Tensor, train: Labelled, half_a: torch.Tensor,
                   half_b: torch.Tensor, domain: tuple[float, float] | None, halving: int) -> dict[str, float]:
        """fd of the samples to half A, beside the same for half B (the floor), noise (the ceiling)
        and training images, each with as many images as the samples."""
        count = len(sample_features)
        reference = model.features(half_a).double()
        noise = ClassifierQuality._noise(count, half_a.shape[1:], domain, halving)
        chosen = torch.randperm(len(train.images), generator=torch.Generator().manual_seed(READ_SEED + halving))[:count]
        training = train.images[chosen]
        return {
            "fd": frechet_distance(sample_features, reference),
            "fd_real": frechet_distance(model.features(half_b).double(), reference),
            "fd_noise": frechet_distance(model.features(noise).double(), reference),
            "fd_train": frechet_distance(model.features(training).double(), reference),
        }

    def _datasets(self, ctx: EvalContext) -> tuple[Any, Any]:
        train = self.train_set
        if train is None:
            if not getattr(ctx.dataset, "num_classes", None):
                raise EbmkitError(
                    "classifier_quality trains its classifier on labelled data, and this run's data has no labels: give "
                    "train_set and test_set, e.g. train_set = {name = \"digits\", split = \"train\", conditional = true}"
                )
            train = ctx.dataset
        test = self.test_set if self.test_set is not None else own_test_split(train)
        if test is None:
            raise EbmkitError(
                f"classifier_quality needs a labelled test_set: the train set ({_describe(train)}) names no test split of its "
                "own (a split = \"train\" or train = true parameter); give test_set = {name = ..., ...}"
            )
        require_labels(train, "train_set")
        require_labels(test, "test_set")
        if test.num_classes != train.num_classes:
            raise EbmkitError(f"classifier_quality: the test set has {test.num_classes} classes, the train set {train.num_classes}")
        return train, test

    def _count(self, ctx: EvalContext, half: int) -> int:
        """How many images each Fréchet distance compares: as many as half B holds, at most."""
        if ctx.samples is not None:
            return min(len(ctx.samples), half, self.num_samples or half)
        count = self.num_samples or half
        if count > half:
            raise EbmkitError(
                f"classifier_quality: num_samples = {count}, but the floor compares half B of the test split, {half} images, "
                "with the same count; give at most that many, or a larger test_set (num_test)"
            )
        return count

    def _samples(self, ctx: EvalContext, count: int, num_classes: int) -> tuple[torch.Tensor, torch.Tensor | None, str]:
        """The samples scored, the class each was drawn for (None: unconditional), and how they were drawn."""
        if ctx.samples is not None:
            return ctx.samples.detach().float().cpu(), None, f"{len(ctx.samples)} given samples (the composition's); {_weights(ctx)}"
        model_classes = getattr(ctx.dataset, "num_classes", None)
        if model_classes and model_classes != num_classes:
            raise EbmkitError(
                f"classifier_quality: the model is conditioned on {model_classes} classes, the classifier's train set has {num_classes}; "
                "train the classifier on the same labels (leave train_set out, or give the run's dataset)"
            )
        sampler = self.sampler or ctx.sampler
        use_buffer = self.source == "buffer" and ctx.buffer is not None and len(ctx.buffer) >= self.batch_size
        cond = torch.arange(count) % model_classes if model_classes else None
        chunks = []
        for start in range(0, count, self.batch_size):
            n = min(self.batch_size, count - start)
            x0 = ctx.buffer.draw(n, ctx.noise(n)) if use_buffer else ctx.noise(n)
            labels = cond[start : start + n].to(x0.device) if cond is not None else None
            chunks.append(sampler.sample(ctx.energy, x0, cond=labels).x.detach().float().cpu())
        start_from = "the replay buffer" if use_buffer else "the data domain (noise)"
        classes = ", spread evenly over the classes (class = index % K)" if cond is not None else ""
        return torch.cat(chunks), cond, f"{count} samples, chains from {start_from}{classes}, sampler {_describe(sampler)}; {_weights(ctx)}"

    @staticmethod
    def _clamped(samples: torch.Tensor, domain: tuple[float, float] | None) -> torch.Tensor:
        if not bool(torch.isfinite(samples).all()):
            raise EbmkitError("classifier_quality: the samples are not all finite (a diverged model samples NaN)")
        return samples if domain is None else samples.clamp(*domain)  # as an image of them would show them

    @staticmethod
    def _noise(count: int, shape: tuple[int, ...], domain: tuple[float, float] | None, halving: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(NOISE_SEED + 1000 * halving)
        if domain is None:
            return torch.randn(count, *shape, generator=generator)
        low, high = domain
        return torch.rand(count, *shape, generator=generator) * (high - low) + low

    @staticmethod
    def _class_names(dataset: Any, num_classes: int) -> tuple[str, ...]:
        conditioning = getattr(dataset, "conditioning", None)
        return tuple(conditioning.classes) if conditioning is not None else tuple(str(i) for i in range(num_classes))

    @staticmethod
    def _spread(probabilities: torch.Tensor, cond: torch.Tensor | None, names: tuple[str, ...]) -> dict[str, float]:
        predicted = probabilities.argmax(1)
        spread, fractions = coverage(predicted, len(names))
        metrics = {"coverage": spread, "confidence": float(probabilities.max(1).values.mean())}
        metrics |= {f"fraction/{name}": float(f) for name, f in zip(names, fractions, strict=True)}
        if cond is not None:
            carried = (predicted == cond).double()
            metrics["carries_condition"] = float(carried.mean())
            metrics |= {f"carries/{name}": float(carried[cond == i].mean()) for i, name in enumerate(names) if bool((cond == i).any())}
            metrics["chance"] = 1 / len(names)
        return metrics

    def _protocol(self, train: Labelled, test: Labelled, accuracy: float, reference: int, count: int, halvings: int,
                  scored: int, how: str, domain: tuple[float, float] | None) -> str:
        noise = f"uniform noise in [{domain[0]:g}, {domain[1]:g}]" if domain is not None else "standard normal noise"
        unused = f" (the last {scored - count * halvings} unused)" if scored > count * halvings else ""
        return (
            f"classifier quality: {how}; every distance the mean over {halvings} seeded random halvings (A, B) of the test "
            f"split, each with {count} samples of its own{unused}; fd: {count} samples against half A ({reference} images); "
            f"floor fd_real: {count} images of half B against half A; ceiling fd_noise: {count} images of {noise} against half A; "
            f"fd_train: {min(count, len(train.images))} images of the classifier's train set against half A; "
            f"features: the {FEATURE_DIM}-d penultimate layer of a CNN ({ARCHITECTURE}) trained {self.train_steps} Adam steps "
            f"(noise and 1 px shift augmentation, seed {CLASSIFIER_SEED}) on {train.described}; "
            f"test accuracy {accuracy:.3f} on {test.described}"
        )
