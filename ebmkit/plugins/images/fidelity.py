"""FID, KID and Inception Score of a model's samples, computed by torch-fidelity, with the
protocol stated beside every number.

torch-fidelity (``pip install ebmkit[metrics]``) is the maintained library whose InceptionV3 is
the TensorFlow 2015-12-05 graph ported bit-exactly (its resize matches TF1's), and whose metric
functions take features, so the features are extracted once and any extractor can stand in.
Its own weight loader unpickles; here the weights are read as safetensors or with
``torch.load(weights_only=True)`` (tensors only) and handed over.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Literal

import attrs
import torch

from ebmkit import EbmkitError, EvalContext, component, stack_samples

INCEPTION_URL = "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
POOL, LOGITS = "2048", "logits_unbiased"


def cache_root() -> Path:
    """Where reference features are kept across runs: ``$EBMKIT_CACHE_DIR`` or ``~/.cache/ebmkit``."""
    return Path(os.environ.get("EBMKIT_CACHE_DIR") or Path.home() / ".cache" / "ebmkit")


def _fidelity():
    try:
        import torch_fidelity
    except ImportError:
        raise EbmkitError("FID, KID and Inception Score need torch-fidelity: pip install ebmkit[metrics]") from None
    return torch_fidelity


def weights_file(path: str | None) -> Path:
    """The Inception weights file: ``path``, or torch hub's cached copy (downloaded once)."""
    target = Path(path) if path else Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE
    if not target.is_file() and not path:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(INCEPTION_URL, str(target), progress=True)
        except Exception as exc:  # noqa: BLE001 - any network failure means the same to the user
            raise EbmkitError(
                f"the Inception weights are not at {target} and could not be downloaded ({type(exc).__name__}: {exc}). "
                f"Download {INCEPTION_URL} on a machine with network access, then either put it at {target} "
                "or give its path as the evaluator's weights = \"PATH\" (a .pth or .safetensors file)"
            ) from None
    if not target.is_file():
        raise EbmkitError(f"weights = {str(path)!r}: no such file (the Inception weights, {INCEPTION_FILE}, from {INCEPTION_URL})")
    return target


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:12]


