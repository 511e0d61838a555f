"""Image datasets, on files each test writes in the real on-disk layouts (nothing is downloaded)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from ebmkit import EbmkitError
from ebmkit.plugins.images.shapes import ATTRIBUTES, Shapes


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
    from ebmkit.plugins.images.shapes import COLORS

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
    from ebmkit._host.data import stack_samples

    labelled = Shapes(size=16, image_size=8, label="color", dequantize=False)
    x, labels = stack_samples(labelled, [3, 5, 7])
    assert x.shape == (3, 3, 8, 8) and torch.equal(x[1], labelled[5][0])
    assert labels.tolist() == [int(labelled[i][1]) for i in (3, 5, 7)]
    x, labels = stack_samples(Shapes(size=16, image_size=8, dequantize=False), [0, 1])
    assert x.shape == (2, 3, 8, 8) and labels is None


def test_celeba_attributes_say_what_their_labels_mean(tmp_path, registries):
    from ebmkit._host.protocols import Conditioning

    write_images(tmp_path / "img_align_celeba", 2)
    (tmp_path / "list_attr_celeba.txt").write_text("2\nMale Smiling\n000000.jpg 1 -1\n000001.jpg -1 1\n")
    data = registries.get("datasets", "celeba_attributes").build({"root": str(tmp_path), "attribute": "Male", "image_size": 16})
    assert data.conditioning == Conditioning.flag("Male") and data.conditioning.classes == ("not_Male", "Male")


# -- CIFAR-100 and SVHN (out-of-distribution sets) ---------------------------------------------
def skip_md5(monkeypatch):
    """Our files are not the real archives: skip torchvision's MD5 checks, keep its parsing."""
    from torchvision.datasets import CIFAR10, SVHN

    monkeypatch.setattr(CIFAR10, "_check_integrity", lambda self: True)  # CIFAR100 inherits it
    monkeypatch.setattr("torchvision.datasets.cifar.check_integrity", lambda *args, **kwargs: True)
    monkeypatch.setattr(SVHN, "_check_integrity", lambda self: True)


def write_cifar100(root, sizes=(("train", 12), ("test", 7))):
    """cifar-100-python/ as the release unpacks: pickled dicts with fine and coarse labels, and meta."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    batches = {}
    for name, n in sizes:
        batches[name] = {
            "filenames": [f"{name}_{i}.png" for i in range(n)], "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            "fine_labels": [int(v) for v in rng.integers(0, 100, n)], "coarse_labels": [int(v) for v in rng.integers(0, 20, n)],
        }
        (folder / name).write_bytes(pickle.dumps(batches[name]))
    meta = {"fine_label_names": [f"fine{i}" for i in range(100)], "coarse_label_names": [f"coarse{i}" for i in range(20)]}
    (folder / "meta").write_bytes(pickle.dumps(meta))
    return batches


def pixels(x):
    """The 8-bit values under dequantised images ((v + u) / 256 with u in [0, 1))."""
    return (x * 256).floor().to(torch.uint8)


def test_cifar100_reads_torchvisions_layout_test_split_unlabelled_by_default(tmp_path, monkeypatch, registries):
    batches = write_cifar100(tmp_path)
    skip_md5(monkeypatch)
    build = registries.get("datasets", "cifar100").build
    data = build({"root": str(tmp_path)})
    assert len(data) == 7 and data.num_classes is None and data.conditioning is None and data.sample_shape == (3, 32, 32)
    x = data[3]
    assert x.shape == (3, 32, 32) and torch.equal(pixels(x), torch.from_numpy(batches["test"]["data"][3].reshape(3, 32, 32)))
    labelled = build({"root": str(tmp_path), "train": True, "conditional": True})
    x, y = labelled[5]
    assert len(labelled) == 12 and labelled.num_classes == 100 and int(y) == batches["train"]["fine_labels"][5]
    assert torch.equal(pixels(x), torch.from_numpy(batches["train"]["data"][5].reshape(3, 32, 32)))
    assert labelled.conditioning.attribute == "class" and labelled.conditioning.classes[7] == "fine7"


def test_missing_cifar100_says_where_the_files_go(tmp_path, registries):
    with pytest.raises(EbmkitError, match="CIFAR-100 was not found.*\n.*cifar-100-python/train, test.*\n.*cs.toronto.edu"):
        registries.get("datasets", "cifar100").build({"root": str(tmp_path / "nowhere")})


def test_conditional_cifar10_names_its_classes(tmp_path, monkeypatch, registries):
    from ebmkit._host.protocols import Conditioning

    write_cifar(tmp_path)
    skip_md5(monkeypatch)
    build = registries.get("datasets", "cifar10").build
    data = build({"root": str(tmp_path), "conditional": True})
    assert data.conditioning == Conditioning("class", ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"))
    assert data.num_classes == 10 and data.conditioning.index("cat") == 3
    assert build({"root": str(tmp_path)}).conditioning is None


def write_svhn(root, n=6, name="test_32x32.mat"):
    """SVHN's format 2 as the release has it: X (32, 32, 3, N) uint8, y (N, 1) with digit 0 as 10."""
    import scipy.io

    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
    scipy.io.savemat(root / name, {"X": x, "y": rng.integers(1, 11, (n, 1)).astype(np.uint8)})
    return x


