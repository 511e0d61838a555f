"""Images from a folder (CelebA-HQ, LSUN bedroom, any image folder) and CelebA's attribute labels."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import attrs
import torch

from ebmkit import Conditioning, EbmkitError, did_you_mean_hint
from ebmkit.plugins.images.dequantize import dequantize as dequantized

EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


#: PIL's mode for each number of channels an image folder reads.
MODES = {1: "L", 3: "RGB"}


def load_image(path: Path, image_size: int, channels: int = 3) -> torch.Tensor:
    """An image converted to grey (channels 1) or RGB (3), resized (shorter side) and centre-cropped
    to image_size, as uint8 (channels, S, S)."""
    import torchvision.transforms.functional as TF
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert(MODES[channels])
        image = TF.resize(image, image_size, interpolation=TF.InterpolationMode.BICUBIC, antialias=True)
        image = TF.center_crop(image, [image_size, image_size])
        return TF.pil_to_tensor(image)


@attrs.define(kw_only=True)
class ImageFolder(torch.utils.data.Dataset):
    """All images under a folder (recursively), resized and centre-cropped to image_size, dequantised."""

    root: str
    image_size: int = attrs.field(default=128, validator=attrs.validators.ge(8))
    where_to_get: str = attrs.field(default="", repr=False)
    channels: int = attrs.field(default=3, validator=attrs.validators.in_(tuple(MODES)))
    files: list[Path] = attrs.field(init=False, repr=False)

    domain = (0.0, 1.0)
    num_classes = None
    conditioning = None

    def __attrs_post_init__(self) -> None:
        root = Path(self.root)
        files = image_files(root) if root.is_dir() else []
        if not files:
            hint = f"\n {self.where_to_get}" if self.where_to_get else ""
            state = "does not exist" if not root.exists() else "holds no images (.png, .jpg, .jpeg, .webp, .bmp)"
            raise EbmkitError(f"the image folder {root.resolve()} {state}; put the images there, or set root in [data].{hint}")
        self.files = files

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return (self.channels, self.image_size, self.image_size)

    def __len__(self) -> int:
        return len(self.files)

    def _image(self, index: int) -> torch.Tensor:
        return dequantized(load_image(self.files[index], self.image_size, self.channels).float() / 255)

    def __getitem__(self, index: int):
        return self._image(index)


def folder_params(default_root: str, **extra: Any) -> type:
    """The parameter spec of a folder dataset, with its default root and validators."""
    fields = {
        "root": attrs.field(default=default_root, type=str),
        "image_size": attrs.field(default=128, type=int, validator=attrs.validators.ge(8)),
        **extra,
    }
    return attrs.make_class("FolderParams", fields, kw_only=True)


def image_files(folder: Path) -> list[Path]:
    """The images under ``folder`` (recursively), in sorted path order."""
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file())


@attrs.define(kw_only=True)
class ClassFolders(ImageFolder):
    """torchvision's ImageFolder layout, root/<class>/<images>: each image labelled by its class
    folder. The classes are the subfolders' names in sorted order, as torchvision numbers them
    (folders whose names start with "." are skipped); the images of a class are those under its
    folder, recursively."""

    classes: tuple[str, ...] = attrs.field(init=False)
    targets: torch.Tensor = attrs.field(init=False, repr=False)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def conditioning(self) -> Conditioning:
        return Conditioning("class", self.classes)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()  # the folder exists and holds images
        root = Path(self.root)
        loose = [p for p in self.files if p.parent == root]
        if loose:
            raise EbmkitError(
                f"{root.resolve()} holds {len(loose)} image{'s' if len(loose) > 1 else ''} directly in it "
                f"(e.g. {loose[0].name}); with labels = \"folders\" each image goes in the folder of its class, "
                f"root/<class>/<image>. Move them into class folders, or set labels = \"none\" for unlabelled images"
            )
        folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        files, targets = [], []
        for index, folder in enumerate(folders):
            images = image_files(folder)
            if not images:
                raise EbmkitError(
                    f"the class folder {folder.resolve()} holds no images (.png, .jpg, .jpeg, .webp, .bmp); put the "
                    f"images of class {folder.name!r} there, or remove the folder"
                )
            files += images
            targets += [index] * len(images)
        self.classes = tuple(folder.name for folder in folders)
        self.files, self.targets = files, torch.tensor(targets)

    def __getitem__(self, index: int):
        return self._image(index), self.targets[index]


def image_folder(
    root: str,
    image_size: int = 128,
    labels: Literal["none", "folders"] = "none",
    channels: Annotated[int, attrs.validators.in_(tuple(MODES))] = 3,
) -> ImageFolder:
    """All images under a folder (recursively), resized and centre-cropped to image_size, dequantised.

    ``labels = "folders"`` reads torchvision's ImageFolder layout, root/<class>/<images>: each
    image is labelled by its class folder (classes: the folder names, sorted), and a model
    trained on it is conditioned by folder name (``E.given("cat")``). ``channels = 1`` reads
    grey images, 3 (the default) RGB.
    """
    folder_type = ClassFolders if labels == "folders" else ImageFolder
    return folder_type(root=root, image_size=image_size, channels=channels)


def declared_rgb(num_classes: int | None):
    """A folder factory's ``declared(**params)`` (for ``validate --no-data``): RGB images of
    ``image_size``, in [0, 1], with ``num_classes`` labels."""
    def declared(image_size: int = 128, **_: object) -> tuple[tuple[int, ...], tuple[float, float], int | None]:
        return (3, image_size, image_size), ImageFolder.domain, num_classes

    return declared


def _folder(root: str, where_to_get: str):
    def factory(root: str = root, image_size: int = 128) -> ImageFolder:
        return ImageFolder(root=root, image_size=image_size, where_to_get=where_to_get)

    factory.params = folder_params(root)
    factory.declared = declared_rgb(None)
    return factory


CELEBAHQ = _folder("data/celebahq", "CelebA-HQ: one folder of the face images (e.g. the 30 000 images of the CelebA-HQ release, any resolution >= 128).")
LSUN_BEDROOM = _folder("data/lsun_bedroom", "LSUN bedroom: export the LMDB from the LSUN release to image files in one folder.")


def read_attributes(path: Path) -> tuple[list[str], dict[str, list[int]]]:
    """Parse list_attr_celeba.txt: a count line, the 40 attribute names, then 'file v1 ... v40' with v = ±1."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
        names = lines[1].split()
        table = {}
        for number, line in enumerate(lines[2:], 3):
            parts = line.split()
            if parts:
                table[parts[0]] = [int(v) for v in parts[1:]]
                if len(table[parts[0]]) != len(names):
                    raise ValueError(f"line {number} has {len(parts) - 1} values for {len(names)} attributes")
    except (IndexError, ValueError) as exc:  # ValueError: not UTF-8, not a number, or a short line
        raise EbmkitError(
            f"{path.resolve()} is not CelebA's attribute list ({exc}): it should hold a count line, the 40 attribute "
            "names, then one line 'file.jpg v1 ... v40' per image with each v = 1 or -1"
        ) from None
    return names, table


