from __future__ import annotations

import attrs

from ebmkit.plugins.images.cifar10 import TorchvisionCifar


@attrs.define(kw_only=True)
class Cifar100(TorchvisionCifar):
    """CIFAR-100 in torchvision's on-disk layout (root/cifar-100-python), dequantised; test split, unlabelled.

    The test split without labels is the default because it serves as an out-of-distribution set for
    CIFAR-10 models; ``conditional = true`` gives the 100 fine labels (named from the release's meta file).
    """

    root: str = "data/cifar100"
    train: bool = False
    conditional: bool = False

    class_count = 100
    reader = "CIFAR100"
    title = "CIFAR-100"
    layout = "cifar-100-python/train, test and meta"

    def __attrs_post_init__(self) -> None:
        self._read(None)
