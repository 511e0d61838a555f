"""scikit-learn's bundled handwritten digits: 1,797 real 8x8 images of 0-9, read from the installed
scikit-learn (nothing is downloaded)."""

from __future__ import annotations

from typing import Literal

import attrs
import torch
import torch.nn.functional as F

from ebmkit import Conditioning, EbmkitError

from ebmkit.plugins.images.items import first_item

CLASSES = tuple(str(d) for d in range(10))


@attrs.frozen
class Labelling:
    """A way to label the digits: the attribute its labels give, the name of each class, and the
    class of each digit 0-9 (``class_of[d]`` is the label index of digit ``d``)."""

    attribute: str
    classes: tuple[str, ...]
    class_of: tuple[int, ...]

    def class_name(self, digit: int) -> str:
        return self.classes[self.class_of[digit]]


#: What ``label`` may name. Each labelling's attribute is its own name, so two models trained on
#: two labellings compose with a requirement that says which labelling each class belongs to.
LABELLINGS = {
    "digit": Labelling("digit", CLASSES, tuple(range(10))),
    "parity": Labelling("parity", ("even", "odd"), tuple(d % 2 for d in range(10))),
    "five_or_more": Labelling("five_or_more", ("below_five", "five_or_more"), tuple(int(d >= 5) for d in range(10))),
}

#: The fixed split: 36 images of each digit (360, 20%), chosen by a permutation seeded with
#: SPLIT_SEED, are the test split; the other 1,437 train. A random split rather than the file's
#: last images: those come from other writers, and a model that learned the train split's
#: writers perfectly would still be measured far from them (docs/compare_digits.md).
TEST_PER_DIGIT = 36
SPLIT_SEED = 0
LEVELS = 16  # pixels are counts 0..16 of a 4x4 block's ink, in 17 levels


def load_counts() -> tuple[torch.Tensor, torch.Tensor]:
    """All 1,797 images as float counts (N, 8, 8) in 0..16, and their digits (N,)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise EbmkitError(
            "the digits dataset is read from scikit-learn, which is not installed: pip install \"ebmkit[digits]\""
        ) from None
    bunch = load_digits()
    return torch.from_numpy(bunch.images).float(), torch.from_numpy(bunch.target).long()


def is_test(labels: torch.Tensor) -> torch.Tensor:
    """Which images are in the test split: the first TEST_PER_DIGIT of each digit in a seeded permutation."""
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(SPLIT_SEED))
    test = torch.zeros(len(labels), dtype=torch.bool)
    for digit in range(len(CLASSES)):
        test[order[labels[order] == digit][:TEST_PER_DIGIT]] = True
    return test


@attrs.define(kw_only=True)
class Digits(torch.utils.data.Dataset):
    """scikit-learn's 1,797 handwritten digits (8x8, 17 grey levels; labels 0-9, or parity, or five or more), no download.

    ``split``: ``train`` (1,437 images), ``test`` (360: 36 of each digit, drawn by a seeded
    permutation, fixed) or ``all``. ``image_size`` resamples (bilinear); ``channels = 3`` repeats the grey channel.
    ``binarize`` gives 0/1 pixels (count >= 8 of 16, before resampling), e.g. for RBMs;
    otherwise pixels are dequantised: (count + U(0, 1)) / 17. ``conditional`` returns the
    digit as the label, so a model can be conditioned on it (``E.given("7")``).
    ``label`` (with ``conditional``) says what the label is: ``digit`` (classes "0".."9"),
    ``parity`` (classes "even": 0, 2, 4, 6, 8 and "odd": 1, 3, 5, 7, 9) or ``five_or_more``
    (classes "below_five": 0-4 and "five_or_more": 5-9), each the attribute of its classes, so a
    model of one is conditioned by class name (``E.given("odd")``) and composed with a model of
    another (``ebmkit compose "p.given(odd) + f.given(five_or_more)"``). The images are the same
    whatever the label; ``digits`` keeps every image's digit, ``labels`` its label.
    """

    split: Literal["train", "test", "all"] = attrs.field(default="train", validator=attrs.validators.in_(("train", "test", "all")))
    image_size: int = attrs.field(default=8, validator=attrs.validators.ge(4))
    channels: int = attrs.field(default=1, validator=attrs.validators.in_((1, 3)))
    binarize: bool = False
    conditional: bool = False
    label: Literal["digit", "parity", "five_or_more"] = attrs.field(default="digit", validator=attrs.validators.in_(tuple(LABELLINGS)))
    images: torch.Tensor = attrs.field(init=False, repr=False)
    digits: torch.Tensor = attrs.field(init=False, repr=False)
    labels: torch.Tensor = attrs.field(init=False, repr=False)

    domain = (0.0, 1.0)

    def __attrs_post_init__(self) -> None:
        if self.label != "digit" and not self.conditional:
            raise EbmkitError(
                f"label = {self.label!r} says what each image's label is, and without conditional = true the "
                "images have no label; set conditional = true, or leave label out"
            )
        counts, digits = load_counts()
        keep = {"train": ~is_test(digits), "test": is_test(digits), "all": torch.ones(len(digits), dtype=torch.bool)}[self.split]
        counts, self.digits = counts[keep], digits[keep]
        self.labels = torch.tensor(self.labelling.class_of)[self.digits]
        if self.binarize:
            x = (counts >= LEVELS / 2).float()
        else:
            x = counts / (LEVELS + 1)  # dequantised per draw: (count + u) / 17 lies in [0, 1)
        x = x[:, None]
        if self.image_size != 8:
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False, antialias=True)
            if self.binarize:
                x = (x >= 0.5).float()
        self.images = x

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return (self.channels, self.image_size, self.image_size)

    @property
    def labelling(self) -> Labelling:
        return LABELLINGS[self.label]

    @property
    def num_classes(self) -> int | None:
        return len(self.labelling.classes) if self.conditional else None

    @property
    def conditioning(self) -> Conditioning | None:
        return Conditioning(self.labelling.attribute, self.labelling.classes) if self.conditional else None

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        return first_item(self.read_batch(torch.tensor([index])))

    def read_batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = self.images.index_select(0, indices)
        if not self.binarize:
            x = x + torch.rand_like(x) / (LEVELS + 1)
        x = x.expand(-1, self.channels, -1, -1).clone() if self.channels == 3 else x
        return x, self.labels.index_select(0, indices) if self.conditional else None
