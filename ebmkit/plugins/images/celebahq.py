"""CelebA-HQ images labelled by one CelebA attribute, through CelebA-HQ's index of CelebA files."""

from __future__ import annotations

import re
from pathlib import Path

import attrs
import torch

from ebmkit import EbmkitError
from ebmkit.plugins.images.folder import EXTENSIONS, CelebAAttributes, attribute_column, declared_rgb, folder_params, read_attributes

IMAGES_FOLDER = "CelebA-HQ-img"
MAPPING_FILES = ("CelebA-HQ-to-CelebA-mapping.txt", "image_list.txt")
ANNOTATION_FILE = "CelebAMask-HQ-attribute-anno.txt"
ATTRIBUTE_FILE = "list_attr_celeba.txt"

LAYOUT = f"""CelebA-HQ attributes expect, in root:
  - the images, named by HQ index: CelebAMask-HQ's {IMAGES_FOLDER}/0.jpg ... 29999.jpg, or the CelebA-HQ release's
    imgHQ00000.png (or 00000.png, 00000.jpg) ..., in root/{IMAGES_FOLDER}/ or in root itself;
  - either CelebAMask-HQ's {ANNOTATION_FILE} (CelebA's 40 attributes keyed by the HQ file names 0.jpg ...),
  - or CelebA's {ATTRIBUTE_FILE} (mmlab.ie.cuhk.edu.hk/projects/CelebA.html) with the index of HQ images to
    CelebA files: CelebAMask-HQ's {MAPPING_FILES[0]} (github.com/switchablenorms/CelebAMask-HQ) or the CelebA-HQ
    release's {MAPPING_FILES[1]} (github.com/tkarras/progressive_growing_of_gans), columns idx and orig_file."""


def hq_index(path: Path) -> int | None:
    """The HQ index of an image file: the integer in its stem (0.jpg, 00000.png, imgHQ00000.png), or None."""
    match = re.fullmatch(r"\D*(\d+)", path.stem)
    return int(match.group(1)) if match else None


def find_images(root: Path) -> dict[int, Path]:
    """The images of root/CelebA-HQ-img/ (or of root when that folder is absent), by HQ index."""
    folder = root / IMAGES_FOLDER if (root / IMAGES_FOLDER).is_dir() else root
    # Not recursive: CelebAMask-HQ's mask folders beside the images hold numbered PNGs too.
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in EXTENSIONS) if folder.is_dir() else []
    images: dict[int, Path] = {}
    for path in files:
        index = hq_index(path)
        if index is None:
            continue
        if index in images:
            raise EbmkitError(f"{images[index].name} and {path.name} in {folder.resolve()} both have HQ index {index}; keep one\n{LAYOUT}")
        images[index] = path
    if not images:
        state = "does not exist" if not root.exists() else f"holds no images named by HQ index in {folder.resolve()}"
        raise EbmkitError(f"the CelebA-HQ folder {root.resolve()} {state}; put the images there, or set root in [data].\n{LAYOUT}")
    return images