def test_svhn_reads_torchvisions_layout(tmp_path, monkeypatch, registries):
    x = write_svhn(tmp_path)
    skip_md5(monkeypatch)
    data = registries.get("datasets", "svhn").build({"root": str(tmp_path)})
    assert len(data) == 6 and data.num_classes is None and data.sample_shape == (3, 32, 32)
    image = data[4]  # images only, no label
    assert isinstance(image, torch.Tensor) and torch.equal(pixels(image), torch.from_numpy(x[..., 4]).permute(2, 0, 1))


def test_missing_svhn_says_where_the_files_go(tmp_path, registries):
    with pytest.raises(EbmkitError, match="SVHN was not found.*\n.*test_32x32.mat.*\n.*ufldl.stanford.edu"):
        registries.get("datasets", "svhn").build({"root": str(tmp_path)})


def test_svhn_without_scipy_says_what_to_install(tmp_path, monkeypatch, registries):
    import sys

    monkeypatch.setitem(sys.modules, "scipy.io", None)  # import scipy.io now raises ImportError
    with pytest.raises(EbmkitError, match=r'pip install "ebmkit\[svhn\]"'):
        registries.get("datasets", "svhn").build({"root": str(tmp_path)})


# -- CelebA-HQ with CelebA attributes ------------------------------------------------------------
CELEBA_ATTRIBUTES = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose Black_Hair Blond_Hair "
    "Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee Gray_Hair Heavy_Makeup High_Cheekbones Male "
    "Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard Oval_Face Pale_Skin Pointy_Nose Receding_Hairline Rosy_Cheeks "
    "Sideburns Smiling Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat Wearing_Lipstick Wearing_Necklace "
    "Wearing_Necktie Young"
).split()
#: HQ index -> CelebA row (not the identity), for 12 HQ images: 0..11 sort apart as text and as numbers.
HQ_TO_CELEBA = [7, 2, 11, 0, 5, 13, 1, 9, 3, 14, 6, 10]


def attribute_table(rows=15, seed=3):
    """±1 values, rows x 40, with Smiling set so the mapping gives other labels than the identity would."""
    table = np.random.default_rng(seed).choice([-1, 1], (rows, 40))
    table[:, CELEBA_ATTRIBUTES.index("Smiling")] = [1 if r % 3 == 0 else -1 for r in range(rows)]
    return table


def attribute_lines(keys, table):
    """list_attr_celeba.txt's layout: a count, the names, then 'file  v1 ... v40' with double-space padding."""
    rows = [f"{key} " + " ".join(f"{v:2d}" for v in values) for key, values in zip(keys, table, strict=True)]
    return f"{len(rows)}\n" + " ".join(CELEBA_ATTRIBUTES) + " \n" + "\n".join(rows) + "\n"


def write_hq_images(folder, names):
    """Tiny solid images; image k is grey level 20·k, so each loaded image says which file it came from."""
    folder.mkdir(parents=True, exist_ok=True)
    for k, name in enumerate(names):
        Image.fromarray(np.full((12, 12, 3), 20 * k, dtype=np.uint8)).save(folder / name)


