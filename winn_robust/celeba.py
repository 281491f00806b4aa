"""CelebA faces (WINN section 5.3) from the files a user already has: a folder of aligned JPEGs.

The official release is `img_align_celeba/` (202,599 JPEGs of 178 x 218, named 000001.jpg ...) and
`list_eval_partition.txt` (one line `000001.jpg 0` per image: 0 train, 1 validation, 2 test; the
Kaggle copy has the same as `list_eval_partition.csv` with a header). Faces have no class labels:
the dataset is for the generative methods only (its one "class" is `face`).

Each image is centre-cropped to 108 x 108 and resized to 64 x 64 (antialiased bilinear), the usual
CelebA preparation of DCGAN and WGAN-GP's 64 x 64 experiments; the WINN paper says only that its
64 x 64 network (Appendix C) models the faces. Training images are partitions 0 and 1 (the paper's
generative models use no held-out set), test images partition 2. Without a partition file the last
10% of the images in name order are the test set (the official test split is the last 9.8% by
file number). In memory the 182,637 training images take 9 GB as float32: on a small machine give
the study fewer with `--train-limit` after loading, or a folder holding fewer files."""
from __future__ import annotations

import csv
import sys
from pathlib import Path

import torch

from winn_robust.errors import UserError

IMAGE_FOLDER = "img_align_celeba"
PARTITION_FILES = ("list_eval_partition.txt", "list_eval_partition.csv")
CROP, SIZE = 108, 64
TEST_PARTITION = 2
SUFFIXES = (".jpg", ".jpeg", ".png")


def find_image_folder(root: Path) -> Path:
    """`root/img_align_celeba` (Kaggle: `root/img_align_celeba/img_align_celeba`) or `root` itself."""
    for folder in (root / IMAGE_FOLDER / IMAGE_FOLDER, root / IMAGE_FOLDER, root):
        if folder.is_dir() and any(p.suffix.lower() in SUFFIXES for p in folder.iterdir()):
            return folder
    state = "does not exist" if not root.exists() else "holds no .jpg/.png images"
    raise UserError(f"celeba: {root} {state}: expected {IMAGE_FOLDER}/ with CelebA's aligned JPEGs (000001.jpg ...) "
                    f"there or in the folder itself, and optionally {PARTITION_FILES[0]}; point `data_dir` at the "
                    "folder that holds them (CelebA is never downloaded: its hosts need a sign-in)",
                    mentions=("data_dir",))


def read_partition(root: Path, image_folder: Path) -> dict[str, int] | None:
    """File name -> partition (0, 1, 2) from the first partition file beside the images or the root."""
    for folder in dict.fromkeys((root, image_folder, image_folder.parent)):
        for name in PARTITION_FILES:
            path = folder / name
            if path.is_file():
                return _parse_partition(path)
    return None


def _parse_partition(path: Path) -> dict[str, int]:
    with open(path, newline="") as f:
        rows = list(csv.reader(f)) if path.suffix == ".csv" else [line.split() for line in f]
    table = {}
    for number, row in enumerate(rows, 1):
        if not row or row[0] == "image_id":
            continue
        try:
            name, part = row[0], int(row[1])
        except (IndexError, ValueError):
            raise UserError(f"celeba: {path} line {number} is not `IMAGE PARTITION` ({' '.join(row)[:60]!r}); "
                            "replace it with the original list_eval_partition file, or delete it") from None
        table[name] = part
    return table


def decode(path: Path) -> torch.Tensor:
    """One image as uint8 (3, 64, 64): centre crop to 108 x 108 (or the largest square), resize."""
    from PIL import Image, UnidentifiedImageError
    from torchvision.transforms.v2.functional import center_crop, pil_to_tensor, resize

    try:
        with Image.open(path) as opened:
            image = opened.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise UserError(f"celeba: cannot read {path} as an image ({' '.join(str(exc).split())[:120]}); replace or "
                        "delete it") from None
    side = min(CROP, *image.size)
    return pil_to_tensor(resize(center_crop(image, [side, side]), [SIZE, SIZE], antialias=True))


def read_celeba(root: Path, progress: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(training, test) faces as uint8 (N, 3, 64, 64), partitioned as the module docstring says."""
    from tqdm import tqdm

    folder = find_image_folder(root)
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in SUFFIXES)
    partition = read_partition(root, folder)
    if partition is not None:
        test = [partition.get(p.name, 0) == TEST_PARTITION for p in paths]
    else:
        cut = len(paths) - max(1, len(paths) // 10)
        test = [i >= cut for i in range(len(paths))]
    if all(test) or not any(test):
        raise UserError(f"celeba: the {len(paths)} images in {folder} leave an empty training or test split; give at "
                        "least two images (and a partition file with both training and test images)")
    pixels = torch.empty(len(paths), 3, SIZE, SIZE, dtype=torch.uint8)
    for i, path in enumerate(tqdm(paths, desc="reading CelebA", unit="image", disable=not progress, file=sys.stderr)):
        pixels[i] = decode(path)
    mask = torch.tensor(test)
    return pixels[~mask], pixels[mask]
