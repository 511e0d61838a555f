"""MNIST and Fashion-MNIST in torchvision's on-disk layout (root/MNIST/raw/*-ubyte, root/FashionMNIST/raw/*-ubyte)."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import attrs
import torch
import torch.nn.functional as F

from ebmkit import Conditioning, EbmkitError

from ebmkit.plugins.images.dequantize import dequantize as dequantized
from ebmkit.plugins.images.items import first_item

#: The unpacked IDX files torchvision reads from root/<folder>/raw/ (it checks for all four, whichever split is read).
RAW_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
IMAGE_MAGIC, LABEL_MAGIC = 2051, 2049  # IDX: 0x08 (unsigned byte) then the number of dimensions, 3 or 1
NATIVE_SIZE = 28
RESAMPLE_CHUNK = 8192  # images resampled at once: bounds the float copy of a 60 000-image split


def idx_problem(path: Path) -> str | None:
    """What is wrong with the IDX file at ``path`` (by its name: images or labels), or None.

    Checked before torchvision parses it, whose reader fails on a bad header with a bare assertion.
    """
    magic, dims = (IMAGE_MAGIC, 3) if "-images-" in path.name else (LABEL_MAGIC, 1)
    header = 4 * (dims + 1)
    with path.open("rb") as file:
        start = file.read(header)
    if len(start) < header:
        return f"it has {len(start)} bytes, fewer than the {header} of its header"
    found, *sizes = struct.unpack(f">{dims + 1}I", start)
    if found != magic:
        return f"its magic number is {found}, not {magic} (unsigned bytes, {dims} dimension{'s' if dims > 1 else ''})"
    held = path.stat().st_size - header
    if held != math.prod(sizes):
        return f"its header gives sizes {sizes}, {math.prod(sizes)} bytes of data, but it holds {held}"
    return None


def resample(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 images (N, 1, H, W) resampled (bilinear, antialiased) to (N, 1, size, size), rounded back to uint8."""
    chunks = [
        F.interpolate(chunk.float(), size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        for chunk in images.split(RESAMPLE_CHUNK)
    ]
    return torch.cat(chunks).round().clamp(0, 255).to(torch.uint8)


@attrs.define(kw_only=True)
class TorchvisionMnist(torch.utils.data.Dataset):
    """What MNIST and Fashion-MNIST share: the parameters, torchvision's reader of the unpacked
    IDX files, the pixels resampled, binarised or dequantised, labels when conditional. A
    subclass gives ``root`` its default and names the reader and where to get the files below."""

    root: str
    train: bool = True
    download: bool = False
    conditional: bool = False
    image_size: int = attrs.field(default=NATIVE_SIZE, validator=attrs.validators.ge(4))
    channels: int = attrs.field(default=1, validator=attrs.validators.in_((1, 3)))
    binarize: bool = False
    images: torch.Tensor = attrs.field(init=False, repr=False)
    labels: torch.Tensor = attrs.field(init=False, repr=False)

    domain = (0.0, 1.0)
    reader = "MNIST"  # the class in torchvision.datasets, also the folder under root
    title = "MNIST"
    source = "https://ossci-datasets.s3.amazonaws.com/mnist/ (torchvision's mirror)"
    classes = tuple(str(d) for d in range(10))
    attribute = "digit"

    def __attrs_post_init__(self) -> None:
        self._read()

    def _read(self) -> None:
        import torchvision.datasets

        reader = getattr(torchvision.datasets, self.reader)
        if self.download and self._missing():
            data = self._fetch(reader)
        else:
            self._require_files()
            data = self._parse(reader)
        images, labels = data.data, data.targets
        if len(images) != len(labels):
            raise EbmkitError(f"{self._raw_folder()} holds {len(images)} images but {len(labels)} labels for the "
                              f"{'train' if self.train else 't10k'} split; the two files must come from the same release")
        if len(labels) and int(labels.max()) >= len(self.classes):
            raise EbmkitError(f"{self.title}'s labels in {self._raw_folder()} go up to {int(labels.max())}; "
                              f"there are {len(self.classes)} classes (0..{len(self.classes) - 1})")
        self.images, self.labels = self._pixels(images[:, None]), labels

    def _raw_folder(self) -> Path:
        return Path(self.root).resolve() / self.reader / "raw"

    def _where_to_put(self) -> str:
        return (f" ebmkit expects torchvision's layout: {self.root}/{self.reader}/raw/ holding the unpacked (gunzipped) "
                f"IDX files {', '.join(RAW_FILES)}.\n Get the .gz files from {self.source} and gunzip them there, "
                f"or set download = true in [data] to let torchvision fetch them.")

    def _missing(self) -> list[str]:
        return [name for name in RAW_FILES if not (self._raw_folder() / name).is_file()]

    def _require_files(self) -> None:
        if missing := self._missing():
            which = "none of its files" if len(missing) == len(RAW_FILES) else f"missing: {', '.join(missing)}"
            raise EbmkitError(f"{self.title} was not found under {Path(self.root).resolve()} ({which}).\n{self._where_to_put()}")
        for name in RAW_FILES:
            if problem := idx_problem(self._raw_folder() / name):
                raise EbmkitError(f"{self._raw_folder() / name} is not a valid IDX file: {problem}; replace it "
                                  f"with the release's file, unpacked.\n{self._where_to_put()}")

    def _fetch(self, reader):
        try:
            return reader(self.root, train=self.train, download=True)
        except (RuntimeError, OSError) as exc:  # URLError is an OSError: no network, or a mirror down
            raise EbmkitError(f"torchvision could not download {self.title} to {self._raw_folder()} ({exc}).\n"
                              f"{self._where_to_put()}") from None

    def _parse(self, reader):
        try:
            return reader(self.root, train=self.train, download=False)
        except (ValueError, TypeError, RuntimeError, KeyError) as exc:  # torchvision's complaints about a malformed file
            raise EbmkitError(f"{self._raw_folder()} holds a file that is not a valid IDX file ({exc}); "
                              f"replace it with the release's file, unpacked.\n{self._where_to_put()}") from None

    def _pixels(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, 1, S, S): 0..255, or 0/1 when binarised (pixel >= 128, thresholded again after resampling)."""
        if self.binarize:
            images = (images >= 128).to(torch.uint8) * 255
        if tuple(images.shape[-2:]) != (self.image_size, self.image_size):
            images = resample(images, self.image_size)
        return (images >= 128).to(torch.uint8) if self.binarize else images

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return (self.channels, self.image_size, self.image_size)

    @property
    def num_classes(self) -> int | None:
        return len(self.classes) if self.conditional else None

    @property
    def conditioning(self) -> Conditioning | None:
        return Conditioning(self.attribute, self.classes) if self.conditional else None

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        return first_item(self.read_batch(torch.tensor([index])))

    def read_batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = self.images.index_select(0, indices).float()
        x = x if self.binarize else dequantized(x / 255)
        x = x.expand(-1, self.channels, -1, -1).clone() if self.channels == 3 else x
        return x, self.labels.index_select(0, indices) if self.conditional else None


@attrs.define(kw_only=True)
class Mnist(TorchvisionMnist):
    """MNIST's handwritten digits (28x28 grey, labels "0".."9") in torchvision's layout (root/MNIST/raw/).

    ``train``: the 60 000 training images, else the 10 000 test images. ``image_size``
    resamples (bilinear, antialiased); ``channels = 3`` repeats the grey channel.
    ``binarize`` gives 0/1 pixels (pixel >= 128 of 255, thresholded again after resampling),
    e.g. for RBMs; otherwise pixels are dequantised as the other image datasets'.
    ``conditional`` returns the digit as the label (``E.given("7")``). ``download = true``
    lets torchvision fetch the files where a network exists.
    """

    root: str = "data/mnist"


@attrs.define(kw_only=True)
class FashionMnist(TorchvisionMnist):
    """Fashion-MNIST's clothing images (28x28 grey, 10 named classes) in torchvision's layout (root/FashionMNIST/raw/).

    The classes are named as the release (and torchvision) names them: "T-shirt/top",
    "Trouser", … "Ankle boot"; conditioned by name, ``E.given("Sneaker")``. The parameters
    are MNIST's: ``train``, ``download``, ``conditional``, ``image_size``, ``channels`` and
    ``binarize``.
    """

    root: str = "data/fashion_mnist"

    reader = "FashionMNIST"
    title = "Fashion-MNIST"
    source = "https://github.com/zalandoresearch/fashion-mnist (the data/fashion folder)"
    attribute = "class"

    @property
    def classes(self) -> tuple[str, ...]:
        from torchvision.datasets import FashionMNIST

        return tuple(FashionMNIST.classes)
