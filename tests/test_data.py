"""Dataset loaders: small files in the real on-disk formats, read back through `load_dataset`."""
from __future__ import annotations

import gzip
import os
import pickle
import socket
import struct
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

from winn_robust.data import DATASETS, ImageDataset, default_data_root, load_dataset, split_validation, to_model_range
from winn_robust.errors import SettingError, UserError

IDX_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


# --------------------------------------------------------------------------- writers in the real formats

def idx_bytes(array: np.ndarray) -> bytes:
    """IDX (LeCun's MNIST format): 0x0000 08 <ndim>, big-endian uint32 dims, then the uint8 payload."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    magic = 0x00000800 | array.ndim  # 0x00000803 images, 0x00000801 labels
    return struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def write_file(path: Path, payload: bytes, compress: bool) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if compress:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)
    return path


def mnist_arrays(n_train: int = 5, n_test: int = 3) -> dict[str, np.ndarray]:
    """Images whose pixels are known: image i is filled with 51 * (i % 6), one corner pixel 0, one 255."""
    def images(n: int, offset: int) -> np.ndarray:
        x = np.stack([np.full((28, 28), 51 * ((i + offset) % 6), dtype=np.uint8) for i in range(n)])
        x[:, 0, 0], x[:, 27, 27] = 0, 255
        return x

    return {
        "train-images-idx3-ubyte": images(n_train, 0),
        "train-labels-idx1-ubyte": np.arange(n_train, dtype=np.uint8) % 10,
        "t10k-images-idx3-ubyte": images(n_test, 1),
        "t10k-labels-idx1-ubyte": (9 - np.arange(n_test, dtype=np.uint8)) % 10,
    }


def write_mnist(folder: Path, compress: bool | tuple[bool, ...] = False, arrays=None) -> dict[str, np.ndarray]:
    arrays = arrays or mnist_arrays()
    flags = compress if isinstance(compress, tuple) else (compress,) * 4
    for (name, array), gz in zip(arrays.items(), flags):
        write_file(folder / name, idx_bytes(array), gz)
    return arrays


def write_svhn(folder: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """SVHN's layout: X is 32x32x3xN uint8 (HWCN), y is Nx1 with 10 standing for the digit 0."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, n in (("train_32x32.mat", 4), ("test_32x32.mat", 3)):
        x = rng.integers(0, 256, size=(32, 32, 3, n), dtype=np.uint8)
        x[0, 0, 0, 0], x[1, 2, 1, 0] = 0, 255
        x[3, 4, 2, 1] = 51
        y = np.array([[10], [1], [9], [5]][:n], dtype=np.uint8)
        scipy.io.savemat(folder / name, {"X": x, "y": y})
        out[name] = (x, y)
    return out


def write_cifar(folder: Path, meta: bool = True) -> dict[str, tuple[np.ndarray, list[int]]]:
    """CIFAR-10's python batches: dicts with data (N x 3072 uint8, R then G then B planes, row-major) and labels."""
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        n = 2 if name != "test_batch" else 3
        x = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = [(i + j) % 10 for j in range(n)]
        with open(folder / name, "wb") as f:
            pickle.dump({"batch_label": name, "data": x, "labels": labels, "filenames": [f"{j}.png" for j in range(n)]}, f)
        out[name] = (x, labels)
    if meta:
        with open(folder / "batches.meta", "wb") as f:
            pickle.dump({"label_names": [f"class{k}" for k in range(10)], "num_cases_per_batch": 2}, f)
    return out


def assert_model_range(ds: ImageDataset, shape: tuple[int, int, int]) -> None:
    for images, labels in ((ds.train_images, ds.train_labels), (ds.test_images, ds.test_labels)):
        assert images.dtype == torch.float32 and labels.dtype == torch.int64
        assert tuple(images.shape[1:]) == shape and images.shape[0] == labels.shape[0]
        assert images.is_contiguous()
        assert images.min() >= -1.0 and images.max() <= 1.0
        assert labels.min() >= 0 and labels.max() <= 9
    assert ds.image_shape == shape and ds.num_classes == 10


# --------------------------------------------------------------------------- MNIST / Fashion-MNIST (IDX)