def attribute_column(names: list[str], attribute: str) -> int:
    """The column of ``attribute`` among CelebA's attribute names; a wrong name says the closest one."""
    if attribute not in names:
        hint = did_you_mean_hint(attribute, names)
        raise EbmkitError(f"CelebA has no attribute {attribute!r}{hint}\n attributes: {', '.join(names)}")
    return names.index(attribute)


@attrs.define(kw_only=True)
class CelebAAttributes(ImageFolder):
    """CelebA's aligned images (root/img_align_celeba/) labelled 0/1 by one attribute of root/list_attr_celeba.txt."""

    attribute: str = "Smiling"
    labels: torch.Tensor = attrs.field(init=False, repr=False)

    num_classes = 2

    @property
    def conditioning(self) -> Conditioning:
        return Conditioning.flag(self.attribute)

    def __attrs_post_init__(self) -> None:
        root = Path(self.root)
        attr_file = root / "list_attr_celeba.txt"
        if not attr_file.exists():
            raise EbmkitError(
                f"{attr_file.resolve()} is missing; CelebA's attribute file goes there, next to the images folder "
                f"img_align_celeba/ (both from the CelebA release: mmlab.ie.cuhk.edu.hk/projects/CelebA.html)"
            )
        names, table = read_attributes(attr_file)
        column = attribute_column(names, self.attribute)
        images = root / "img_align_celeba"
        files = [images / name for name in sorted(table) if (images / name).exists()]
        if not files:
            raise EbmkitError(f"no images of {attr_file.name} were found in {images.resolve()}")
        self.files = files
        self.labels = torch.tensor([int(table[f.name][column] > 0) for f in files])

    def __getitem__(self, index: int):
        return self._image(index), self.labels[index]


def celeba_attributes(root: str = "data/celeba", attribute: str = "Smiling", image_size: int = 128) -> CelebAAttributes:
    """CelebA images with one binary attribute (by name, from list_attr_celeba.txt) as the label."""
    return CelebAAttributes(root=root, attribute=attribute, image_size=image_size)


celeba_attributes.declared = declared_rgb(2)


celeba_attributes.params = folder_params("data/celeba", attribute=attrs.field(default="Smiling", type=str))
