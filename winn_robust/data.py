"""Datasets as float tensors in [-1, 1], NCHW, plus their int64 labels.

Every loader reads the *original* distribution files (IDX for MNIST and
Fashion-MNIST, ``.mat`` for SVHN, pickled batches for CIFAR-10) with
torchvision's parsers, so a folder a user already has works without
conversion, and machines without internet can point ``data_dir`` at local
copies.  torchvision's dataset classes are used for downloading only: their
md5 checks would reject the small files the tests write, and they would
require torchvision's own folder layout.

Folders accepted for ``data_dir`` (the first one holding every file wins):

- mnist / fashion-mnist: ``<dir>``, ``<dir>/MNIST/raw`` (``FashionMNIST/raw``)
  or ``<dir>/raw``, with the four IDX files uncompressed or ``.gz``.
  Gzipped files are decompressed into a private temporary folder, so
  read-only folders such as Debian's /usr/share/datasets/fashion-mnist work.
- svhn: ``<dir>``, ``<dir>/SVHN`` or ``<dir>/svhn`` with ``train_32x32.mat``
  and ``test_32x32.mat``.
- cifar10: ``<dir>/cifar-10-batches-py`` or the batches folder itself.
- celeba: ``<dir>/img_align_celeba`` or the JPEG folder itself (celeba.py: never
  downloaded; no class labels, so generative methods only).

Without ``data_dir`` the root is ``$WINN_ROBUST_DATA`` or
``~/.cache/winn-robust/data``; ``download=True`` lets torchvision fetch
missing files into it.  Missing or unreadable data is one ``UserError``
naming the dataset, the files expected, the folder searched, and the fix.
"""
from __future__ import annotations

import gzip
import math
import os
import pickle
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from winn_robust.errors import SettingError, UserError
from winn_robust.units import MODEL_LOW, MODEL_SCALE

DATASETS = ("mnist", "svhn", "fashion-mnist", "cifar10", "digits")
TOY_DATASETS = ("ring8", "grid25", "spiral20")  # 2-D Gaussian mixtures (iWGAN paper 5.1): points, not images
UNLABELLED_DATASETS = ("celeba",)  # images without classes (winn_robust/celeba.py): generative methods only

DATA_ENV_VAR = "WINN_ROBUST_DATA"

_IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
_SVHN_FILES = ("train_32x32.mat", "test_32x32.mat")
_CIFAR_FILES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch")
_CIFAR_META = "batches.meta"
# Used when batches.meta is absent; identical to the names the official file holds.
_CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
_DIGIT_CLASSES = tuple(str(i) for i in range(10))


@dataclass(frozen=True)
class ImageDataset:
    """A train/test pair in the model's pixel range; validation is split off later with `split_validation`."""

    name: str
    train_images: torch.Tensor  # float32 (N, C, H, W) in [-1, 1]
    train_labels: torch.Tensor  # int64 (N,)
    test_images: torch.Tensor
    test_labels: torch.Tensor
    class_names: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_images.shape[1:])  # type: ignore[return-value]


def to_model_range(pixels: torch.Tensor | np.ndarray, max_value: float = 255.0) -> torch.Tensor:
    """x = 2 * u - 1 with u = pixels / max_value in [0, 1] (the pixel convention, docs/conventions.md)."""
    # A fresh contiguous copy (also for float32 input), so the in-place arithmetic never touches the caller's array.
    x = torch.as_tensor(np.asarray(pixels)).to(torch.float32, memory_format=torch.contiguous_format, copy=True)
    # In place: three fresh 200 MB temporaries made SVHN/MNIST loading several times slower.
    return x.div_(max_value).mul_(MODEL_SCALE).add_(MODEL_LOW)


