from __future__ import annotations

from pathlib import Path

import attrs
import torch

from ebmkit import EbmkitError


@attrs.define(kw_only=True)
class Cifar10(torch.utils.data.Dataset):
    """CIFAR-10 in torchvision's on-disk layout (root/cifar-10-batches-py), dequantised; labels when conditional."""

    root: str = "data/cifar10"
    train: bool = True
    download: bool = False
    conditional: bool = False
    images: torch.Tensor = attrs.field(init=False, repr=False)
    labels: torch.Tensor = attrs.field(init=False, repr=False)

    sample_shape = (3, 32, 32)
    domain = (0.0, 1.0)

    def __attrs_post_init__(self) -> None:
        from torchvision.datasets import CIFAR10

        try:
            data = CIFAR10(self.root, train=self.train, download=self.download)
        except RuntimeError as exc:
            raise EbmkitError(
                f"CIFAR-10 was not found under {Path(self.root).resolve()} ({exc}).\n"
                f" ebmkit expects torchvision's layout: {self.root}/cifar-10-batches-py/data_batch_1 ... test_batch.\n"
                f" Get it from https://www.cs.toronto.edu/~kriz/cifar.html (the python version) and unpack it there,"
                f" or set download = true in [data] to let torchvision fetch it."
            ) from None
        self.images = torch.from_numpy(data.data).permute(0, 3, 1, 2).contiguous()  # uint8 (N, 3, 32, 32)
        self.labels = torch.tensor(data.targets)

    @property
    def num_classes(self) -> int | None:
        return 10 if self.conditional else None

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        from ebmkit_images.dequantize import dequantize

        x = dequantize(self.images[index].float() / 255)
        return (x, self.labels[index]) if self.conditional else x
