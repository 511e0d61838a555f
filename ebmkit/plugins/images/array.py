"""A user's own samples from a ``.npy``, ``.npz`` or ``.safetensors`` file, with optional labels.

Numbers only: numpy reads with ``allow_pickle=False``, so a file is never unpickled.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch
from safetensors import SafetensorError

from ebmkit import Conditioning, EbmkitError, did_you_mean_hint, low_below_high

SAVED_WITH = {".npy": "np.save", ".npz": "np.savez", ".safetensors": "safetensors.numpy.save_file"}
EXTENSIONS = tuple(SAVED_WITH)
NPY_MAGIC = b"\x93NUMPY"
DEFAULT_KEY = "x"  # the samples' array in a file of several, when ``key`` is not given
#: dtype kinds read as samples: booleans (as 0/1), signed and unsigned integers, floats.
REAL_KINDS = "biuf"


@attrs.frozen
class ArrayFile:
    """One file of arrays: a .npy holds one unnamed array, a .npz or .safetensors named ones."""

    path: Path

    @classmethod
    def open(cls, path: str | Path, what: str) -> ArrayFile:
        """The file at ``path``; ``what`` names the parameter it came from, for messages."""
        path = Path(path)
        if path.suffix.lower() not in EXTENSIONS:
            raise EbmkitError(f"{what} = {str(path)!r}: ebmkit reads .npy, .npz and .safetensors files, not "
                              f"{path.suffix or 'a file without an extension'}; save the array with np.save, "
                              f"np.savez or safetensors.numpy.save_file")
        if not path.is_file():
            state = "is a directory" if path.is_dir() else "does not exist"
            raise EbmkitError(f"{what} = {str(path)!r}: {path.resolve()} {state}; put the file there, or set {what} in [data]")
        return cls(path)

    @property
    def kind(self) -> str:
        return self.path.suffix.lower()

    def names(self) -> list[str]:
        """The arrays' names ([] for a .npy, whose one array has none)."""
        if self.kind == ".npy":
            return []
        if self.kind == ".npz":
            with self._npz() as archive:
                return list(archive.files)
        with self._safetensors() as tensors:
            return list(tensors.keys())

    def read(self, name: str | None) -> np.ndarray:
        """The array called ``name`` (None for a .npy's one array)."""
        try:
            if self.kind == ".npy":
                self._require_header()
                return np.load(self.path, allow_pickle=False)
            if self.kind == ".npz":
                with self._npz() as archive:
                    return archive[name]
            with self._safetensors() as tensors:
                tensor = tensors.get_tensor(name)
            # numpy has no bfloat16; every bfloat16 is a float32 exactly
            return (tensor.float() if tensor.dtype == torch.bfloat16 else tensor).numpy()
        except ValueError as exc:
            if "object" in str(exc).lower():  # numpy refusing an object array under allow_pickle=False
                raise EbmkitError(f"{self.where(name)} holds Python objects (an object array), which ebmkit never "
                                  f"unpickles; save an array of numbers instead") from None
            raise self._unreadable(exc) from None
        except (OSError, EOFError, SafetensorError) as exc:
            raise self._unreadable(exc) from None

    def where(self, name: str | None) -> str:
        """The file, and the array's name in it, for messages."""
        return f"{self.path.resolve()}" + (f" (array {name!r})" if name is not None else "")

    def choose(self, key: str | None, what: str, default: str) -> str | None:
        """The name of the array ``key`` asks for: given, the file's only array, or ``default``."""
        names = self.names()
        if self.kind == ".npy":
            if key is not None:
                raise EbmkitError(f"{what} = {key!r}, but {self.path.resolve()} is a .npy file, which holds one "
                                  f"unnamed array; leave {what} out")
            return None
        listed = ", ".join(names) or "(none)"
        if key is None:
            if len(names) == 1:
                return names[0]
            if default in names:
                return default
            raise EbmkitError(f"{self.path.resolve()} holds {len(names)} arrays ({listed}); set {what} in [data] "
                              f"to the one to read (without it, ebmkit reads the only array, or the one named {default!r})")
        if key not in names:
            hint = did_you_mean_hint(key, names)
            raise EbmkitError(f"{what} = {key!r}: {self.path.resolve()} has no array {key!r}{hint}\n arrays: {listed}")
        return key

    def _require_header(self) -> None:
        # without its header numpy takes a file for a pickle, and its message suggests loading it unsafely
        import zipfile

        with self.path.open("rb") as file:
            has_header = file.read(len(NPY_MAGIC)) == NPY_MAGIC if self.kind == ".npy" else zipfile.is_zipfile(file)
        if not has_header:
            problem = "has no .npy header" if self.kind == ".npy" else "is not a zip archive, as a .npz is"
            raise self._unreadable(ValueError(f"it {problem}: another format, or a pickle, which ebmkit never loads"))

    def _npz(self):
        import zipfile

        self._require_header()
        try:
            return np.load(self.path, allow_pickle=False)
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
            raise self._unreadable(exc) from None

    def _safetensors(self):
        from safetensors import safe_open

        try:
            return safe_open(str(self.path), framework="pt")
        except (SafetensorError, OSError, ValueError) as exc:
            raise self._unreadable(exc) from None

    def _unreadable(self, exc: Exception) -> EbmkitError:
        return EbmkitError(f"cannot read {self.path.resolve()} as a {self.kind} file ({exc}); write it again with "
                           f"{SAVED_WITH[self.kind]}")


