from __future__ import annotations

from pathlib import Path
from typing import Literal

import attrs
import torch

from ebmkit import EbmkitError

from ebmkit.plugins.images.dequantize import dequantize as dequantized
from ebmkit.plugins.images.items import first_item


@attrs.define(kw_only=True)
class Svhn(torch.utils.data.Dataset):
    """SVHN's cropped digits in torchvision's layout (root/test_32x32.mat), dequantised, unlabelled.

    An out-of-distribution set for CIFAR-10 models, so no labels. torchvision reads the .mat files
    with scipy: ``pip install "ebmkit[svhn]"``.
    """

    root: str = "data/svhn"
    split: Literal["test", "train", "extra"] = attrs.field(default="test", validator=attrs.validators.in_(("test", "train", "extra")))
    images: torch.Tensor = attrs.field(init=False, repr=False)

    sample_shape = (3, 32, 32)
    domain = (0.0, 1.0)
    num_classes = None

    @classmethod
    def declared(cls, **_: object) -> tuple[tuple[int, ...], tuple[float, float], int | None]:
        """Sample shape, domain and number of classes without reading the data (``validate --no-data``)."""
        return cls.sample_shape, cls.domain, None
    conditioning = None

    def __attrs_post_init__(self) -> None:
        try:
            import scipy.io  # noqa: F401  torchvision reads the .mat files with it
        except ImportError:
            raise EbmkitError('the svhn dataset reads .mat files with scipy, which is not installed: pip install "ebmkit[svhn]"') from None
        from torchvision.datasets import SVHN

        try:
            data = SVHN(self.root, split=self.split, download=False)
        except RuntimeError:
            raise EbmkitError(
                f"SVHN was not found under {Path(self.root).resolve()} (missing, or its MD5 is not the release's).\n"
                f" ebmkit expects torchvision's layout: {self.root}/{self.split}_32x32.mat (also train_32x32.mat, extra_32x32.mat).\n"
                f" Get the cropped digits (format 2) from http://ufldl.stanford.edu/housenumbers/ and put the .mat files there."
            ) from None
        self.images = torch.from_numpy(data.data).contiguous()  # uint8 (N, 3, 32, 32): torchvision already transposed it

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        return first_item(self.read_batch(torch.tensor([index])))

    def read_batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        return dequantized(self.images.index_select(0, indices).float() / 255), None
