"""Textures: Appendix C's critic, the anysize gradient averaging, and `winn-robust texture` end to
end on a PNG made here (tiny settings: 16x16 patches, a few iterations), with its bad inputs."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch import nn

from tests.helpers import one_line_error
from winn_robust.cli import main
from winn_robust.models import build_model
from winn_robust.models.appendix_c import AppendixC
from winn_robust.training.generative.anysize import ascend_canvas, averaged_gradient, canvas_side, center_crop, coverage, gather_patches
from winn_robust.training.generative.critic import AscentSettings
from winn_robust.training.generative.texture import load_texture

TINY = ["--patch", "16", "--cascade", "2", "--iterations", "2", "--positives", "8", "--negatives", "8",
        "--last-negatives", "8", "--initial-negatives", "16", "--ascent-max-steps", "5", "--batch-size", "8",
        "--patches-per-step", "6", "--threads", "1", "--device", "cpu", "--no-progress"]


def stripes(path: Path, size: int = 48, grey: bool = False) -> Path:
    """A periodic texture: vertical stripes 4 pixels wide with noise, saved as PNG."""
    rng = np.random.default_rng(0)
    x = np.arange(size)[None, :].repeat(size, 0)
    base = ((x // 4) % 2) * 180.0 + 30.0
    pixels = base[..., None] + rng.normal(0, 15, (size, size, 1 if grey else 3))
    array = pixels.clip(0, 255).astype(np.uint8)
    Image.fromarray(array[..., 0] if grey else array).save(path)
    return path



# ---- the network -------------------------------------------------------------------------------------------

def test_winn64_is_appendix_c_at_64_and_skips_pools_below_one_pixel():
    built = build_model("winn64", (3, 64, 64), 1)
    assert isinstance(built, AppendixC)
    model = built
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 64, 64, 128, 128, 256, 256, 512]
    assert all(c.kernel_size == (3, 3) and c.stride == (1, 1) for c in convs)
    assert sum(isinstance(m, nn.GroupNorm) for m in model.features) == 7          # every conv but the first
    assert sum(isinstance(m, nn.AvgPool2d) for m in model.features) == 4
    assert model.classifier.in_features == 512 * 4 * 4                            # 64 -> 4 after four pools
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 1)
    small = AppendixC((1, 8, 8), 1)                                                # 8 -> 4 -> 2 -> 1, 4th skipped
    assert sum(isinstance(m, nn.AvgPool2d) for m in small.features) == 3
    assert small.classifier.in_features == 512
    assert small(torch.randn(2, 1, 8, 8)).shape == (2, 1)


# ---- anysize synthesis -------------------------------------------------------------------------------------

def test_gathered_patches_are_the_canvas_slices():
    canvas = torch.randn(3, 10, 12)
    positions = torch.tensor([[0, 0], [6, 8], [3, 5]])
    patches = gather_patches(canvas, positions, 4)
    for (y, x), patch in zip(positions.tolist(), patches):
        assert torch.equal(patch, canvas[:, y:y + 4, x:x + 4])


def test_overlapping_gradients_are_averaged():
    """A critic linear in the pixels, f(patch) = <w, patch>: patch j gives pixel (c, u, v) the
    gradient w[c, u - y_j, v - x_j]; the canvas gradient must be their average over the k patches
    covering the pixel (and 0 where none does)."""
    torch.manual_seed(0)
    patch, channels = 4, 2
    weight = torch.randn(channels, patch, patch)
    positions = torch.tensor([[0, 0], [1, 2], [2, 1], [0, 0], [5, 5], [3, 3]])
    canvas = torch.randn(channels, 10, 10)
    grad, mean = averaged_gradient(lambda x: (x * weight).sum((1, 2, 3)), canvas, positions, patch)
    counts = coverage((10, 10), positions, patch)
    assert counts.max() == 5 and counts.min() == 0                               # overlaps and uncovered pixels
    expected = torch.zeros_like(canvas)
    for u in range(10):
        for v in range(10):
            given = [weight[:, u - y, v - x] for y, x in positions.tolist() if y <= u < y + patch and x <= v < x + patch]
            if given:
                expected[:, u, v] = torch.stack(given).mean(0)
    assert torch.allclose(grad, expected, atol=1e-6)
    scores = [(canvas[:, y:y + patch, x:x + patch] * weight).sum() for y, x in positions.tolist()]
    assert torch.isclose(mean, torch.stack(scores).mean())


def test_canvas_ascent_takes_fixed_steps_or_stops_at_the_threshold():
    critic = nn.Linear(1, 1)                          # only put in eval mode; the score ignores it
    weight = torch.ones(1, 4, 4)

    def f(x: torch.Tensor) -> torch.Tensor:          # higher everywhere = brighter
        return (x * weight).sum((1, 2, 3))

    canvas = torch.zeros(1, 12, 12)
    rng = torch.Generator().manual_seed(0)
    fixed = ascend_canvas(f, critic, canvas, 4, 5, AscentSettings(lr=0.5, max_steps=100), rng, threshold=-1.0, steps=3)
    assert fixed.steps == 3 and fixed.canvas.max() > 0 and fixed.canvas.max() <= 1
    reached = ascend_canvas(f, critic, canvas, 4, 5, AscentSettings(lr=0.5, max_steps=100), rng, threshold=-1.0)
    assert reached.steps == 0 and torch.equal(reached.canvas, canvas)          # the start already scores 0 >= -1
    capped = ascend_canvas(f, critic, canvas, 4, 5, AscentSettings(lr=0.5, max_steps=7), rng, threshold=1e9)
    assert capped.steps == 7 and capped.canvas.max() == 1.0                     # clipped to the pixel box
    assert critic.training


def test_canvas_is_one_patch_larger_and_the_centre_is_cut_out():
    assert canvas_side(256, 64) == 320
    canvas = torch.arange(20 * 20.0).reshape(1, 20, 20)
    out = center_crop(canvas, 12, 8)
    assert out.shape == (1, 12, 12) and out[0, 0, 0] == canvas[0, 4, 4]


def test_grey_images_keep_one_channel_in_model_range(tmp_path):
    image = load_texture(stripes(tmp_path / "grey.png", grey=True))
    assert image.shape == (1, 48, 48)
    assert image.min() >= -1 and image.max() <= 1 and image.min() < -0.5 < 0.5 < image.max()
    assert load_texture(stripes(tmp_path / "rgb.png")).shape == (3, 48, 48)


# ---- the command -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("texture")
    source = stripes(root / "stripes.png")
    for name in ("a", "b"):
        argv = ["texture", "--image", str(source), "--size", "40", "--out", str(root / f"{name}.png"), *TINY,
                "--run", str(root / f"run-{name}")]
        assert main(argv) == 0
    return {"root": root, "source": source}


def test_texture_writes_a_png_of_the_requested_size_and_keeps_the_run(made):
    out = Image.open(made["root"] / "a.png")
    assert out.size == (40, 40) and out.mode == "RGB"
    run = made["root"] / "run-a"
    for name in ("last.pt", "cascade-1.pt", "cascade-2.pt", "metrics.csv"):
        assert (run / name).is_file(), name
    metrics = pd.read_csv(run / "metrics.csv")
    assert list(metrics["cascade"]) == [1, 1, 2, 2]
    pixels = np.asarray(out, dtype=np.float32)
    assert pixels.std() > 0                                                        # not a blank image


def test_same_seed_same_texture_and_a_finished_run_is_reused(made, capsys):
    a = np.asarray(Image.open(made["root"] / "a.png"))
    assert np.array_equal(a, np.asarray(Image.open(made["root"] / "b.png")))       # two trainings, one seed
    again = made["root"] / "again.png"
    argv = ["texture", "--image", str(made["source"]), "--size", "40", "--out", str(again), *TINY,
            "--run", str(made["root"] / "run-a")]
    assert main(argv) == 0
    assert "reused the finished run" in capsys.readouterr().out
    assert np.array_equal(a, np.asarray(Image.open(again)))
    other = made["root"] / "other.png"
    assert main([*argv[:argv.index("--out") + 1], str(other), *argv[argv.index("--out") + 2:], "--synthesis-seed", "1",
                 "--steps", "3"]) == 0
    assert not np.array_equal(a, np.asarray(Image.open(other)))                   # another synthesis from the same run


def test_a_kept_run_of_other_settings_is_one_line(made, capsys):
    argv = ["texture", "--image", str(made["source"]), "--size", "40", "--out", str(made["root"] / "x.png"), *TINY,
            "--run", str(made["root"] / "run-a")]
    argv[argv.index("--positives") + 1] = "9"
    one_line_error(capsys, argv, "positives")


def test_bad_texture_inputs_are_one_line_exit_2(tmp_path, capsys):
    source = stripes(tmp_path / "s.png")
    out = str(tmp_path / "o.png")
    one_line_error(capsys, ["texture", "--image", str(tmp_path / "missing.png"), "--out", out, *TINY],
                   "missing.png", "--image")
    (tmp_path / "text.png").write_text("not an image\n")
    one_line_error(capsys, ["texture", "--image", str(tmp_path / "text.png"), "--out", out, *TINY],
                   "text.png", "not an image")
    small = tmp_path / "small.png"
    Image.fromarray(np.zeros((10, 12, 3), dtype=np.uint8)).save(small)
    one_line_error(capsys, ["texture", "--image", str(small), "--out", out, *TINY], "--patch", "12x10")
    one_line_error(capsys, ["texture", "--image", str(source), "--out", out, *TINY, "--size", "0"], "--size")
    one_line_error(capsys, ["texture", "--image", str(source), "--out", out, *TINY, "--patch", "0"], "--patch")
    one_line_error(capsys, ["texture", "--image", str(source), "--out", str(tmp_path / "o.jpg"), *TINY], ".png")
    assert not (tmp_path / "o.png").exists()


def test_a_killed_run_is_resumed_to_the_same_texture(made, tmp_path):
    from winn_robust.training.generative.texture import texture_config, texture_data
    from winn_robust.training.generative.trainer import train_generative

    class Killed(Exception):
        pass

    def kill_after_two(iteration: int, row: dict) -> None:
        if iteration == 2:
            raise Killed

    options = {"cascades": 2, "iterations": 2, "positives": 8, "negatives": 8, "last_negatives": 8,
               "initial_negatives": 16, "ascent_max_steps": 5}
    config = texture_config(options, seed=0, batch_size=8)
    data = texture_data(load_texture(made["source"]), config, 16, torch.device("cpu"))
    run = tmp_path / "run"
    with pytest.raises(Killed):
        train_generative(config, data, run, progress=False, on_epoch_end=kill_after_two)
    argv = ["texture", "--image", str(made["source"]), "--size", "40", "--out", str(tmp_path / "resumed.png"), *TINY,
            "--run", str(run)]
    assert main(argv) == 0
    assert list(pd.read_csv(run / "metrics.csv")["epoch"]) == [1, 2, 3, 4]
    assert np.array_equal(np.asarray(Image.open(tmp_path / "resumed.png")), np.asarray(Image.open(made["root"] / "a.png")))
