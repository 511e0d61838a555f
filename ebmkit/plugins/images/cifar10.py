from __future__ import annotations

from pathlib import Path

import attrs
import torch

from ebmkit import Conditioning, EbmkitError

from ebmkit.plugins.images.dequantize import dequantize as dequantized
from ebmkit.plugins.images.items import first_item

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@attrs.define(kw_only=True)
class TorchvisionCifar(torch.utils.data.Dataset):
    """What CIFAR-10 and CIFAR-100 share: torchvision's reader of its on-disk layout, images dequantised,
    labels when conditional. A subclass declares the parameters root, train and conditional, names the
    reader and its layout below, and calls :meth:`_read` after init."""

    images: torch.Tensor = attrs.field(init=False, repr=False)
    labels: torch.Tensor = attrs.field(init=False, repr=False)
    classes: tuple[str, ...] = attrs.field(init=False, repr=False)

    sample_shape = (3, 32, 32)
    domain = (0.0, 1.0)
    class_count = 10
    reader = "CIFAR10"  # the class in torchvision.datasets
    title = "CIFAR-10"
    layout = "cifar-10-batches-py/data_batch_1 ... test_batch"

    @classmethod
    def declared(cls, conditional: bool = False, **_: object) -> tuple[tuple[int, ...], tuple[float, float], int | None]:
        """Sample shape, domain and number of classes without reading the data (``validate --no-data``)."""
        return cls.sample_shape, cls.domain, cls.class_count if conditional else None

    def _read(self, download: bool | None) -> None:
        """Load the split; ``download`` None: the dataset offers no download, so the error does not suggest it."""
        import torchvision.datasets

        try:
            data = getattr(torchvision.datasets, self.reader)(self.root, train=self.train, download=bool(download))
        except RuntimeError as exc:
            fetch = " or set download = true in [data] to let torchvision fetch it." if download is not None else ""
            # torchvision's message suggests download=True, which only a dataset with a download option has.
            reason = exc if download is not None else "missing, or its MD5 is not the release's"
            raise EbmkitError(
                f"{self.title} was not found under {Path(self.root).resolve()} ({reason}).\n"
                f" ebmkit expects torchvision's layout: {self.root}/{self.layout}.\n"
                f" Get it from https://www.cs.toronto.edu/~kriz/cifar.html (the python version) and unpack it there,"
                f"{fetch or ' then run again.'}"
            ) from None
        self.images = torch.from_numpy(data.data).permute(0, 3, 1, 2).contiguous()  # uint8 (N, 3, 32, 32)
        self.labels = torch.tensor(data.targets)
        self.classes = tuple(data.classes)

    @property
    def num_classes(self) -> int | None:
        return len(self.classes) if self.conditional else None

    @property
    def conditioning(self) -> Conditioning | None:
        return Conditioning("class", self.classes) if self.conditional else None

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        return first_item(self.read_batch(torch.tensor([index])))

    def read_batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = dequantized(self.images.index_select(0, indices).float() / 255)
        return x, self.labels.index_select(0, indices) if self.conditional else None


@attrs.define(kw_only=True)
class Cifar10(TorchvisionCifar):
    """CIFAR-10 in torchvision's on-disk layout (root/cifar-10-batches-py), dequantised; labels when conditional."""

    root: str = "data/cifar10"
    train: bool = True
    download: bool = False
    conditional: bool = False

    def __attrs_post_init__(self) -> None:
        self._read(self.download)
        self.classes = CLASSES  # the class names of the release, whatever batches.meta holds