def write_mapping(path, kind, mapping=HQ_TO_CELEBA):
    """CelebAMask-HQ's CelebA-HQ-to-CelebA-mapping.txt or the CelebA-HQ release's image_list.txt."""
    if kind == "celebamask":
        lines = [f"{'idx':<12}{'orig_idx':<12}orig_file"] + [f"{i:<12}{r:<12}{r + 1:06d}.jpg" for i, r in enumerate(mapping)]
    else:
        lines = [f"{'idx':<12}{'orig_idx':<12}{'orig_file':<27}{'proc_md5':<34}final_md5"]
        lines += [f"{i:<12}{r:<12}{r + 1:06d}.jpg{'':<17}{i:032x}  {r:032x}" for i, r in enumerate(mapping)]
    path.write_text("\n".join(lines) + "\n")


HQ_LAYOUTS = {
    "celebamask": ("CelebA-HQ-img", "{}.jpg", "CelebA-HQ-to-CelebA-mapping.txt"),
    "release": (".", "imgHQ{:05d}.png", "image_list.txt"),
    "release-numbered": ("CelebA-HQ-img", "{:05d}.jpg", "image_list.txt"),
}


def write_celebahq(root, layout, n=12):
    folder, pattern, mapping_file = HQ_LAYOUTS[layout]
    write_hq_images(root / folder, [pattern.format(i) for i in range(n)])
    write_mapping(root / mapping_file, "celebamask" if mapping_file.startswith("CelebA-HQ") else "release")
    table = attribute_table()
    (root / "list_attr_celeba.txt").write_text(attribute_lines([f"{r + 1:06d}.jpg" for r in range(len(table))], table))
    return table


@pytest.mark.parametrize("layout", sorted(HQ_LAYOUTS))
def test_celebahq_attributes_label_each_image_by_its_celeba_row(tmp_path, layout, registries):
    from ebmkit._host.protocols import Conditioning

    table = write_celebahq(tmp_path, layout)
    build = registries.get("datasets", "celebahq_attributes").build
    data = build({"root": str(tmp_path), "image_size": 8})
    assert len(data) == 12 and data.num_classes == 2 and data.sample_shape == (3, 8, 8) and data.domain == (0.0, 1.0)
    assert data.conditioning == Conditioning.flag("Smiling")
    smiling = CELEBA_ATTRIBUTES.index("Smiling")
    expected = [int(table[HQ_TO_CELEBA[i], smiling] > 0) for i in range(12)]
    assert expected != [int(table[i, smiling] > 0) for i in range(12)]  # the mapping matters here
    for i in range(12):
        x, y = data[i]
        assert x.shape == (3, 8, 8) and int(y) == expected[i] and abs(float(x.mean()) * 255 - 20 * i) < 3
    young = build({"root": str(tmp_path), "attribute": "Young", "image_size": 8})
    assert [int(young[i][1]) for i in range(12)] == [int(table[HQ_TO_CELEBA[i], -1] > 0) for i in range(12)]
    assert young.conditioning == Conditioning.flag("Young")


def test_celebahq_attributes_read_celebamask_hq_annotations_without_a_mapping(tmp_path, registries):
    write_hq_images(tmp_path / "CelebA-HQ-img", [f"{i}.jpg" for i in range(12)])
    table = attribute_table(rows=12, seed=4)
    (tmp_path / "CelebAMask-HQ-attribute-anno.txt").write_text(attribute_lines([f"{i}.jpg" for i in range(12)], table))
    data = registries.get("datasets", "celebahq_attributes").build({"root": str(tmp_path), "attribute": "Male", "image_size": 8})
    assert [int(data[i][1]) for i in range(12)] == [int(v > 0) for v in table[:, CELEBA_ATTRIBUTES.index("Male")]]


