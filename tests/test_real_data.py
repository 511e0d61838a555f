"""Real data: scikit-learn's digits, MNIST and Fashion-MNIST (on IDX files the tests write), a user's
own arrays (.npy, .npz, .safetensors) and image folders labelled by class folder; each bad input is
an EbmkitError, and through the CLI exit code 2 with a message and no traceback."""

from __future__ import annotations

import json
import pickle
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from ebmkit import EbmkitError
from ebmkit._testkit.contract import check_component


def pixels(x):
    """The 8-bit values under dequantised images ((v + u) / 256 with u in [0, 1))."""
    return (x * 256).floor().to(torch.uint8)


def recipe(tmp_path, data: str, energy: str = 'name = "mlp"\nhidden = 8\ndepth = 1') -> str:
    """A tiny recipe around a [data] table (TOML lines), written to tmp_path."""
    path = tmp_path / "recipe.toml"
    path.write_text(
        f"[run]\nseed = 0\n[data]\n{data}\n[energy]\n{energy}\n"
        '[sampler]\nname = "chain"\nsteps = 1\n[[sampler.transitions]]\nname = "langevin"\nstep_size = 0.01\n'
        '[[losses]]\nname = "cd"\n[optim]\nname = "adam"\nlr = 0.001\n'
        "[train]\nsteps = 2\nbatch_size = 4\nlog_every = 1\neval_at_start = false\n"
    )
    return str(path)