def _inception_weights(path: str | None) -> dict[str, torch.Tensor]:
    """The 2015-12-05 Inception weights, read without unpickling anything but tensors."""
    target = weights_file(path)
    if target.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(target))
    try:
        return torch.load(target, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise EbmkitError(f"{target} is not a file of Inception weights that can be read safely: {exc}") from None


def inception(weights: str | None) -> torch.nn.Module:
    """torch-fidelity's InceptionV3 (uint8 images in, ``{"2048": pool3, "logits_unbiased": ...}`` out)."""
    from unittest import mock

    _fidelity()
    from torch_fidelity import feature_extractor_inceptionv3 as module

    state = _inception_weights(weights)
    # Hand the safely read tensors to the constructor instead of its own (unpickling) loader.
    with mock.patch.object(module, "load_state_dict_from_url", lambda *args, **kwargs: state):
        model = module.FeatureExtractorInceptionV3("inception-v3-compat", [POOL, LOGITS])
    return NamedFeatures(model, (POOL, LOGITS))


class NamedFeatures(torch.nn.Module):
    """torch-fidelity's extractors return their features as a tuple in the order asked for;
    this names them."""

    def __init__(self, extractor: torch.nn.Module, names: tuple[str, ...]):
        super().__init__()
        self.extractor, self.names = extractor, names

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return dict(zip(self.names, self.extractor(x), strict=True))


class StandIn(torch.nn.Module):
    """A small fixed random network in Inception's place, for tests and smoke runs only: its
    numbers compare with nothing published. Same interface: uint8 images in, features out."""

    def __init__(self, seed: int = 0):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.conv1 = torch.nn.Conv2d(3, 16, 3, stride=2, padding=1)
        self.conv2 = torch.nn.Conv2d(16, 32, 3, stride=2, padding=1)
        self.head = torch.nn.Linear(32, 10)
        for p in self.parameters():
            p.data = torch.randn(p.shape, generator=generator) * 0.3
        self.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = torch.relu(self.conv1(x.float() / 127.5 - 1))
        pooled = torch.relu(self.conv2(h)).mean(dim=(2, 3))
        return {POOL: pooled, LOGITS: self.head(pooled)}


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1] as the uint8 RGB batches the extractors read (one channel is repeated)."""
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise EbmkitError(f"FID, KID and IS read images (N, 1 or 3, H, W); got samples of shape {tuple(x.shape)}")
    x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
    return (x.detach().float().clamp(0, 1) * 255).round().to(torch.uint8)


@attrs.frozen(kw_only=True)
class SampleQualityProtocol:
    """What FID, KID and IS are computed on, and how; shared by the three evaluators.

    :ivar num_samples: samples drawn (the reference's FID uses 10 000; the standard is 50 000).
    :ivar source: ``"noise"`` (fresh chains from the data's domain) or ``"buffer"`` (chains
        started from the replay buffer, when the run has one with enough samples).
    :ivar sampler: a sampler of its own (e.g. ``name = "improved_cd_test_time"``, the
        reference's test-time schedule); by default the run's sampler.
    :ivar reference: the reference set (a dataset table, e.g. ``{name = "cifar10", train = false}``);
        by default the run's training data. Its features are cached across runs in
        ``$EBMKIT_CACHE_DIR`` (default ``~/.cache/ebmkit``), keyed by dataset, split, image
        size, number of images and extractor.
    :ivar num_reference: images of the reference set used (its first ones, in order).
    :ivar features: ``"inception"`` (the standard network) or ``"stand_in"`` (tests only).
    :ivar weights: the Inception weights file (default: torch hub's cache, downloaded once).
    """

    num_samples: int = attrs.field(default=10_000, validator=attrs.validators.gt(1))
    batch_size: int = attrs.field(default=100, validator=attrs.validators.gt(0))
    source: Literal["noise", "buffer"] = "noise"
    sampler: Any = component("samplers")
    reference: Any = component("datasets")
    num_reference: int = attrs.field(default=10_000, validator=attrs.validators.gt(1))
    features: Literal["inception", "stand_in"] = "inception"
    weights: str | None = None

    def extractor(self) -> torch.nn.Module:
        return StandIn() if self.features == "stand_in" else inception(self.weights)

    def features_of(self, extractor: torch.nn.Module, images: torch.Tensor, device: torch.device) -> dict[str, torch.Tensor]:
        extractor = extractor.to(device)
        found: dict[str, list[torch.Tensor]] = {POOL: [], LOGITS: []}
        with torch.no_grad():
            for chunk in images.split(self.batch_size):
                out = extractor(to_uint8(chunk).to(device))
                for key in found:
                    found[key].append(out[key].double().cpu())
        features = {key: torch.cat(value) for key, value in found.items()}
        if not all(torch.isfinite(f).all() for f in features.values()):
            raise EbmkitError(
                f"the {self.features} features of {len(images)} images are not all finite: check the samples "
                "(a diverged model samples NaN) and the weights file"
            )
        return features

    def draw(self, ctx: EvalContext) -> tuple[torch.Tensor, str]:
        """The samples, and how they were drawn."""
        from ebmkit import progress

        sampler = self.sampler or ctx.sampler
        use_buffer = self.source == "buffer" and ctx.buffer is not None and len(ctx.buffer) >= self.batch_size
        classes = getattr(ctx.dataset, "num_classes", None)
        chunks = []
        generator = torch.Generator().manual_seed(ctx.step)
        with progress(f"drawing {self.num_samples} samples", self.num_samples) as advance:
            for start in range(0, self.num_samples, self.batch_size):
                n = min(self.batch_size, self.num_samples - start)
                x0 = ctx.buffer.draw(n, ctx.noise(n)) if use_buffer else ctx.noise(n)
                cond = torch.randint(classes, (n,), generator=generator).to(x0.device) if classes else None
                chunks.append(sampler.sample(ctx.energy, x0, cond=cond).x.detach().cpu())
                advance(n)
        how = (f"{self.num_samples} samples, chains from {'the replay buffer' if use_buffer else 'the data domain (noise)'}"
               f"{', random labels' if classes else ''}, sampler {_describe(sampler)}")
        return torch.cat(chunks), how

    def reference_features(self, ctx: EvalContext, extractor: torch.nn.Module) -> tuple[dict[str, torch.Tensor], str]:
        """Features of the reference set (cached), and what it is."""
        from safetensors.torch import load_file, save_file

        dataset = self.reference if self.reference is not None else ctx.dataset
        count = min(self.num_reference, len(dataset))
        size = "x".join(str(s) for s in dataset.sample_shape[-2:])
        described = f"{count} images of {_describe(dataset)}{'' if self.reference is not None else ' (the run data)'}"
        # the weights' digest is in the key: other weights, other features
        extractor_id = "stand_in" if self.features == "stand_in" else f"inception-{file_digest(weights_file(self.weights))}"
        key = hashlib.sha256(f"{_describe(dataset)}|{count}|{size}|{extractor_id}".encode()).hexdigest()[:16]
        path = cache_root() / "fidelity" / f"{type(dataset).__name__.lower()}-{size}-{count}-{self.features}-{key}.safetensors"
        if path.is_file():
            return load_file(str(path)), described
        images, _ = stack_samples(dataset, range(count))
        found = self.features_of(extractor, images, ctx.device)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in found.items()}, str(path))
        return found, described

    def extractor_line(self) -> str:
        if self.features == "stand_in":
            return "stand-in features (a fixed random CNN: comparable with nothing published)"
        import torch_fidelity

        return f"torch-fidelity {torch_fidelity.__version__} InceptionV3 2015-12-05 (pool3 2048-d; logits for IS), resized to 299 px as TF1"

    def sample_features(self, ctx: EvalContext, extractor: torch.nn.Module) -> tuple[dict[str, torch.Tensor], str]:
        """Features of freshly drawn samples, and how they were drawn (with which weights)."""
        samples, how = self.draw(ctx)
        return self.features_of(extractor, samples, ctx.device), f"{how}; {_weights(ctx)}"

    def run(self, ctx: EvalContext) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], str]:
        """Sample features, reference features, and the protocol line."""
        extractor = self.extractor()
        ours, how = self.sample_features(ctx, extractor)
        reference, what = self.reference_features(ctx, extractor)
        return ours, reference, f"{how}; reference: {what}; features: {self.extractor_line()}"


def _weights(ctx: EvalContext) -> str:
    return {True: "EMA weights", False: "raw weights", None: "weights as given"}[ctx.ema]


def _describe(component: Any) -> str:
    """A component's class and parameters (attrs fields shown in its repr), for the protocol."""
    if attrs.has(type(component)):
        shown = ", ".join(f"{f.name}={getattr(component, f.name)!r}" for f in attrs.fields(type(component)) if f.repr)
        return f"{type(component).__name__}({shown})"
    return repr(component)


def frechet_distance(features_a: torch.Tensor, features_b: torch.Tensor) -> float:
    """The Fréchet distance between Gaussians fitted to two feature sets (rows are samples):
    |μa − μb|² + tr Σa + tr Σb − 2 tr (Σa^½ Σb Σa^½)^½, with unbiased covariances as
    torch-fidelity's FID computes them (it agrees with torch-fidelity's to rounding; no extra
    package is needed, so the small-image measure works without the metrics extra)."""
    a, b = features_a.double(), features_b.double()
    cov_a, cov_b = torch.cov(a.T).reshape(a.shape[1], a.shape[1]), torch.cov(b.T).reshape(b.shape[1], b.shape[1])
    values, vectors = torch.linalg.eigh(cov_a)
    root_a = vectors @ torch.diag(values.clamp(min=0).sqrt()) @ vectors.T
    middle = root_a @ cov_b @ root_a
    cross = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp(min=0).sqrt().sum()
    return float((a.mean(0) - b.mean(0)).square().sum() + cov_a.trace() + cov_b.trace() - 2 * cross)


@attrs.frozen(kw_only=True)
class FID(SampleQualityProtocol):
    """Fréchet Inception Distance between the model's samples and a reference set
    (``fid``, with ``protocol``: how it was computed)."""

    def evaluate(self, ctx: EvalContext) -> dict[str, Any]:
        _fidelity()
        ours, reference, protocol = self.run(ctx)
        return {"fid": frechet_distance(ours[POOL], reference[POOL]), "protocol": f"FID: {protocol}"}


@attrs.frozen(kw_only=True)
class KID(SampleQualityProtocol):
    """Kernel Inception Distance (unbiased MMD² with the cubic polynomial kernel, averaged over
    ``subsets`` random subsets of ``subset_size``): ``kid`` and ``kid_std``."""

    subsets: int = attrs.field(default=100, validator=attrs.validators.gt(0))
    subset_size: int = attrs.field(default=1000, validator=attrs.validators.gt(1))

    def evaluate(self, ctx: EvalContext) -> dict[str, Any]:
        _fidelity()
        from torch_fidelity.metric_kid import kid_features_to_metric

        ours, reference, protocol = self.run(ctx)
        size = min(self.subset_size, len(ours[POOL]), len(reference[POOL]))
        found = kid_features_to_metric(ours[POOL], reference[POOL], kid_subsets=self.subsets, kid_subset_size=size, verbose=False)
        return {"kid": found["kernel_inception_distance_mean"], "kid_std": found["kernel_inception_distance_std"],
                "protocol": f"KID ({self.subsets} subsets of {size}): {protocol}"}


@attrs.frozen(kw_only=True)
class InceptionScore(SampleQualityProtocol):
    """Inception Score of the samples (``inception_score``, ``inception_score_std`` over
    ``splits``); it needs no reference set."""

    splits: int = attrs.field(default=10, validator=attrs.validators.gt(0))

    def evaluate(self, ctx: EvalContext) -> dict[str, Any]:
        _fidelity()
        from torch_fidelity.metric_isc import isc_features_to_metric

        features, how = self.sample_features(ctx, self.extractor())
        found = isc_features_to_metric(features[LOGITS], splits=self.splits, shuffle=True, rng_seed=2020)
        return {"inception_score": found["inception_score_mean"], "inception_score_std": found["inception_score_std"],
                "protocol": f"IS ({self.splits} splits): {how}; features: {self.extractor_line()}"}