def first_position(mask: np.ndarray) -> tuple[int, ...]:
    """The index of the first True of ``mask``, in C order."""
    return tuple(int(i) for i in np.unravel_index(int(np.flatnonzero(mask)[0]), mask.shape))


def samples_from(array: np.ndarray, where: str) -> np.ndarray:
    """``array`` as float32 samples (N, *sample_shape); 1-D data are N scalars, shape (N, 1).

    Refuses what is not a batch of real numbers: other dtypes, a single number, no samples,
    empty samples, NaN or infinite values.
    """
    if array.dtype.kind not in REAL_KINDS:
        raise EbmkitError(f"{where} holds values of type {array.dtype}, not real numbers; ebmkit reads integers, "
                          f"floats and booleans (as 0/1): convert the array (e.g. np.real(a), a.astype(np.float32)) "
                          f"and save it again")
    if array.ndim == 0:
        raise EbmkitError(f"{where} is a single number; save the samples as one array of shape (N, ...), one row per sample")
    if len(array) == 0:
        raise EbmkitError(f"{where} holds no samples (its shape is {array.shape})")
    if math.prod(array.shape[1:]) == 0:
        raise EbmkitError(f"{where} has shape {array.shape}: each sample is empty")
    samples = array.astype(np.float32).reshape(len(array), *(array.shape[1:] or (1,)))
    bad = ~np.isfinite(samples)
    if bad.any():
        position = first_position(bad)
        overflow = " (or beyond float32's range, ±3.4e38)" if array.dtype.itemsize > 4 else ""
        count = int(bad.sum())
        raise EbmkitError(f"{where} holds {count} NaN or infinite value{'s' if count > 1 else ''}{overflow}; the first "
                          f"is in sample {position[0]} (at index {position}). Remove those samples or replace the values "
                          f"(e.g. np.nan_to_num) and save the file again")
    return samples


def labels_from(array: np.ndarray, where: str, count: int) -> np.ndarray:
    """``array`` as one non-negative integer label per sample, shape (count,)."""
    if array.dtype.kind not in "iu":
        raise EbmkitError(f"the labels {where} are of type {array.dtype}, not integers; save them as class indices "
                          f"0, 1, 2, ... (e.g. labels.astype(np.int64))")
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise EbmkitError(f"the labels {where} have shape {array.shape}; give one integer per sample, shape ({count},)")
    if len(array) != count:
        raise EbmkitError(f"the labels {where} are {len(array)}, for {count} samples: give exactly one label per sample")
    negative = array < 0
    if negative.any():
        raise EbmkitError(f"the labels {where} hold {int(negative.sum())} negative values; the first is {int(array[negative][0])}, "
                          f"of sample {first_position(negative)[0]}. Labels are class indices 0, 1, 2, ...")
    return array.astype(np.int64)


