"""CelebA (WINN section 5.3) from a folder in the official layout, written here as real JPEGs: the
crop, the partition, the refusals, and a generative study with no scorer."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from winn_robust.cli import main
from winn_robust.data import load_dataset
from winn_robust.errors import SettingError, UserError
from winn_robust.experiments import presets
from winn_robust.training import TrainConfig


def write_celeba(root: Path, count: int, partition: list[int] | None) -> Path:
    """`count` aligned-size (178 x 218) JPEGs, each white in its central 108 x 108 and dark outside."""
    folder = root / "img_align_celeba"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        pixels = rng.integers(0, 40, size=(218, 178, 3), dtype=np.uint8)
        pixels[55:163, 35:143] = 235
        Image.fromarray(pixels).save(folder / f"{i + 1:06d}.jpg", quality=95)
    if partition is not None:
        lines = [f"{i + 1:06d}.jpg {p}" for i, p in enumerate(partition)]
        (root / "list_eval_partition.txt").write_text("\n".join(lines) + "\n")
    return root


def test_celeba_is_read_cropped_to_its_centre_and_split_by_the_partition_file(tmp_path):
    root = write_celeba(tmp_path, 12, [0] * 8 + [1] * 2 + [2] * 2)
    data = load_dataset("celeba", root)
    assert data.train_images.shape == (10, 3, 64, 64) and data.test_images.shape == (2, 3, 64, 64)
    assert data.num_classes == 1 and data.train_labels.eq(0).all()
    assert data.train_images.min() >= -1 and data.train_images.max() <= 1
    # the central 108 x 108 is white: after the centre crop the whole 64 x 64 is near white
    assert data.train_images.mean() > 0.7


def test_without_a_partition_file_the_last_tenth_is_the_test_set(tmp_path):
    data = load_dataset("celeba", write_celeba(tmp_path, 20, None) / "img_align_celeba")
    assert (len(data.train_images), len(data.test_images)) == (18, 2)


def test_celeba_refusals_are_one_line(tmp_path):
    with pytest.raises(UserError, match="img_align_celeba") as missing:
        load_dataset("celeba", tmp_path / "nowhere")
    assert "\n" not in str(missing.value)
    root = write_celeba(tmp_path / "broken", 3, None)
    (root / "img_align_celeba" / "000002.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(UserError, match=r"000002\.jpg"):
        load_dataset("celeba", root)
    with pytest.raises(SettingError, match="no class labels"):
        TrainConfig(method="baseline", data="celeba", arch="winn64")


def test_a_study_without_a_scorer_writes_grids_and_no_scores(tmp_path, monkeypatch):
    root = write_celeba(tmp_path / "faces", 24, [0] * 20 + [2] * 4)
    tiny = {**presets.PRESETS["paper-gen-celeba"], "samples": 4, "val_size": 4, "batch_size": 4,
            "runs": [{"name": "winn-single", "method": "winn-gen",
                      "options": {"iterations": 1, "positives": 4, "negatives": 4, "last_negatives": 4,
                                  "initial_negatives": 4, "ascent_max_steps": 2, "critic_passes": 1, "cascades": 1}}]}
    monkeypatch.setitem(presets.PRESETS, "paper-gen-celeba", tiny)
    out = tmp_path / "study"
    assert main(["reproduce", "--preset", "paper-gen-celeba", "--data-dir", str(root), "--threads", "1",
                 "--out", str(out), "--no-progress"]) == 0
    assert not (out / "classifier").exists()
    table = pd.read_csv(out / "table.csv")
    assert list(table["model"]) == ["winn-single"] and table["score"].isna().all() and (table["n"] == 4).all()
    assert "No scores" in (out / "table.md").read_text()
    with np.load(out / "samples" / "winn-single.npz") as saved:
        images = torch.from_numpy(saved["images"])
    assert images.shape == (4, 3, 64, 64) and 0 <= images.min() and images.max() <= 1
    assert (out / "samples.png").is_file()