def split_validation(images: torch.Tensor, labels: torch.Tensor, val_size: int, seed: int
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Seeded train/validation split of the training set; the test set is never touched."""
    n = len(images)
    if not 0 < val_size < n:
        raise SettingError("val_size", f"{val_size} must be between 1 and {n - 1} (the training set has {n} images)")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    val, train = order[:val_size], order[val_size:]
    return images[train], labels[train], images[val], labels[val]


def default_data_root() -> Path:
    """Where datasets live when no data_dir is given: $WINN_ROBUST_DATA, else ~/.cache/winn-robust/data."""
    env = os.environ.get(DATA_ENV_VAR)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "winn-robust" / "data"


def load_digits_dataset() -> ImageDataset:
    """scikit-learn's embedded 8x8 digits (no files, no network): a real dataset for quick runs and tests."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = to_model_range(digits.images[:, None, :, :], max_value=16.0)
    labels = torch.as_tensor(digits.target, dtype=torch.int64)
    train_idx, test_idx = train_test_split(np.arange(len(labels)), test_size=0.2, stratify=digits.target, random_state=0)
    return ImageDataset("digits", images[train_idx], labels[train_idx], images[test_idx], labels[test_idx],
                        _DIGIT_CLASSES)


# --------------------------------------------------------------------------- 2-D toy mixtures

TOY_TRAIN, TOY_TEST = 100_000, 10_000
TOY_SEED = 20190101  # one fixed draw per mixture: every run (and every resume) sees the same points


@dataclass(frozen=True)
class ToyMixture:
    """An equal-weight mixture of isotropic 2-D Gaussians: its centres (K, 2) and standard deviation.

    - ring8: 8 Gaussians on a circle of radius 2 (angles 2 pi k / 8), sd 0.02;
    - grid25: 5 x 5 Gaussians at {-4, -2, 0, 2, 4}^2, sd 0.05;
    - spiral20 (the project's choice; the paper does not give it): 20 Gaussians along an
      Archimedean-like spiral, centre k (k = 0..19) at radius 0.5 + 3.5 k / 19 and angle
      3 pi k / 19 (1.5 turns), sd 0.05 (neighbouring centres are >= 0.3 apart, 6 sd).
    A mode counts as covered when at least `cover_share` of the samples (0.8%: PacGAN's 20 of
    2,500) lie within 3 sd of it; a sample is high-quality when it lies within 3 sd of some mode
    (VEEGAN, PacGAN)."""
    name: str
    centers: tuple[tuple[float, float], ...]
    sd: float
    cover_share: float = 0.008

    def centres(self) -> torch.Tensor:
        return torch.tensor(self.centers, dtype=torch.float32)

    def draw(self, count: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """count points (N, 2) and their mode index (N,), seeded by `generator`."""
        modes = torch.randint(0, len(self.centers), (count,), generator=generator)
        noise = torch.randn(count, 2, generator=generator) * self.sd
        return self.centres()[modes] + noise, modes

    def bounds(self, margin: float = 1.0) -> tuple[float, float]:
        """The square [low, high]^2 around the centres, `margin` beyond the outermost ones."""
        c = self.centres()
        return float(c.min()) - margin, float(c.max()) + margin

    def coverage(self, points: torch.Tensor | np.ndarray) -> dict[str, float]:
        """modes_covered, the share of samples within 3 sd of some mode (high_quality_share), and
        the per-mode counts' minimum, for points (N, 2)."""
        x = torch.as_tensor(np.asarray(points), dtype=torch.float32).reshape(-1, 2)
        distance = torch.cdist(x, self.centres())
        nearest, mode = distance.min(dim=1)
        close = nearest <= 3 * self.sd
        counts = torch.bincount(mode[close], minlength=len(self.centers))
        need = max(1, math.ceil(self.cover_share * len(x)))
        return {"modes": len(self.centers), "modes_covered": int((counts >= need).sum()),
                "high_quality_share": float(close.float().mean()) if len(x) else float("nan"),
                "samples": len(x), "cover_threshold": need, "min_mode_count": int(counts.min())}


def _spiral(count: int = 20) -> tuple[tuple[float, float], ...]:
    out = []
    for k in range(count):
        radius, angle = 0.5 + 3.5 * k / (count - 1), 3 * math.pi * k / (count - 1)
        out.append((round(radius * math.cos(angle), 6), round(radius * math.sin(angle), 6)))
    return tuple(out)


TOY_MIXTURES: dict[str, ToyMixture] = {
    "ring8": ToyMixture("ring8", tuple((round(2 * math.cos(2 * math.pi * k / 8), 6), round(2 * math.sin(2 * math.pi * k / 8), 6))
                                       for k in range(8)), 0.02),
    "grid25": ToyMixture("grid25", tuple((float(a), float(b)) for a in (-4, -2, 0, 2, 4) for b in (-4, -2, 0, 2, 4)), 0.05),
    "spiral20": ToyMixture("spiral20", _spiral(), 0.05),
}


def toy_mixture(name: str) -> ToyMixture:
    key = str(name).strip().lower()
    if key not in TOY_MIXTURES:
        raise UserError(f"unknown toy mixture {name!r}; choose one of {', '.join(TOY_MIXTURES)}")
    return TOY_MIXTURES[key]


def load_toy_dataset(name: str) -> ImageDataset:
    """A 2-D mixture as a dataset of points: 'images' of shape (N, 2) (not rescaled: the points
    are the data), labels the mode index; a fixed seeded draw of TOY_TRAIN + TOY_TEST points."""
    mixture = toy_mixture(name)
    generator = torch.Generator().manual_seed(TOY_SEED + sum(map(ord, mixture.name)))
    points, modes = mixture.draw(TOY_TRAIN + TOY_TEST, generator)
    return ImageDataset(mixture.name, points[:TOY_TRAIN], modes[:TOY_TRAIN], points[TOY_TRAIN:], modes[TOY_TRAIN:],
                        tuple(f"mode-{k}" for k in range(len(mixture.centers))))


def is_unlabelled(name: str) -> bool:
    """Images without class labels (CelebA): generative methods only."""
    return str(name).strip().lower() in UNLABELLED_DATASETS


def is_toy(name: str) -> bool:
    return str(name).strip().lower() in TOY_DATASETS


# --------------------------------------------------------------------------- file discovery

@dataclass(frozen=True)
class _Source:
    """How one dataset is found on disk, downloaded and parsed."""

    name: str
    files: tuple[str, ...]  # canonical file names, all required
    gzip_ok: bool  # whether "<file>.gz" is accepted in place of "<file>"
    subdirs: tuple[str, ...]  # folders under the root that are searched after the root itself
    download: Callable[[Path], None]  # fetches the files into the root (torchvision)
    read: Callable[[dict[str, Path]], ImageDataset]  # canonical name -> path found

    def expected(self) -> str:
        suffix = "[.gz]" if self.gzip_ok else ""
        return ", ".join(f"{f}{suffix}" for f in self.files)


def _locate(folder: Path, source: _Source) -> dict[str, Path]:
    """The files of `source` present in `folder` (uncompressed preferred: faster to read)."""
    found = {}
    for name in source.files:
        for candidate in (name, name + ".gz") if source.gzip_ok else (name,):
            path = folder / candidate
            if path.is_file():
                found[name] = path
                break
    return found


def _find(root: Path, source: _Source) -> tuple[dict[str, Path] | None, Path | None, list[str]]:
    """(files, None, []) for the first complete folder; else (None, best partial folder, its missing files)."""
    best: tuple[Path | None, dict[str, Path]] = (None, {})
    for folder in (root, *(root / sub for sub in source.subdirs)):
        found = _locate(folder, source)
        if len(found) == len(source.files):
            return found, None, []
        if len(found) > len(best[1]):
            best = (folder, found)
    partial, found = best
    return None, partial, [f for f in source.files if f not in found]


def _missing_error(source: _Source, root: Path, explicit: bool, partial: Path | None, missing: list[str],
                   download_note: str = "") -> UserError:
    alternatives = " or ".join(str(root / sub) for sub in source.subdirs)
    where = f"{source.expected()} there" + (f" (or in {alternatives})" if alternatives else "")
    suffix = "[.gz]" if source.gzip_ok else ""
    if partial is not None:
        problem = f"incomplete data in {partial}: missing {', '.join(m + suffix for m in missing)}; expected {where}"
    elif root.exists() and not root.is_dir():
        problem = f"{root} is not a folder: expected a folder holding {source.expected()}"
    else:
        state = "" if root.is_dir() else " (the folder does not exist)"
        problem = f"no data in {root}{state}: expected {where}"
    if download_note:
        fix = "check the network and retry, or put the files there yourself"
    elif explicit:
        fix = "put the files there, or pass --download"
    else:
        fix = (f"put the files there (or set {DATA_ENV_VAR}), pass --data-dir pointing at a folder that holds them, "
               "or pass --download")
    return UserError(f"{source.name}: {problem}{download_note}; {fix}")


def _describe(exc: BaseException) -> str:
    """An exception as one line (torchvision's download errors span several)."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _malformed(source: str, path: Path, why: object, what: str) -> UserError:
    return UserError(f"{source}: cannot read {path}: {why}; the file is truncated or not {what}. "
                     "Replace it with the original file (or delete it and pass --download)")


# --------------------------------------------------------------------------- parsers

def _read_idx(dataset: str, path: Path, kind: str) -> torch.Tensor:
    """An IDX file through torchvision's reader; gzip (by content, not name) goes through a private temp file."""
    from torchvision.datasets.mnist import read_image_file, read_label_file

    reader = read_image_file if kind == "images" else read_label_file
    try:
        with open(path, "rb") as f:
            compressed = f.read(2) == b"\x1f\x8b"
        if not compressed:
            return reader(str(path))
        with tempfile.TemporaryDirectory(prefix="winn-robust-") as tmp:
            plain = Path(tmp) / "idx"
            with gzip.open(path, "rb") as src, open(plain, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 22)
            return reader(str(plain))
    except Exception as exc:  # the parser asserts / raises on any malformed byte; the user needs one line
        raise _malformed(dataset, path, _describe(exc), f"an IDX {kind} file") from exc


def _check_labels(dataset: str, path: Path, labels: np.ndarray | torch.Tensor, n_images: int, num_classes: int) -> None:
    if len(labels) != n_images:
        raise _malformed(dataset, path, f"{len(labels)} labels for {n_images} images", "the matching label file")
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise _malformed(dataset, path, f"labels outside 0..{num_classes - 1}", "a label file of this dataset")


def _read_idx_dataset(name: str, class_names: tuple[str, ...]) -> Callable[[dict[str, Path]], ImageDataset]:
    def read(files: dict[str, Path]) -> ImageDataset:
        splits: list[torch.Tensor] = []
        for prefix in ("train", "t10k"):
            images_path, labels_path = files[f"{prefix}-images-idx3-ubyte"], files[f"{prefix}-labels-idx1-ubyte"]
            images = _read_idx(name, images_path, "images")
            if tuple(images.shape[1:]) != (28, 28):
                raise _malformed(name, images_path, f"images are {tuple(images.shape[1:])}, not 28x28",
                                 f"a {name} image file")
            labels = _read_idx(name, labels_path, "labels")
            _check_labels(name, labels_path, labels, len(images), len(class_names))
            splits += [to_model_range(images[:, None]), labels.to(torch.int64)]
        train_x, train_y, test_x, test_y = splits
        return ImageDataset(name, train_x, train_y, test_x, test_y, class_names)

    return read


def _read_svhn_mat(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """One SVHN split, read as torchvision's SVHN does (loadmat, 10 -> 0, HWCN -> NCHW) minus its md5 check."""
    import scipy.io as sio

    try:
        mat = sio.loadmat(str(path))
        x, y = np.asarray(mat["X"]), np.asarray(mat["y"]).astype(np.int64).reshape(-1)
    except Exception as exc:
        raise _malformed("svhn", path, _describe(exc), "an SVHN .mat file (arrays X and y)") from exc
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3):
        raise _malformed("svhn", path, f"X has shape {x.shape}, not 32x32x3xN", "an SVHN 32x32 .mat file")
    if x.dtype != np.uint8:
        if x.size and (x.min() < 0 or x.max() > 255):
            raise _malformed("svhn", path, f"X holds values outside 0..255 ({x.dtype})", "an SVHN .mat file")
        x = x.astype(np.uint8)
    y = np.where(y == 10, 0, y)  # SVHN writes digit 0 as label 10 (torchvision's SVHN maps it the same way)
    _check_labels("svhn", path, y, x.shape[3], 10)
    return to_model_range(np.transpose(x, (3, 2, 0, 1))), torch.from_numpy(y)


def _read_svhn(files: dict[str, Path]) -> ImageDataset:
    train = _read_svhn_mat(files["train_32x32.mat"])
    test = _read_svhn_mat(files["test_32x32.mat"])
    return ImageDataset("svhn", *train, *test, _DIGIT_CLASSES)


# Everything a CIFAR-10 python batch refers to: numpy's array reconstruction (the module was
# numpy.core before numpy 2, numpy._core since) and the bytes helper pickle protocol 2 uses.
_CIFAR_GLOBALS = frozenset({
    *((f"numpy.{core}.multiarray", "_reconstruct") for core in ("core", "_core")),
    *((f"numpy.{core}.multiarray", "scalar") for core in ("core", "_core")),
    *((f"numpy.{core}.numeric", "_frombuffer") for core in ("core", "_core")),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
})


class RefusedGlobal(pickle.UnpicklingError):
    """A pickle asked for something a CIFAR-10 batch never holds (refused before it could run)."""


class _CifarUnpickler(pickle.Unpickler):
    """pickle restricted to what CIFAR-10 batches contain (dicts, lists, str, bytes, ints and numpy
    arrays): any other global (os.system, a class's constructor...) is refused before it is
    looked up, so a booby-trapped file runs nothing."""

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in _CIFAR_GLOBALS:
            raise RefusedGlobal(f"{module}.{name}")
        return super().find_class(module, name)


def _unpickle(path: Path) -> dict:
    """A CIFAR python batch (latin1, as torchvision reads it), through `_CifarUnpickler`: never runs code."""
    try:
        with open(path, "rb") as f:
            entry = _CifarUnpickler(f, encoding="latin1").load()
        if not isinstance(entry, dict):
            raise TypeError(f"unpickled a {type(entry).__name__}, not a dict")
        return entry
    except RefusedGlobal as exc:
        raise UserError(f"cifar10: {path} asks to run {exc}, which no CIFAR-10 batch holds; refused without running "
                        "it. Replace the file with the original CIFAR-10 batch (or delete it and pass --download)") from None
    except Exception as exc:
        raise _malformed("cifar10", path, _describe(exc), "a CIFAR-10 python batch") from exc


def _read_cifar_batches(paths: list[Path]) -> tuple[torch.Tensor, torch.Tensor]:
    data, labels = [], []
    for path in paths:
        entry = _unpickle(path)
        try:
            x = np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
            y = np.asarray(entry["labels"], dtype=np.int64).reshape(-1)
        except Exception as exc:
            raise _malformed("cifar10", path, _describe(exc), "a CIFAR-10 batch (keys data: Nx3072 uint8, labels)") from exc
        _check_labels("cifar10", path, y, len(x), 10)
        data.append(x)
        labels.append(y)
    return to_model_range(np.concatenate(data)), torch.from_numpy(np.concatenate(labels))


def _read_cifar10(files: dict[str, Path]) -> ImageDataset:
    train = _read_cifar_batches([files[f"data_batch_{i}"] for i in range(1, 6)])
    test = _read_cifar_batches([files["test_batch"]])
    class_names: tuple[str, ...] = _CIFAR10_CLASSES
    meta = files["test_batch"].parent / _CIFAR_META
    if meta.is_file():
        names = _unpickle(meta).get("label_names")
        if not isinstance(names, (list, tuple)) or len(names) != 10:
            raise _malformed("cifar10", meta, "no list of 10 label_names", "CIFAR-10's batches.meta")
        class_names = tuple(str(n) for n in names)
    return ImageDataset("cifar10", *train, *test, class_names)


# --------------------------------------------------------------------------- downloads (torchvision)

def _download_mnist(root: Path) -> None:
    import torchvision.datasets

    torchvision.datasets.MNIST(str(root), train=True, download=True)  # fetches all four files into root/MNIST/raw


def _download_fashion_mnist(root: Path) -> None:
    import torchvision.datasets

    torchvision.datasets.FashionMNIST(str(root), train=True, download=True)  # into root/FashionMNIST/raw


def _download_svhn(root: Path) -> None:
    import torchvision.datasets

    for split in ("train", "test"):
        torchvision.datasets.SVHN(str(root / "SVHN"), split=split, download=True)


def _download_cifar10(root: Path) -> None:
    import torchvision.datasets

    torchvision.datasets.CIFAR10(str(root), train=True, download=True)  # extracts root/cifar-10-batches-py


def _sources() -> dict[str, _Source]:
    from torchvision.datasets.mnist import MNIST, FashionMNIST  # class names only; downloads go via _download_*

    return {
        "mnist": _Source("mnist", _IDX_FILES, True, ("MNIST/raw", "raw"), _download_mnist,
                         _read_idx_dataset("mnist", tuple(MNIST.classes))),
        "fashion-mnist": _Source("fashion-mnist", _IDX_FILES, True, ("FashionMNIST/raw", "raw"),
                                 _download_fashion_mnist, _read_idx_dataset("fashion-mnist", tuple(FashionMNIST.classes))),
        "svhn": _Source("svhn", _SVHN_FILES, False, ("SVHN", "svhn"), _download_svhn, _read_svhn),
        "cifar10": _Source("cifar10", _CIFAR_FILES, False, ("cifar-10-batches-py",), _download_cifar10, _read_cifar10),
    }


# The label counts (train, test) of the original files, to catch one dataset's files given as another's.
KNOWN_LABEL_COUNTS: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "mnist": ((5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949),
              (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009)),
    "fashion-mnist": ((6000,) * 10, (1000,) * 10),
    "cifar10": ((5000,) * 10, (1000,) * 10),
}
KNOWN_SIZES = {"svhn": (73257, 26032)}
PRETTY = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST", "cifar10": "CIFAR-10", "svhn": "SVHN"}


def label_counts(dataset: ImageDataset) -> tuple[tuple[int, ...], tuple[int, ...]]:
    k = dataset.num_classes
    return (tuple(torch.bincount(dataset.train_labels, minlength=k).tolist()),
            tuple(torch.bincount(dataset.test_labels, minlength=k).tolist()))


def check_identity(name: str, dataset: ImageDataset, folder: Path) -> None:
    """Refuse another dataset's files given under this name (MNIST and Fashion-MNIST share the IDX
    format and the image counts, not the label counts); warn when the files are of no known release."""
    counts = label_counts(dataset)
    sizes = (len(dataset.train_labels), len(dataset.test_labels))
    if KNOWN_LABEL_COUNTS.get(name) == counts or KNOWN_SIZES.get(name) == sizes:
        return
    other = next((o for o, c in KNOWN_LABEL_COUNTS.items() if c == counts and o != name), None)
    if other is not None:
        raise SettingError("data", f"{name}: the files in {folder} are {PRETTY[other]}'s (their label counts match "
                        f"{PRETTY[other]}, not {PRETTY[name]}); pass --data {other}, or point --data-dir at "
                        f"{PRETTY[name]}'s files")
    print(f"winn-robust: warning: the {name} files in {folder} ({sizes[0]:,} training / {sizes[1]:,} test images) are "
          f"not the original {PRETTY.get(name, name)} release (their label counts differ); numbers from them are not "
          "comparable with published ones", file=sys.stderr)


def load_dataset(name: str, data_dir: str | Path | None = None, download: bool = False) -> ImageDataset:
    """Load `name` (one of DATASETS) from `data_dir`, else from the default root, downloading only if asked.

    Files already present are never re-downloaded; `download=True` writes into `data_dir` (or the default root).
    """
    key = str(name).strip().lower().replace("_", "-")
    key = {"fashionmnist": "fashion-mnist", "cifar-10": "cifar10"}.get(key, key)
    if key == "digits":
        return load_digits_dataset()
    if key in TOY_DATASETS:
        return load_toy_dataset(key)
    if key == "celeba":
        from winn_robust.celeba import read_celeba

        train, test = read_celeba(Path(data_dir).expanduser() if data_dir is not None else default_data_root() / "celeba")
        return ImageDataset("celeba", to_model_range(train), torch.zeros(len(train), dtype=torch.int64),
                            to_model_range(test), torch.zeros(len(test), dtype=torch.int64), ("face",))
    if key not in DATASETS:
        raise UserError(f"unknown dataset {name!r}; choose one of "
                        f"{', '.join(DATASETS + UNLABELLED_DATASETS + TOY_DATASETS)}")
    source = _sources()[key]
    explicit = data_dir is not None
    root = Path(data_dir).expanduser() if data_dir is not None else default_data_root()

    files, partial, missing = _find(root, source)
    if files is None and download:
        try:
            root.mkdir(parents=True, exist_ok=True)
            source.download(root)
        except Exception as exc:
            raise _missing_error(source, root, explicit, partial, missing,
                                 f" (download into {root} failed: {_describe(exc)})") from exc
        files, partial, missing = _find(root, source)
    if files is None:
        raise _missing_error(source, root, explicit, partial, missing)
    dataset = source.read(files)
    check_identity(key, dataset, next(iter(files.values())).parent)
    return dataset