LAYOUTS = {  # name -> (subfolder under data_dir, gzip?)
    "flat": ("", False),
    "flat-gz": ("", True),
    "torchvision": ("{tv}/raw", True),
    "torchvision-plain": ("{tv}/raw", False),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("name,tv", [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")])
def test_idx_datasets_read_back_exactly(tmp_path, name, tv, layout):
    sub, gz = LAYOUTS[layout]
    arrays = write_mnist(tmp_path / sub.format(tv=tv), compress=gz)
    ds = load_dataset(name, data_dir=tmp_path)
    assert ds.name == name
    assert_model_range(ds, (1, 28, 28))
    assert len(ds.train_images) == 5 and len(ds.test_images) == 3
    # The exact pixel convention x = 2 * u - 1: 0 -> -1, 255 -> 1, 51 -> -0.6.
    assert ds.train_images[0, 0, 5, 5] == -1.0
    assert ds.train_images[1, 0, 5, 5] == pytest.approx(-0.6)
    assert ds.train_images[3, 0, 5, 5] == pytest.approx(0.2)
    assert ds.train_images[5 % 5, 0, 27, 27] == 1.0 and ds.test_images[2, 0, 0, 0] == -1.0
    assert ds.test_images[0, 0, 1, 1] == pytest.approx(-0.6)  # test image 0 uses offset 1 -> 51
    expected = to_model_range(arrays["train-images-idx3-ubyte"][:, None])
    assert torch.equal(ds.train_images, expected)
    assert ds.train_labels.tolist() == [0, 1, 2, 3, 4]
    assert ds.test_labels.tolist() == [9, 8, 7]


def test_class_names_come_from_torchvision(tmp_path):
    import torchvision.datasets

    write_mnist(tmp_path)
    assert load_dataset("fashion-mnist", data_dir=tmp_path).class_names == tuple(torchvision.datasets.FashionMNIST.classes)
    assert load_dataset("mnist", data_dir=tmp_path).class_names == tuple(torchvision.datasets.MNIST.classes)


def test_mixed_compression_and_gzip_detected_by_content(tmp_path):
    write_mnist(tmp_path, compress=(True, False, False, True))
    # A gzipped file without the .gz suffix is still read (detected by its magic bytes).
    os.rename(tmp_path / "t10k-labels-idx1-ubyte.gz", tmp_path / "t10k-labels-idx1-ubyte")
    ds = load_dataset("mnist", data_dir=tmp_path)
    assert ds.test_labels.tolist() == [9, 8, 7]


def test_gzipped_files_are_not_decompressed_into_the_data_folder(tmp_path):
    write_mnist(tmp_path, compress=True)
    before = sorted(p.name for p in tmp_path.iterdir())
    load_dataset("fashion-mnist", data_dir=str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_folder_pointing_at_torchvision_dataset_dir(tmp_path):
    write_mnist(tmp_path / "MNIST" / "raw")
    assert len(load_dataset("mnist", data_dir=tmp_path / "MNIST").train_images) == 5


def test_dataset_name_is_normalised(tmp_path):
    write_mnist(tmp_path)
    assert load_dataset("Fashion_MNIST", data_dir=tmp_path).name == "fashion-mnist"


@pytest.mark.skipif(not FASHION_DIR.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_real_fashion_mnist_from_debian_package():
    ds = load_dataset("fashion-mnist", data_dir=FASHION_DIR)
    assert len(ds.train_images) == 60000 and len(ds.test_images) == 10000
    assert ds.image_shape == (1, 28, 28)
    assert ds.train_images.min() == -1.0 and ds.train_images.max() == 1.0
    assert torch.bincount(ds.train_labels).tolist() == [6000] * 10
    assert torch.bincount(ds.test_labels).tolist() == [1000] * 10
    assert ds.class_names[0] == "T-shirt/top"


# --------------------------------------------------------------------------- SVHN (.mat)

@pytest.mark.parametrize("sub", ["", "SVHN"])
def test_svhn_mat_files(tmp_path, sub):
    written = write_svhn(tmp_path / sub)
    ds = load_dataset("svhn", data_dir=tmp_path)
    assert_model_range(ds, (3, 32, 32))
    assert ds.train_labels.tolist() == [0, 1, 9, 5]  # 10 means the digit 0
    assert ds.test_labels.tolist() == [0, 1, 9]
    x, _ = written["train_32x32.mat"]
    # HWCN -> NCHW: X[h, w, c, n] is image n, channel c, row h, column w.
    assert ds.train_images[0, 0, 0, 0] == -1.0
    assert ds.train_images[0, 1, 1, 2] == 1.0
    assert ds.train_images[1, 2, 3, 4] == pytest.approx(-0.6)
    assert torch.equal(ds.train_images, to_model_range(np.transpose(x, (3, 2, 0, 1))))
    assert ds.class_names == tuple(str(i) for i in range(10))


def test_svhn_bad_mat_contents_is_user_error(tmp_path):
    write_svhn(tmp_path)
    scipy.io.savemat(tmp_path / "test_32x32.mat", {"X": np.zeros((28, 28, 1, 2), np.uint8), "y": np.ones((2, 1))})
    with pytest.raises(UserError, match=r"svhn: cannot read .*test_32x32\.mat.*32x32x3xN"):
        load_dataset("svhn", data_dir=tmp_path)
    (tmp_path / "train_32x32.mat").write_bytes(b"not a mat file at all")
    with pytest.raises(UserError, match=r"svhn: cannot read .*train_32x32\.mat"):
        load_dataset("svhn", data_dir=tmp_path)


def test_svhn_missing_is_user_error(tmp_path):
    with pytest.raises(UserError) as err:
        load_dataset("svhn", data_dir=tmp_path)
    msg = str(err.value)
    assert msg.startswith("svhn: no data in ") and str(tmp_path) in msg
    assert "train_32x32.mat" in msg and "test_32x32.mat" in msg and "--download" in msg


# --------------------------------------------------------------------------- CIFAR-10 (pickled batches)

@pytest.mark.parametrize("point_at_batches", [False, True])
def test_cifar10_batches(tmp_path, point_at_batches):
    batches = tmp_path / "cifar-10-batches-py"
    written = write_cifar(batches)
    ds = load_dataset("cifar10", data_dir=batches if point_at_batches else tmp_path)
    assert_model_range(ds, (3, 32, 32))
    assert len(ds.train_images) == 10 and len(ds.test_images) == 3
    x, labels = written["data_batch_2"]
    # Image 2 is data_batch_2's first row: 1024 red, then green, then blue values, each 32x32 row-major.
    assert torch.equal(ds.train_images[2], to_model_range(x[0].reshape(3, 32, 32)))
    assert ds.train_images[2, 1, 0, 5].item() == pytest.approx(2 * x[0, 1024 + 5] / 255 - 1)
    assert ds.train_labels[2:4].tolist() == labels
    assert ds.test_labels.tolist() == written["test_batch"][1]
    assert ds.class_names == tuple(f"class{k}" for k in range(10))


def test_cifar10_without_meta_uses_standard_names(tmp_path):
    write_cifar(tmp_path, meta=False)
    assert load_dataset("cifar10", data_dir=tmp_path).class_names[0] == "airplane"


def test_cifar10_missing_and_corrupt(tmp_path):
    write_cifar(tmp_path)
    (tmp_path / "data_batch_4").unlink()
    with pytest.raises(UserError, match=r"cifar10: incomplete data in .*missing data_batch_4;.*test_batch"):
        load_dataset("cifar10", data_dir=tmp_path)
    (tmp_path / "data_batch_4").write_bytes(b"\x80\x04garbage")
    with pytest.raises(UserError, match=r"cifar10: cannot read .*data_batch_4"):
        load_dataset("cifar10", data_dir=tmp_path)


# --------------------------------------------------------------------------- digits

def test_digits_needs_no_network(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("digits tried to use the network")

    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    ds = load_dataset("digits")
    assert_model_range(ds, (1, 8, 8))
    assert ds.train_images.min() == -1.0 and ds.train_images.max() == 1.0
    assert len(ds.train_images) + len(ds.test_images) == 1797


# --------------------------------------------------------------------------- errors

def test_missing_folder_names_every_file_and_the_folder(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(UserError) as err:
        load_dataset("mnist", data_dir=missing)
    msg = str(err.value)
    assert msg.startswith(f"mnist: no data in {missing}")
    for name in IDX_NAMES:
        assert f"{name}[.gz]" in msg
    assert str(missing / "MNIST" / "raw") in msg and "--download" in msg
    assert not missing.exists()  # looking must not create anything


def test_missing_one_file(tmp_path):
    write_mnist(tmp_path, compress=True)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(UserError) as err:
        load_dataset("fashion-mnist", data_dir=tmp_path)
    msg = str(err.value)
    assert msg.startswith(f"fashion-mnist: incomplete data in {tmp_path}: missing t10k-labels-idx1-ubyte[.gz];")
    assert all(name in msg for name in IDX_NAMES) and "FashionMNIST" in msg


@pytest.mark.parametrize("compress", [False, True])
def test_truncated_idx_file_is_user_error(tmp_path, compress):
    write_mnist(tmp_path, compress=compress)
    path = tmp_path / ("train-images-idx3-ubyte" + (".gz" if compress else ""))
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(UserError, match=r"mnist: cannot read .*train-images-idx3-ubyte.*truncated"):
        load_dataset("mnist", data_dir=tmp_path)


@pytest.mark.parametrize("payload", [b"", b"garbage bytes that are no IDX header"])
def test_garbage_idx_file_is_user_error(tmp_path, payload):
    write_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(payload)
    with pytest.raises(UserError, match=r"mnist: cannot read .*t10k-labels-idx1-ubyte"):
        load_dataset("mnist", data_dir=tmp_path)


def test_swapped_or_inconsistent_idx_files_are_user_errors(tmp_path):
    arrays = write_mnist(tmp_path)
    # Images written where labels belong: the parser rejects the dimensionality.
    write_file(tmp_path / "train-labels-idx1-ubyte", idx_bytes(arrays["train-images-idx3-ubyte"]), False)
    with pytest.raises(UserError, match="train-labels-idx1-ubyte"):
        load_dataset("mnist", data_dir=tmp_path)
    # One label too few.
    write_file(tmp_path / "train-labels-idx1-ubyte", idx_bytes(arrays["train-labels-idx1-ubyte"][:-1]), False)
    with pytest.raises(UserError, match="4 labels for 5 images"):
        load_dataset("mnist", data_dir=tmp_path)
    # Wrong image size (not MNIST's 28x28).
    write_mnist(tmp_path)
    write_file(tmp_path / "t10k-images-idx3-ubyte", idx_bytes(np.zeros((3, 32, 32), np.uint8)), False)
    with pytest.raises(UserError, match="not 28x28"):
        load_dataset("mnist", data_dir=tmp_path)


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(UserError) as err:
        load_dataset("imagenet")
    assert all(name in str(err.value) for name in DATASETS)


# --------------------------------------------------------------------------- default root and download

def test_default_root(monkeypatch, tmp_path):
    monkeypatch.delenv("WINN_ROBUST_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_data_root() == tmp_path / ".cache" / "winn-robust" / "data"
    with pytest.raises(UserError) as err:
        load_dataset("mnist")
    assert str(tmp_path / ".cache" / "winn-robust" / "data") in str(err.value) and "--data-dir" in str(err.value)
    monkeypatch.setenv("WINN_ROBUST_DATA", str(tmp_path / "env"))
    write_mnist(tmp_path / "env" / "MNIST" / "raw", compress=True)
    assert default_data_root() == tmp_path / "env"
    assert len(load_dataset("mnist").train_images) == 5


def test_download_goes_through_torchvision_into_the_root(monkeypatch, tmp_path):
    import torchvision.datasets

    calls = []

    class FakeMNIST:  # stands in for torchvision's downloader: same folder layout, no network
        def __init__(self, root, train=True, download=False):
            calls.append((root, download))
            write_mnist(Path(root) / "MNIST" / "raw", compress=True)

    monkeypatch.setattr(torchvision.datasets, "MNIST", FakeMNIST)
    monkeypatch.setenv("WINN_ROBUST_DATA", str(tmp_path / "root"))
    ds = load_dataset("mnist", download=True)
    assert calls == [(str(tmp_path / "root"), True)] and len(ds.test_images) == 3
    load_dataset("mnist", download=True)  # files present: no second download
    assert len(calls) == 1


def test_failed_download_is_user_error(monkeypatch, tmp_path):
    import torchvision.datasets

    def offline(*args, **kwargs):
        raise RuntimeError("Error downloading train_32x32.mat:\nTried http://example/, got:\n<urlopen error>")

    monkeypatch.setattr(torchvision.datasets, "SVHN", offline)
    with pytest.raises(UserError, match=r"svhn: no data in .*download into .* failed.*Error downloading") as err:
        load_dataset("svhn", data_dir=tmp_path, download=True)
    assert "\n" not in str(err.value) and "train_32x32.mat" in str(err.value)  # the CLI prints one line


# --------------------------------------------------------------------------- split_validation and to_model_range

def test_split_validation_is_disjoint_sized_and_seeded():
    images = torch.arange(100, dtype=torch.float32).view(100, 1, 1, 1)
    labels = torch.arange(100) % 10
    tr_x, tr_y, va_x, va_y = split_validation(images, labels, 20, seed=3)
    assert len(tr_x) == len(tr_y) == 80 and len(va_x) == len(va_y) == 20
    train_ids, val_ids = set(tr_x.flatten().tolist()), set(va_x.flatten().tolist())
    assert not train_ids & val_ids and len(train_ids | val_ids) == 100
    assert torch.equal(tr_y, tr_x.flatten().long() % 10)  # labels travel with their images
    again = split_validation(images, labels, 20, seed=3)
    assert torch.equal(again[2], va_x)
    assert not torch.equal(split_validation(images, labels, 20, seed=4)[2], va_x)


@pytest.mark.parametrize("size", [0, 100, -1])
def test_split_validation_bad_size(size):
    with pytest.raises(SettingError, match=r"^val_size -?[0-9]+ must be between 1 and 99"):  # the CLI says --val-size
        split_validation(torch.zeros(100, 1, 1, 1), torch.zeros(100, dtype=torch.long), size, seed=0)


def test_to_model_range_does_not_modify_its_input():
    u = np.array([0.0, 0.5, 1.0], dtype=np.float32)
    assert to_model_range(u, max_value=1.0).tolist() == [-1.0, 0.0, 1.0]
    assert u.tolist() == [0.0, 0.5, 1.0]
    t = torch.tensor([0, 51, 255], dtype=torch.uint8)
    assert to_model_range(t).tolist() == pytest.approx([-1.0, -0.6, 1.0])
