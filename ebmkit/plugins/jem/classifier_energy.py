"""A classifier read as an energy (JEM, Grathwohl et al., ICLR 2020, "Your classifier is
secretly an energy based model", §2; code: wgrathwohl/JEM).

A network gives class logits f(x) ∈ R^K. JEM reads them as a joint energy over (x, y) and
its marginal over x::

    E(x, y) = −f(x)[y]                     p(x, y) ∝ exp(f(x)[y])
    E(x)    = −log Σ_y exp(f(x)[y])        p(x)    ∝ Σ_y exp(f(x)[y])
    p(y | x) = softmax(f(x))[y] = softmax(−E(x, ·))[y]

so ``forward(x, cond)`` is E(x, y) with labels and E(x) without, and the usual classifier is
``softmax(logits(x))``. There is no batch normalisation (JEM drops it too): a sample's energy
must not depend on the other samples of its batch, or Langevin chains would interact.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

import attrs
import torch
from torch import nn

from ebmkit import EbmkitError, Energy

ACTIVATIONS = {
    "leaky_relu": lambda: nn.LeakyReLU(0.2),  # JEM's Wide-ResNet without normalisation uses slope 0.2
    "silu": nn.SiLU,
    "softplus": nn.Softplus,
    "elu": nn.ELU,
}


class ClassifierEnergy(Energy):
    """A classifier's logits f(x) as an energy: E(x, y) = −f(x)[y], E(x) = −logsumexp_y f(x)[y] (JEM).

    Images (C, H, W) go through a small convolutional net: a 3x3 stem of ``width`` channels,
    then ``depth`` stages of a 3x3 convolution and a stride-2 3x3 convolution that doubles
    the channels, a global mean pool and a linear head to the K logits. Any other sample
    shape is flattened into an MLP of ``depth`` hidden layers of ``width`` units. No
    normalisation layers. Needs labelled data (``num_classes``).
    """

    def __init__(
        self,
        width: Annotated[int, attrs.validators.ge(1)] = 32,
        depth: Annotated[int, attrs.validators.ge(1)] = 2,
        activation: Literal["leaky_relu", "silu", "softplus", "elu"] = "leaky_relu",
        *,
        data_shape: tuple[int, ...],
        num_classes: int | None = None,
    ):
        super().__init__()
        if not num_classes:
            raise EbmkitError(
                "the classifier energy needs labelled data: its energies are the negated logits of the data's classes, "
                "and [data] gives no labels (num_classes is None); choose labels, e.g. label = \"shape\" for shapes"
            )
        if num_classes < 2:
            raise EbmkitError(f"the classifier energy needs at least 2 classes, the data has {num_classes}")
        if width < 1 or depth < 1:
            raise EbmkitError(f"the classifier energy needs width >= 1 and depth >= 1, got width={width}, depth={depth}")
        if activation not in ACTIVATIONS:
            raise EbmkitError(f"unknown activation {activation!r}; choose one of {', '.join(ACTIVATIONS)}")
        self.num_classes = int(num_classes)
        self.data_shape = tuple(data_shape)
        act = ACTIVATIONS[activation]
        if len(self.data_shape) == 3:
            layers: list[nn.Module] = [nn.Conv2d(self.data_shape[0], width, 3, padding=1), act()]
            channels = width
            for _ in range(depth):
                layers += [nn.Conv2d(channels, channels, 3, padding=1), act(),
                           nn.Conv2d(channels, 2 * channels, 3, stride=2, padding=1), act()]
                channels *= 2
            layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        else:
            layers, channels = [nn.Flatten()], math.prod(self.data_shape)
            for _ in range(depth):
                layers += [nn.Linear(channels, width), act()]
                channels = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(channels, self.num_classes)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """The class logits f(x), shape (B, K)."""
        return self.head(self.features(x))

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """E(x, y) = −f(x)[y] for labels ``cond`` (B,); E(x) = −logsumexp_y f(x)[y] for ``cond=None``.

        A float ``cond`` of shape (B, K) weights the classes: E = −Σ_y cond[y]·f(x)[y], which is
        E(x, y) for a one-hot row.
        """
        logits = self.logits(x)
        if cond is None:
            return -torch.logsumexp(logits, dim=1)
        if cond.is_floating_point():
            if tuple(cond.shape) != tuple(logits.shape):
                raise EbmkitError(
                    f"a float condition of the classifier energy is one weight per class, shape {tuple(logits.shape)}; "
                    f"got {tuple(cond.shape)}"
                )
            return -(cond * logits).sum(1)
        if cond.dim() != 1 or cond.shape[0] != x.shape[0]:
            raise EbmkitError(
                f"the classifier energy takes one class label per sample, shape ({x.shape[0]},); got {tuple(cond.shape)}"
            )
        return -logits.gather(1, cond.long()[:, None]).squeeze(1)