def read_mapping(path: Path) -> dict[int, str]:
    """HQ index -> CelebA file name, from a whitespace-separated table whose header names idx and orig_file."""
    try:
        lines = [line.split() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        header = lines[0]
        idx, orig_file = header.index("idx"), header.index("orig_file")
        mapping = {}
        for number, parts in enumerate(lines[1:], 2):
            if len(parts) != len(header):
                raise ValueError(f"line {number} has {len(parts)} columns for the {len(header)} of the header")
            mapping[int(parts[idx])] = parts[orig_file]
    except (IndexError, ValueError) as exc:  # no header line, no such column, not UTF-8, an index that is not a number
        raise EbmkitError(
            f"{path.resolve()} is not CelebA-HQ's index of CelebA files ({exc}): it should start with a header line "
            f"naming the columns idx and orig_file (e.g. 'idx orig_idx orig_file'), then one row per HQ image "
            f"(e.g. '0 119613 119614.jpg')\n{LAYOUT}"
        ) from None
    return mapping


@attrs.define(kw_only=True)
class CelebAHQAttributes(CelebAAttributes):
    """CelebA-HQ images labelled 0/1 by one CelebA attribute (1 where the attribute is 1), as the Improved-CD
    reference trains its compositional attribute models.

    Layout, in root: the images named by HQ index (CelebAMask-HQ's CelebA-HQ-img/0.jpg ... 29999.jpg, or the
    CelebA-HQ release's imgHQ00000.png, 00000.png or 00000.jpg, in root/CelebA-HQ-img/ or in root); and either
    CelebAMask-HQ's CelebAMask-HQ-attribute-anno.txt (the attributes keyed by HQ file name), or CelebA's
    list_attr_celeba.txt with the index of HQ images to CelebA files (CelebAMask-HQ's
    CelebA-HQ-to-CelebA-mapping.txt or the CelebA-HQ release's image_list.txt).
    """

    def __attrs_post_init__(self) -> None:
        root = Path(self.root)
        images = find_images(root)
        names, by_index = self._attributes(root, images)
        column = attribute_column(names, self.attribute)
        order = sorted(images)
        self.files = [images[index] for index in order]
        self.labels = torch.tensor([int(by_index[index][column] > 0) for index in order])

    def _attributes(self, root: Path, images: dict[int, Path]) -> tuple[list[str], dict[int, list[int]]]:
        """The attribute names and each image's attribute values, by HQ index."""
        annotation = root / ANNOTATION_FILE
        if annotation.exists():
            names, table = read_attributes(annotation)
            by_index = {}
            for name, values in table.items():
                index = hq_index(Path(name))
                if index is None:
                    raise EbmkitError(f"{annotation.resolve()} lists {name!r}, which is not an HQ file name such as 0.jpg\n{LAYOUT}")
                by_index[index] = values
            self._check_listed(images, by_index, annotation)
            return names, by_index
        attribute_file = root / ATTRIBUTE_FILE
        mapping_file = next((root / name for name in MAPPING_FILES if (root / name).exists()), None)
        if mapping_file is None or not attribute_file.exists():
            found = [name for name in (*MAPPING_FILES, ATTRIBUTE_FILE) if (root / name).exists()]
            have = f" (found only {', '.join(found)})" if found else " (found none of them)"
            raise EbmkitError(
                f"no attribute labels for the CelebA-HQ images in {root.resolve()}: looked for {ANNOTATION_FILE}, "
                f"or for {ATTRIBUTE_FILE} with {MAPPING_FILES[0]} or {MAPPING_FILES[1]}{have}\n{LAYOUT}"
            )
        names, table = read_attributes(attribute_file)
        mapping = read_mapping(mapping_file)
        self._check_listed(images, mapping, mapping_file)
        by_index = {}
        for index in images:
            if mapping[index] not in table:
                raise EbmkitError(
                    f"{mapping_file.name} maps HQ image {images[index].name} (index {index}) to CelebA's {mapping[index]}, "
                    f"which {attribute_file.resolve()} does not list: use CelebA's own {ATTRIBUTE_FILE} (all 202 599 "
                    f"images)\n{LAYOUT}"
                )
            by_index[index] = table[mapping[index]]
        return names, by_index

    @staticmethod
    def _check_listed(images: dict[int, Path], listed: dict[int, object], index_file: Path) -> None:
        missing = sorted(set(images) - set(listed))
        if missing:
            shown = ", ".join(images[index].name for index in missing[:5]) + (", ..." if len(missing) > 5 else "")
            raise EbmkitError(
                f"{len(missing)} image(s) have an HQ index that {index_file.resolve()} does not list: {shown} "
                f"(it lists {len(listed)} indices); the images and {index_file.name} must come from the same release\n{LAYOUT}"
            )


def celebahq_attributes(root: str = "data/celebahq", attribute: str = "Smiling", image_size: int = 128) -> CelebAHQAttributes:
    """CelebA-HQ images with one binary CelebA attribute (by name) as the label."""
    return CelebAHQAttributes(root=root, attribute=attribute, image_size=image_size)


celebahq_attributes.declared = declared_rgb(2)


celebahq_attributes.params = folder_params("data/celebahq", attribute=attrs.field(default="Smiling", type=str))