@attrs.define(kw_only=True)
class ArrayDataset(torch.utils.data.Dataset):
    """Samples from a ``.npy``, ``.npz`` or ``.safetensors`` file: one per row of an array of any
    shape (N, ...), so ``sample_shape`` is its shape without N; 1-D data are N scalars, shape (1,).

    - ``key``: the array's name in a .npz or .safetensors file; by default its only array, or
      the one named ``x``.
    - ``labels``: optional class labels, one non-negative integer per sample: the name of
      another array of the same file, or the path of a second file (a .npy, or a .npz or
      .safetensors holding one array). Labels make the dataset conditional.
    - ``classes``: the names of the classes (label i is ``classes[i]``), so a trained model is
      conditioned by name (``E.given("cat")``); by default "0", "1", ... up to the largest label.
    - ``domain``: ``[low, high]`` bounds of the data, where fresh chains start uniformly. When
      absent it is inferred: [0, 1] if every value lies in [0, 1], otherwise none, and chains
      start from a standard normal. Given, every value must lie within it.

    Values are read as float32 (booleans as 0/1), as they are: not rescaled, not dequantised.
    Integers, floats and booleans are accepted; strings, complex numbers, Python objects (numpy
    never unpickles here: ``allow_pickle=False``), NaN and infinities are errors that name the
    file and what to do.
    """

    path: str
    key: str | None = None
    labels: str | None = None
    classes: tuple[str, ...] | None = attrs.field(default=None, converter=attrs.converters.optional(tuple))
    domain: tuple[float, float] | None = attrs.field(default=None, validator=low_below_high)
    samples: torch.Tensor = attrs.field(init=False, repr=False)
    targets: torch.Tensor | None = attrs.field(init=False, repr=False, default=None)

    def __attrs_post_init__(self) -> None:
        source = ArrayFile.open(self.path, "path")
        name = source.choose(self.key, "key", DEFAULT_KEY)
        samples = samples_from(source.read(name), source.where(name))
        self.samples = torch.from_numpy(samples)
        self.domain = self._check_domain(samples) if self.domain is not None else infer_domain(samples)
        if self.labels is not None:
            self.targets = torch.from_numpy(self._read_labels(source, len(samples)))
            self.classes = self._check_classes(self.targets)
        elif self.classes is not None:
            raise EbmkitError("classes names the classes of the labels, but no labels were given; set labels in [data] "
                              "(an array of the same file, or a .npy file), or leave classes out")

    def _read_labels(self, source: ArrayFile, count: int) -> np.ndarray:
        if source.kind != ".npy" and self.labels in source.names():
            return labels_from(source.read(self.labels), f"in {source.where(self.labels)}", count)
        if Path(self.labels).suffix.lower() in EXTENSIONS and Path(self.labels).is_file():
            other = ArrayFile.open(self.labels, "labels")
            name = other.choose(None, "labels", "y")
            return labels_from(other.read(name), f"in {other.where(name)}", count)
        names = source.names()
        hint = did_you_mean_hint(self.labels, names)
        arrays = f"no array of {source.path.name} (arrays: {', '.join(names)}){hint}\n and " if names else ""
        raise EbmkitError(f"labels = {self.labels!r} names {arrays}no file of labels ({Path(self.labels).resolve()} is not "
                          f"a .npy, .npz or .safetensors file that exists); set labels to an array of the same file, "
                          f"or to the path of a file of labels")

    def _check_classes(self, targets: torch.Tensor) -> tuple[str, ...]:
        largest = int(targets.max())
        if self.classes is None:
            return tuple(str(i) for i in range(largest + 1))
        if len(set(self.classes)) != len(self.classes):
            twice = sorted({c for c in self.classes if self.classes.count(c) > 1})
            raise EbmkitError(f"classes names {', '.join(map(repr, twice))} more than once; each class needs its own name")
        if largest >= len(self.classes):
            sample = int((targets == largest).nonzero()[0])
            raise EbmkitError(f"label {largest} (of sample {sample}) has no name: classes names {len(self.classes)} "
                              f"classes, labels 0..{len(self.classes) - 1}; add its name to classes")
        return self.classes

    def _check_domain(self, samples: np.ndarray) -> tuple[float, float]:
        low, high = self.domain
        outside = (samples < low) | (samples > high)
        if outside.any():
            position = first_position(outside)
            raise EbmkitError(f"{int(outside.sum())} values of {self.path} lie outside domain = [{low:g}, {high:g}]; the first, "
                              f"{float(samples[position]):g}, is in sample {position[0]}. Set domain to bounds that hold "
                              f"the data, or leave it out (ebmkit then infers it)")
        return (float(low), float(high))

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.samples.shape[1:])

    @property
    def num_classes(self) -> int | None:
        return len(self.classes) if self.targets is not None else None

    @property
    def conditioning(self) -> Conditioning | None:
        return Conditioning("class", self.classes) if self.targets is not None else None

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Any:
        x = self.samples[index]
        return (x, self.targets[index]) if self.targets is not None else x

    def read_batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.samples.index_select(0, indices), None if self.targets is None else self.targets.index_select(0, indices)


def infer_domain(samples: np.ndarray) -> tuple[float, float] | None:
    """[0, 1] when every value lies there (images, probabilities, binary data), else None (standard-normal chain starts)."""
    return (0.0, 1.0) if samples.min() >= 0 and samples.max() <= 1 else None
