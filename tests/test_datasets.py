"""Image datasets, on files each test writes in the real on-disk layouts (nothing is downloaded)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from ebmkit import EbmkitError
from ebmkit_images.shapes import ATTRIBUTES, Shapes


def test_shapes_are_deterministic_and_labelled(registries):
    build = registries.get("datasets", "shapes").build
    a, b = build({"size": 40, "seed": 1, "dequantize": False}), build({"size": 40, "seed": 1, "dequantize": False})
    assert torch.equal(a.images, b.images) and not torch.equal(a.images, build({"size": 40, "seed": 2}).images)
    labelled = build({"size": 40, "label": "color"})
    x, y = labelled[3]
    assert x.shape == (3, 32, 32) and 0 <= x.min() and x.max() <= 1 and labelled.num_classes == 6 and 0 <= int(y) < 6
    assert a.attributes.shape == (40, 4) and all(a.attributes[:, i].max() < len(v) for i, v in enumerate(ATTRIBUTES.values()))


def test_shapes_draw_the_colour_they_claim():
    data = Shapes(size=60, seed=0, dequantize=False)
    from ebmkit_images.shapes import COLORS

    for image, attributes in zip(data.images.float() / 255, data.attributes, strict=True):
        foreground = image.flatten(1)[:, image.flatten(1).sum(0) > 0.6]  # pixels brighter than the background
        expected = torch.tensor(COLORS[int(attributes[1])])
        assert (foreground.median(1).values - expected).abs().max() < 0.03  # the median skips anti-aliased edges


def test_dequantisation_matches_the_reference():
    data = Shapes(size=8, seed=0)
    raw = data.images.float() / 255
    x = torch.stack([data[i] for i in range(8)])
    low, high = raw * 255 / 256, raw * 255 / 256 + 1 / 256
    assert torch.all(x >= low) and torch.all(x <= high)


def write_cifar(root, n=20):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), "labels": [int(v) for v in rng.integers(0, 10, n)]}
        (folder / name).write_bytes(pickle.dumps(batch))
    meta = {"label_names": [f"class{i}" for i in range(10)]}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta))


def test_cifar10_reads_torchvisions_layout(tmp_path, monkeypatch, registries):
    from torchvision.datasets import CIFAR10

    write_cifar(tmp_path)
    # Our files are not the real archive: skip torchvision's MD5 checks, keep its parsing.
    monkeypatch.setattr(CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr("torchvision.datasets.cifar.check_integrity", lambda *args, **kwargs: True)
    data = registries.get("datasets", "cifar10").build({"root": str(tmp_path), "conditional": True})
    assert len(data) == 100 and data.num_classes == 10
    x, y = data[0]
    assert x.shape == (3, 32, 32) and 0 <= x.min() and x.max() <= 1 and 0 <= int(y) < 10
    assert len(registries.get("datasets", "cifar10").build({"root": str(tmp_path), "train": False})) == 20


def test_missing_cifar10_says_where_the_files_go(tmp_path, registries):
    with pytest.raises(EbmkitError, match="cifar-10-batches-py.*\n.*cs.toronto.edu"):
        registries.get("datasets", "cifar10").build({"root": str(tmp_path / "nowhere")})


def write_images(folder, n, size=(40, 30)):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (*size[::-1], 3), dtype=np.uint8)).save(folder / f"{i:06d}.jpg")


@pytest.mark.parametrize("name", ["image_folder", "celebahq", "lsun_bedroom"])
def test_image_folders(tmp_path, name, registries):
    write_images(tmp_path / "sub", 5)
    data = registries.get("datasets", name).build({"root": str(tmp_path), "image_size": 16})
    assert len(data) == 5 and data[0].shape == (3, 16, 16) and data.sample_shape == (3, 16, 16)


def test_empty_image_folder_is_a_clear_error(tmp_path, registries):
    with pytest.raises(EbmkitError, match="does not exist.*\n CelebA-HQ"):
        registries.get("datasets", "celebahq").build({"root": str(tmp_path / "missing")})


def test_celeba_attribute_is_chosen_by_name(tmp_path, registries):
    write_images(tmp_path / "img_align_celeba", 4)
    names = ["5_o_Clock_Shadow", "Male", "Smiling", "Young"]
    rows = ["000000.jpg 1 -1 1 1", "000001.jpg -1 1 -1 1", "000002.jpg 1 1 1 -1", "000003.jpg -1 -1 -1 -1"]
    (tmp_path / "list_attr_celeba.txt").write_text("4\n" + " ".join(names) + "\n" + "\n".join(rows) + "\n")
    build = registries.get("datasets", "celeba_attributes").build
    data = build({"root": str(tmp_path), "attribute": "Male", "image_size": 16})
    assert [int(data[i][1]) for i in range(4)] == [0, 1, 1, 0] and data.num_classes == 2
    with pytest.raises(EbmkitError, match="did you mean 'Smiling'"):
        build({"root": str(tmp_path), "attribute": "Smilling"})


def test_stack_samples_batches_samples_and_keeps_labels_apart():
    from ebmkit.data import stack_samples

    labelled = Shapes(size=16, image_size=8, label="color", dequantize=False)
    x, labels = stack_samples(labelled, [3, 5, 7])
    assert x.shape == (3, 3, 8, 8) and torch.equal(x[1], labelled[5][0])
    assert labels.tolist() == [int(labelled[i][1]) for i in (3, 5, 7)]
    x, labels = stack_samples(Shapes(size=16, image_size=8, dequantize=False), [0, 1])
    assert x.shape == (2, 3, 8, 8) and labels is None