def exits_2_saying(result, *expected: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "error:" in result.output
    for text in expected:
        assert text in result.output, f"{text!r} not in:\n{result.output}"


# -- scikit-learn's digits ---------------------------------------------------------------------
def test_digits_splits_and_names_its_labels(registries):
    build = registries.get("datasets", "digits").build
    train, test = build({"conditional": True}), build({"split": "test"})
    assert (len(train), len(test), len(build({"split": "all"}))) == (1437, 360, 1797)
    assert train.sample_shape == (1, 8, 8) and train.domain == (0.0, 1.0) and train.num_classes == 10
    x, y = train[5]
    assert x.shape == (1, 8, 8) and 0 <= x.min() and x.max() <= 1 and 0 <= int(y) < 10
    assert all(30 <= n <= 40 for n in torch.bincount(test.labels, minlength=10).tolist())  # every digit in both splits
    assert train.conditioning.attribute == "digit" and train.conditioning.index("7") == 7
    with pytest.raises(EbmkitError, match="did you mean"):
        train.conditioning.index("7 ")
    assert test.num_classes is None and test.conditioning is None and isinstance(test[0], torch.Tensor)


def test_digits_resample_repeat_channels_and_binarize(registries):
    build = registries.get("datasets", "digits").build
    big = build({"image_size": 16, "split": "test"})
    assert big.sample_shape == (1, 16, 16) and big[0].shape == (1, 16, 16)
    rgb = build({"channels": 3, "split": "test"})[0]
    assert rgb.shape == (3, 8, 8) and torch.equal(rgb[0], rgb[2])
    for size in (8, 12):
        binary = build({"binarize": True, "image_size": size, "split": "test"})
        values = torch.stack([binary[i] for i in range(20)])
        assert set(values.unique().tolist()) == {0.0, 1.0}


def test_digits_are_deterministic(registries):
    build = registries.get("datasets", "digits").build
    a, b = build({"split": "test"}), build({"split": "test"})
    assert torch.equal(a.images, b.images)
    torch.manual_seed(3)
    first = a[4]
    torch.manual_seed(3)
    assert torch.equal(first, b[4])


# -- MNIST and Fashion-MNIST, on IDX files ------------------------------------------------------
def write_idx(folder, n_train=12, n_test=5, seed=0):
    """The four unpacked IDX files of the release: magic 2051 (uint8, 3 dims) / 2049 (uint8, 1 dim), big-endian sizes."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    written = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        (folder / f"{split}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, n, 28, 28) + images.tobytes())
        (folder / f"{split}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, n) + labels.tobytes())
        written[split] = (images, labels)
    return written


def write_mnist(root):
    return write_idx(root / "MNIST" / "raw")


def write_fashion_mnist(root):
    return write_idx(root / "FashionMNIST" / "raw", seed=1)


def test_mnist_reads_torchvisions_layout(tmp_path, registries):
    written = write_mnist(tmp_path)
    build = registries.get("datasets", "mnist").build
    data = build({"root": str(tmp_path)})
    assert len(data) == 12 and data.sample_shape == (1, 28, 28) and data.domain == (0.0, 1.0) and data.num_classes is None
    assert torch.equal(pixels(data[3])[0], torch.from_numpy(written["train"][0][3]))
    test = build({"root": str(tmp_path), "train": False, "conditional": True})
    x, y = test[2]
    assert len(test) == 5 and int(y) == written["t10k"][1][2] and torch.equal(pixels(x)[0], torch.from_numpy(written["t10k"][0][2]))
    assert test.conditioning.attribute == "digit" and test.conditioning.classes == tuple("0123456789")
    binary = build({"root": str(tmp_path), "binarize": True})
    assert torch.equal(binary[3][0], torch.from_numpy(written["train"][0][3] >= 128).float())
    small = build({"root": str(tmp_path), "image_size": 14, "channels": 3, "binarize": True})
    assert small.sample_shape == (3, 14, 14) and small[0].shape == (3, 14, 14) and set(small[0].unique().tolist()) <= {0.0, 1.0}


def test_fashion_mnist_names_its_classes_as_the_release(tmp_path, registries):
    from torchvision.datasets import FashionMNIST

    written = write_fashion_mnist(tmp_path)
    data = registries.get("datasets", "fashion_mnist").build({"root": str(tmp_path), "conditional": True, "image_size": 32})
    assert data.conditioning.classes == tuple(FashionMNIST.classes) and data.conditioning.classes[0] == "T-shirt/top"
    assert data.conditioning.index("Sneaker") == 7 and data.num_classes == 10
    x, y = data[1]
    assert x.shape == (1, 32, 32) and int(y) == written["train"][1][1]


def test_missing_mnist_says_which_files_go_where(tmp_path, registries):
    with pytest.raises(EbmkitError, match=r"MNIST was not found.*\n.*nowhere/MNIST/raw/.*train-images-idx3-ubyte.*\n.*download = true"):
        registries.get("datasets", "mnist").build({"root": str(tmp_path / "nowhere")})
    write_fashion_mnist(tmp_path)
    (tmp_path / "FashionMNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(EbmkitError, match=r"Fashion-MNIST was not found.*\(missing: t10k-labels-idx1-ubyte\)"):
        registries.get("datasets", "fashion_mnist").build({"root": str(tmp_path)})


def test_malformed_idx_file_is_a_clear_error(tmp_path, registries):
    write_mnist(tmp_path)
    (tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte").write_bytes(b"not an IDX file at all")
    with pytest.raises(EbmkitError, match=r"train-images-idx3-ubyte is not a valid IDX file: its magic number is \d+, not 2051"):
        registries.get("datasets", "mnist").build({"root": str(tmp_path)})


def test_mnist_download_without_a_network_says_where_to_put_the_files(tmp_path, monkeypatch, registries):
    from urllib.error import URLError

    from torchvision.datasets import MNIST

    def offline(self):
        raise URLError("no network")

    monkeypatch.setattr(MNIST, "download", offline)
    with pytest.raises(EbmkitError, match=r"could not download MNIST.*no network(.*\n)+.*ossci-datasets"):
        registries.get("datasets", "mnist").build({"root": str(tmp_path), "download": True})


# -- your own arrays ----------------------------------------------------------------------------
CLASSES = ["left", "right", "up"]


def write_array(root):
    """data.npz: x (9, 2, 3) in [0, 1] and integer labels y."""
    rng = np.random.default_rng(0)
    x = rng.random((9, 2, 3)).astype(np.float32)
    np.savez(root / "data.npz", x=x, y=np.arange(9) % 3)
    return x


def array_params(root):
    return {"path": str(root / "data.npz"), "labels": "y", "classes": CLASSES}


def test_array_from_npz_with_labels_and_class_names(tmp_path, registries):
    x = write_array(tmp_path)
    data = registries.get("datasets", "array").build(array_params(tmp_path))
    assert len(data) == 9 and data.sample_shape == (2, 3) and data.domain == (0.0, 1.0) and data.num_classes == 3
    sample, label = data[4]
    assert torch.equal(sample, torch.from_numpy(x[4])) and int(label) == 1
    assert data.conditioning.attribute == "class" and data.conditioning.index("up") == 2
    unnamed = registries.get("datasets", "array").build({"path": str(tmp_path / "data.npz"), "labels": "y"})
    assert unnamed.conditioning.classes == ("0", "1", "2")
    plain = registries.get("datasets", "array").build({"path": str(tmp_path / "data.npz")})  # "x" of several
    assert plain.num_classes is None and plain.conditioning is None and plain[0].shape == (2, 3)


def test_array_from_npy_and_safetensors_of_any_dtype(tmp_path, registries):
    from safetensors.numpy import save_file

    build = registries.get("datasets", "array").build
    np.save(tmp_path / "points.npy", np.array([[-3.0, 2.0], [0.5, 4.0], [1.0, 1.0]]))
    np.save(tmp_path / "labels.npy", np.array([[0], [1], [1]], dtype=np.uint8))
    points = build({"path": str(tmp_path / "points.npy"), "labels": str(tmp_path / "labels.npy")})
    assert points.domain is None and points.sample_shape == (2,) and points.samples.dtype == torch.float32
    assert [int(points[i][1]) for i in range(3)] == [0, 1, 1]
    assert build({"path": str(tmp_path / "points.npy"), "domain": [-5, 5]}).domain == (-5.0, 5.0)
    np.save(tmp_path / "scalars.npy", np.array([0.1, 0.7, 0.3]))
    scalars = build({"path": str(tmp_path / "scalars.npy")})
    assert scalars.sample_shape == (1,) and scalars[1].tolist() == pytest.approx([0.7])
    images = np.random.default_rng(1).integers(0, 256, (4, 1, 5, 5), dtype=np.uint8)
    save_file({"images": images, "binary": images >= 128, "digit": np.array([3, 0, 1, 3])}, str(tmp_path / "d.safetensors"))
    counts = build({"path": str(tmp_path / "d.safetensors"), "key": "images", "labels": "digit"})
    assert counts.domain is None and torch.equal(counts[2][0], torch.from_numpy(images[2]).float()) and counts.num_classes == 4
    binary = build({"path": str(tmp_path / "d.safetensors"), "key": "binary"})
    assert binary.domain == (0.0, 1.0) and set(binary.samples.unique().tolist()) == {0.0, 1.0}


def bad(name, make, *messages):
    """A bad input: ``make(folder)`` writes it and returns the dataset's parameters; the error says each of ``messages``."""
    return pytest.param(make, messages, id=name)


def npz(**arrays):
    def write(folder):
        np.savez(folder / "d.npz", **arrays)
        return {"path": str(folder / "d.npz")}

    return write


def npy(array, **params):
    def write(folder):
        np.save(folder / "d.npy", array)
        return {"path": str(folder / "d.npy"), **params}

    return write


def raw_file(name, content: bytes):
    def write(folder):
        (folder / name).write_bytes(content)
        return {"path": str(folder / name)}

    return write


def with_nan(folder):
    x = np.zeros((6, 4))
    x[2, 3], x[4, 0], x[5, 1] = np.nan, np.inf, -np.inf
    np.save(folder / "d.npy", x)
    return {"path": str(folder / "d.npy")}


def with_object_array(folder):
    np.save(folder / "d.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    return {"path": str(folder / "d.npy")}


def with_labels_file(labels):
    def write(folder):
        np.save(folder / "d.npy", np.zeros((4, 2)))
        np.save(folder / "y.npy", labels)
        return {"path": str(folder / "d.npy"), "labels": str(folder / "y.npy")}

    return write


BAD_ARRAYS = [
    bad("missing-file", lambda folder: {"path": str(folder / "nothere.npy")}, "nothere.npy does not exist; put the file there"),
    bad("unknown-extension", raw_file("d.csv", b"1,2\n"), "reads .npy, .npz and .safetensors files, not .csv"),
    bad("not-a-npy-file", raw_file("d.npy", b"1,2\n"), "cannot read", "as a .npy file (it has no .npy header"),
    bad("not-a-npz-file", raw_file("d.npz", pickle.dumps(1)), "as a .npz file (it is not a zip archive, as a .npz is: another format, or a pickle"),
    bad("not-a-safetensors-file", raw_file("d.safetensors", b"{}"), "cannot read", "as a .safetensors file", "write it again with safetensors.numpy.save_file"),
    bad("unknown-key", lambda folder: {**npz(images=np.zeros((4, 2)), y=np.zeros(4, int))(folder), "key": "image"},
        "has no array 'image' - did you mean 'images'?\n arrays: images, y"),
    bad("several-arrays-no-x", npz(a=np.zeros((4, 2)), b=np.zeros((4, 2))), "holds 2 arrays (a, b); set key"),
    bad("nan-and-inf", with_nan, "holds 3 NaN or infinite values (or beyond float32's range, ±3.4e38); the first is in sample 2 (at index (2, 3))"),
    bad("complex", npy(np.ones((4, 2), dtype=complex)), "values of type complex128, not real numbers"),
    bad("strings", npy(np.array(["a", "b"])), "values of type <U1, not real numbers"),
    bad("object-array", with_object_array, "holds Python objects (an object array), which ebmkit never unpickles"),
    bad("zero-d", npy(np.array(3.0)), "is a single number"),
    bad("no-samples", npy(np.zeros((0, 3))), "holds no samples"),
    bad("empty-samples", npy(np.zeros((3, 0))), "each sample is empty"),
    bad("key-for-npy", npy(np.zeros((3, 2)), key="x"), "a .npy file, which holds one unnamed array; leave key out"),
    bad("labels-count", with_labels_file(np.array([0, 1, 0])), "the labels in", "are 3, for 4 samples"),
    bad("labels-float", with_labels_file(np.array([0.0, 1.0, 0.0, 1.0])), "are of type float64, not integers"),
    bad("labels-negative", with_labels_file(np.array([0, -1, 2, -1])), "2 negative values; the first is -1, of sample 1"),
    bad("labels-shape", with_labels_file(np.zeros((4, 2), int)), "have shape (4, 2); give one integer per sample, shape (4,)"),
    bad("labels-nowhere", lambda folder: {**npz(x=np.zeros((4, 2)), ys=np.zeros(4, int))(folder), "labels": "y"},
        "labels = 'y' names no array of d.npz (arrays: x, ys) - did you mean 'ys'?"),
    bad("classes-too-few", lambda folder: {**npz(x=np.zeros((4, 2)), y=np.array([0, 1, 2, 1]))(folder), "labels": "y", "classes": ["a", "b"]},
        "label 2 (of sample 2) has no name: classes names 2 classes"),
    bad("classes-twice", lambda folder: {**npz(x=np.zeros((4, 2)), y=np.array([0, 1, 0, 1]))(folder), "labels": "y", "classes": ["a", "a"]},
        "classes names 'a' more than once"),
    bad("classes-without-labels", npy(np.zeros((4, 2)), classes=["a", "b"]), "no labels were given"),
    bad("outside-domain", npy(np.array([[0.5], [2.0], [3.0]]), domain=[0, 1]),
        "2 values of", "lie outside domain = [0, 1]; the first, 2, is in sample 1"),
]


@pytest.mark.parametrize(("make", "messages"), BAD_ARRAYS)
def test_bad_arrays_are_clear_errors(make, messages, tmp_path, registries):
    params = make(tmp_path)
    with pytest.raises(EbmkitError) as caught:
        registries.get("datasets", "array").build(params)
    for message in messages:
        assert message in str(caught.value)


# -- image folders labelled by class folder ----------------------------------------------------
def draw(shape: str, size: int, seed: int) -> Image.Image:
    """A light shape on a dark background, placed at random: a circle or a square."""
    from PIL import ImageDraw

    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(0, 60, 3)))
    half = int(rng.integers(size // 5, size // 3))
    cx, cy = (int(v) for v in rng.integers(half, size - half, 2))
    box, fill = (cx - half, cy - half, cx + half, cy + half), tuple(int(v) for v in rng.integers(150, 256, 3))
    (ImageDraw.Draw(image).ellipse if shape == "circle" else ImageDraw.Draw(image).rectangle)(box, fill=fill)
    return image


def write_class_folders(root, per_class=4, size=16, classes=("circle", "square")):
    """torchvision's ImageFolder layout: root/<class>/<image>.png."""
    for k, shape in enumerate(classes):
        (root / shape).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            draw(shape, size, seed=100 * k + i).save(root / shape / f"{i:03d}.png")


def test_image_folder_labels_images_by_their_class_folder(tmp_path, registries):
    write_class_folders(tmp_path, per_class=3)
    (tmp_path / "square" / "more").mkdir()
    draw("square", 16, seed=7).save(tmp_path / "square" / "more" / "x.png")  # class folders are read recursively
    build = registries.get("datasets", "image_folder").build
    data = build({"root": str(tmp_path), "image_size": 8, "labels": "folders"})
    assert data.num_classes == 2 and data.conditioning.attribute == "class" and data.conditioning.classes == ("circle", "square")
    assert len(data) == 7 and [int(data[i][1]) for i in range(7)] == [0, 0, 0, 1, 1, 1, 1]
    x, _ = data[0]
    assert x.shape == (3, 8, 8) and data.sample_shape == (3, 8, 8) and data.conditioning.index("square") == 1
    grey = build({"root": str(tmp_path), "image_size": 8, "labels": "folders", "channels": 1})
    assert grey.sample_shape == (1, 8, 8) and grey[4][0].shape == (1, 8, 8)
    unlabelled = build({"root": str(tmp_path), "image_size": 8, "channels": 1})
    assert unlabelled.num_classes is None and unlabelled.conditioning is None and unlabelled[0].shape == (1, 8, 8)


def test_grey_images_are_the_luma_of_rgb(tmp_path, registries):
    (tmp_path / "a").mkdir()
    Image.new("RGB", (8, 8), (200, 40, 10)).save(tmp_path / "a" / "0.png")
    grey = registries.get("datasets", "image_folder").build({"root": str(tmp_path), "image_size": 8, "channels": 1})[0]
    assert pixels(grey).unique().tolist() == [Image.new("RGB", (1, 1), (200, 40, 10)).convert("L").getpixel((0, 0))]


@pytest.mark.parametrize(("labels", "channels"), [("folders", 3), ("folders", 1), ("none", 1)])
def test_image_folder_variants_keep_the_dataset_contract(labels, channels, tmp_path):
    write_class_folders(tmp_path, per_class=2)
    params = {"root": str(tmp_path), "image_size": 8, "labels": labels, "channels": channels}
    assert check_component("dataset", "image_folder", params) == ["shapes", "determinism"]


def test_class_folder_layouts_that_cannot_be_labelled_are_clear_errors(tmp_path, registries):
    build = registries.get("datasets", "image_folder").build
    write_class_folders(tmp_path / "loose", per_class=1)
    draw("circle", 16, seed=0).save(tmp_path / "loose" / "stray.png")
    with pytest.raises(EbmkitError, match=r"holds 1 image directly in it \(e.g. stray.png\).*root/<class>/<image>"):
        build({"root": str(tmp_path / "loose"), "labels": "folders"})
    write_class_folders(tmp_path / "empty_class", per_class=1)
    (tmp_path / "empty_class" / "triangle").mkdir()
    with pytest.raises(EbmkitError, match="class folder .*triangle holds no images.*class 'triangle'"):
        build({"root": str(tmp_path / "empty_class"), "labels": "folders"})
    with pytest.raises(EbmkitError, match="does not exist"):
        build({"root": str(tmp_path / "nowhere"), "labels": "folders"})


# -- through the CLI: exit 2, a message, no traceback --------------------------------------------
def cli_case(name, data, *expected, write=None):
    """``data``: the [data] table's lines ({root} is the test's folder); ``write(folder)`` writes the files first."""
    return pytest.param(data, write, expected, id=name)


CLI_CASES = [
    cli_case("array-missing-file", 'name = "array"\npath = "{root}/nothere.npz"', "data: dataset 'array'", "nothere.npz does not exist"),
    cli_case("array-nan", 'name = "array"\npath = "{root}/d.npy"', "holds 3 NaN or infinite values", "the first is in sample 2",
             write=with_nan),
    cli_case("array-complex", 'name = "array"\npath = "{root}/d.npy"', "complex128, not real numbers",
             write=npy(np.ones((4, 2), dtype=complex))),
    cli_case("array-single-number", 'name = "array"\npath = "{root}/d.npy"', "is a single number", write=npy(np.array(3.0))),
    cli_case("array-labels-count", 'name = "array"\npath = "{root}/d.npy"\nlabels = "{root}/y.npy"', "are 3, for 4 samples",
             write=with_labels_file(np.array([0, 1, 0]))),
    cli_case("array-labels-float", 'name = "array"\npath = "{root}/d.npy"\nlabels = "{root}/y.npy"', "not integers",
             write=with_labels_file(np.array([0.0, 1.0, 0.0, 1.0]))),
    cli_case("array-key-misspelled", 'name = "array"\npath = "{root}/d.npz"\nkey = "imgs"', "did you mean 'images'?",
             write=npz(images=np.zeros((4, 2)), y=np.zeros(4, int))),
    cli_case("array-domain-reversed", 'name = "array"\npath = "{root}/d.npy"\ndomain = [1.0, 0.0]', "domain must be (low, high)",
             write=npy(np.zeros((4, 2)))),
    cli_case("mnist-missing", 'name = "mnist"\nroot = "{root}/nomnist"', "MNIST was not found", "(none of its files)", "nomnist/MNIST/raw/",
             "t10k-labels-idx1-ubyte", "download = true"),
    cli_case("mnist-channels", 'name = "mnist"\nroot = "{root}"\nchannels = 2', "data.channels", write=write_mnist),
    cli_case("folder-labels-misspelled", 'name = "image_folder"\nroot = "{root}"\nlabels = "folder"', "data.labels",
             "'none', 'folders'", write=write_class_folders),
    cli_case("folder-loose-images", 'name = "image_folder"\nroot = "{root}"\nlabels = "folders"\nimage_size = 8',
             "directly in it", write=lambda root: draw("circle", 16, 0).save(root / "0.png")),
]


@pytest.mark.parametrize(("data", "write", "expected"), CLI_CASES)
def test_bad_data_exits_2_through_the_cli(data, write, expected, tmp_path, run_cli):
    if write is not None:
        write(tmp_path)
    result = run_cli("validate", recipe(tmp_path, data.format(root=tmp_path)))
    exits_2_saying(result, *expected)


@pytest.mark.parametrize(("data", "write"), [
    ('name = "array"\npath = "{root}/data.npz"\nlabels = "y"\nclasses = ["left", "right", "up"]', write_array),
    ('name = "mnist"\nroot = "{root}"\nconditional = true\nimage_size = 8\nbinarize = true', write_mnist),
    ('name = "fashion_mnist"\nroot = "{root}"\nchannels = 3', write_fashion_mnist),
], ids=["array", "mnist", "fashion_mnist"])
def test_good_data_validates_through_the_cli(data, write, tmp_path, run_cli):
    write(tmp_path)
    result = run_cli("validate", recipe(tmp_path, data.format(root=tmp_path)))
    assert result.exit_code == 0, result.output


# -- a conditional model of a labelled folder, composed by folder name ----------------------------
def test_a_model_of_class_folders_is_composed_by_folder_name(tmp_path, run_cli, one_thread):
    from ebmkit._engine.loop import train
    from ebmkit._recipes.recipe import validate

    write_class_folders(tmp_path / "images", per_class=4)
    recipe = {
        "run": {"seed": 0},
        "data": {"name": "image_folder", "root": str(tmp_path / "images"), "image_size": 16, "labels": "folders"},
        "energy": {"name": "resnet_ebm", "width": 8},
        "sampler": {"name": "chain", "steps": 2, "transitions": [{"name": "langevin", "step_size": 1.0, "noise_std": 0.01, "clamp": [0.0, 1.0]}]},
        "losses": [{"name": "cd"}],
        "optim": {"name": "adam", "lr": 0.001},
        "train": {"steps": 2, "batch_size": 4, "log_every": 1, "eval_at_start": False},
    }
    run = tmp_path / "run"
    train(validate(recipe, "folders"), run, live=False)
    small = ["--set", "compose.num_samples=2", "--set", "sampler.rounds=1", "--set", "sampler.steps_per_round=1",
             "--set", "sampler.final_steps=1"]
    result = run_cli("compose", "m.given(square)", "--model", f"m={run}", "--out", str(tmp_path / "out"), *small)
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "out" / "compose.json").read_text())
    assert record["requirement"] == "class=square" and record["energy"] == "m.given('square')"
    misspelled = run_cli("compose", "m.given(sqaure)", "--model", f"m={run}", "--out", str(tmp_path / "out2"), *small)
    exits_2_saying(misspelled, "did you mean 'square'?", "circle, square")
    assert not (tmp_path / "out2").exists()


def test_array_files_are_never_unpickled(tmp_path, registries):
    import pathlib

    marker = tmp_path / "unpickled"

    class Payload:
        def __reduce__(self):
            return (pathlib.Path.touch, (marker,))

    (tmp_path / "pickle.npy").write_bytes(pickle.dumps(Payload()))
    np.savez(tmp_path / "objects.npz", x=np.array([Payload()], dtype=object), allow_pickle=True)
    np.save(tmp_path / "objects.npy", np.array([Payload()], dtype=object), allow_pickle=True)
    for name in ("pickle.npy", "objects.npz", "objects.npy"):
        with pytest.raises(EbmkitError, match="pickle|Python objects"):
            registries.get("datasets", "array").build({"path": str(tmp_path / name)})
    assert not marker.exists()