def test_celebahq_attributes_name_the_files_they_need(tmp_path, registries):
    build = registries.get("datasets", "celebahq_attributes").build
    with pytest.raises(EbmkitError, match=r"does not exist(.*\n)+.*CelebA-HQ-img/0.jpg"):
        build({"root": str(tmp_path / "missing")})
    (tmp_path / "empty").mkdir()
    with pytest.raises(EbmkitError, match="holds no images"):
        build({"root": str(tmp_path / "empty")})
    write_hq_images(tmp_path / "CelebA-HQ-img", ["0.jpg", "1.jpg"])
    with pytest.raises(EbmkitError, match="CelebAMask-HQ-attribute-anno.txt.*list_attr_celeba.txt.*CelebA-HQ-to-CelebA-mapping.txt"
                       ".*image_list.txt.*found none.*\n(.*\n)*.*switchablenorms.*\n.*progressive_growing_of_gans"):
        build({"root": str(tmp_path)})
    (tmp_path / "list_attr_celeba.txt").write_text(attribute_lines(["000001.jpg"], attribute_table(rows=1)))
    with pytest.raises(EbmkitError, match=r"found only list_attr_celeba.txt"):
        build({"root": str(tmp_path)})


def test_celebahq_attributes_refuse_images_and_rows_they_cannot_label(tmp_path, registries):
    write_celebahq(tmp_path, "celebamask")
    build = registries.get("datasets", "celebahq_attributes").build
    with pytest.raises(EbmkitError, match="did you mean 'Smiling'"):
        build({"root": str(tmp_path), "attribute": "Smilling"})
    write_hq_images(tmp_path / "CelebA-HQ-img", ["40.jpg"])
    with pytest.raises(EbmkitError, match="1 image.*CelebA-HQ-to-CelebA-mapping.txt does not list: 40.jpg"):
        build({"root": str(tmp_path)})
    (tmp_path / "CelebA-HQ-img" / "40.jpg").unlink()
    write_mapping(tmp_path / "CelebA-HQ-to-CelebA-mapping.txt", "celebamask", [*HQ_TO_CELEBA[:11], 99])
    with pytest.raises(EbmkitError, match="11.jpg.*to CelebA's 000100.jpg, which .*list_attr_celeba.txt does not list"):
        build({"root": str(tmp_path)})
    (tmp_path / "CelebA-HQ-to-CelebA-mapping.txt").write_text("idx orig_idx\n0 7\n")
    with pytest.raises(EbmkitError, match="not CelebA-HQ's index of CelebA files.*orig_file"):
        build({"root": str(tmp_path)})
    (tmp_path / "CelebA-HQ-to-CelebA-mapping.txt").unlink()
    write_hq_images(tmp_path / "CelebA-HQ-img", ["0.png"])
    with pytest.raises(EbmkitError, match="both have HQ index 0"):
        build({"root": str(tmp_path)})


@pytest.mark.parametrize("name, params", [
    ("cifar10", {"conditional": True}), ("cifar10", {}), ("cifar100", {"conditional": True}), ("cifar100", {}),
    ("8gaussians", {"size": 100}), ("lsun_bedroom", {"image_size": 16}),
])
def test_what_a_dataset_declares_without_reading_is_what_reading_it_gives(name, params, tmp_path, monkeypatch, registries):
    write_cifar(tmp_path)
    write_cifar100(tmp_path)
    write_images(tmp_path / "bedrooms", 3)
    skip_md5(monkeypatch)
    root = {"lsun_bedroom": {"root": str(tmp_path / "bedrooms")}, "8gaussians": {}}.get(name, {"root": str(tmp_path)})
    spec = registries.spec("datasets", name, {**root, **params})  # the checked values, defaults included
    data = spec.build()
    assert spec.entry.factory.declared(**spec.values) == (tuple(data.sample_shape), data.domain, data.num_classes)


def test_validate_without_the_data_checks_a_recipe_away_from_it(run_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no data/cifar10 here
    missing = run_cli("validate", "improved_cd_cifar10")
    assert missing.exit_code == 2 and "CIFAR-10 was not found" in missing.output
    result = run_cli("validate", "--no-data", "improved_cd_cifar10")
    assert result.exit_code == 0, result.output
    assert "improved_cd_cifar10: OK" in result.output and "the data was not read" in result.output
    wrong = run_cli("validate", "--no-data", "improved_cd_cifar10", "--set", "energy.widht=8")
    assert wrong.exit_code == 2 and "energy.widht" in wrong.output  # everything else is still checked
    folder = tmp_path / "pictures"
    folder.mkdir()
    undeclared = run_cli("validate", "--no-data", "improved_cd_shapes", "--set", "data={name = 'image_folder', root = 'pictures'}")
    assert undeclared.exit_code == 2 and "cannot say what its samples are without reading" in undeclared.output
