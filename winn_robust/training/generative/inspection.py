"""What an iWGAN run says about given inputs: `winn-robust quality` (the quality score
exp(-||x - G(Q(x))||) and the reconstruction error of every input, with a plot of the highest and
lowest scoring ones, the paper's Figure 7) and `winn-robust reconstruct` (inputs beside G(Q(x)),
and latent interpolations between pairs of inputs, the paper's Figure 5c).

Inputs are a .npz with `images` (N, C, H, W) (or (N, H, W)) in [0, 1], as `sample` writes them, or
`points` (N, 2). Images are scored in the models' range [-1, 1]; points as they are. Nothing here
is random: the same run and inputs give the same scores."""
from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from winn_robust.errors import UserError
from winn_robust.storage import atomic_savefig, atomic_write_text
from winn_robust.training.generative.iwgan import IWGAN, load_run_networks, quality_scores, reconstruct
from winn_robust.training.generative.sampling import GenerativeRun, open_run
from winn_robust.units import to_model_range, to_pixel_range


def open_iwgan_run(path: str | Path) -> GenerativeRun:
    """An iwgan run folder; any other run is one line."""
    from winn_robust.checkpoint import read_meta

    path = Path(path)
    folder = path if path.is_dir() else path.parent
    for name in ("last.pt", "best.pt"):
        if (folder / name).is_file() and read_meta(folder / name).method != IWGAN.name:
            raise UserError(f"{folder} is a {read_meta(folder / name).method} run; quality scores and reconstructions "
                            "need an encoder: pass the folder of a `train --method iwgan` run")
    run = open_run(path)
    if not isinstance(run.method, IWGAN):
        raise UserError(f"{run.folder} is a {run.meta.method} run; quality scores and reconstructions need an encoder: "
                        "pass the folder of a `train --method iwgan` run")
    return run


@dataclass
class Inputs:
    values: torch.Tensor   # in the models' range: images in [-1, 1] (N, C, H, W), or points (N, 2)
    points: bool


def read_inputs(path: str | Path, run: GenerativeRun) -> Inputs:
    """`images` in [0, 1] or `points` from a .npz, checked against the run's data shape."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--input {path} does not exist; pass a .npz with `images` (N, C, H, W) in [0, 1] or `points` (N, 2)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files if k in ("images", "points")}
    except (OSError, ValueError) as exc:
        raise UserError(f"--input {path} is not a readable .npz ({' '.join(str(exc).split())[:100]})") from None
    if not arrays:
        raise UserError(f"--input {path} holds neither `images` ((N, C, H, W) in [0, 1]) nor `points` ((N, 2)); "
                        "write one of those arrays (`winn-robust sample` writes them)")
    shape = tuple(int(v) for v in run.meta.image_shape)
    if run.points:
        if "points" not in arrays:
            raise UserError(f"--input {path} holds images but {run.folder} models 2-D points; give a .npz with `points` (N, 2)")
        x = torch.as_tensor(np.asarray(arrays["points"], dtype=np.float32))
        if x.dim() != 2 or tuple(x.shape[1:]) != shape:
            raise UserError(f"--input {path}: `points` has shape {tuple(x.shape)}, not (N, {shape[0]})")
        values = x
    else:
        if "images" not in arrays:
            raise UserError(f"--input {path} holds points but {run.folder} models images; give a .npz with `images`")
        x = torch.as_tensor(np.asarray(arrays["images"], dtype=np.float32))
        if x.dim() == 3:
            x = x[:, None]
        if x.dim() != 4 or tuple(x.shape[1:]) != shape:
            raise UserError(f"--input {path}: `images` has shape {tuple(x.shape)}, not (N, {', '.join(map(str, shape))}) "
                            f"as the run's {run.meta.dataset} images")
        if len(x) and (float(x.min()) < 0 or float(x.max()) > 1):
            raise UserError(f"--input {path}: `images` must be in [0, 1], found values in [{float(x.min()):.3g}, "
                            f"{float(x.max()):.3g}]")
        values = to_model_range(x)
    if len(values) == 0:
        raise UserError(f"--input {path} holds no inputs (0 rows)")
    if not bool(torch.isfinite(values).all()):
        raise UserError(f"--input {path} holds NaN or infinite values")
    return Inputs(values, run.points)


def score_inputs(run: GenerativeRun, inputs: Inputs, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(quality, reconstruction error) of every input, on the CPU."""
    nets = load_run_networks(run, device)
    quality, errors = quality_scores(nets, inputs.values.to(device))
    return quality.cpu(), errors.cpu()


def write_scores(quality: torch.Tensor, errors: torch.Tensor, out: str | Path) -> Path:
    """scores.csv: index, quality, reconstruction_error (one row per input, in input order)."""
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(["index", "quality", "reconstruction_error"])
    for index, (q, e) in enumerate(zip(quality.tolist(), errors.tolist(), strict=True)):
        writer.writerow([index, f"{q:.6g}", f"{e:.6g}"])
    return atomic_write_text(Path(out), text.getvalue())


def plot_extremes(inputs: Inputs, quality: torch.Tensor, out: str | Path, dataset: str, count: int = 16) -> Path:
    """Images: the `count` highest (left) and lowest (right) scoring inputs with their scores (the
    paper's Figure 7); points: every input coloured by its score."""
    from matplotlib.figure import Figure

    if inputs.points:
        fig = Figure(figsize=(5.2, 4.4))
        ax = fig.add_subplot(1, 1, 1)
        xy = inputs.values.numpy()
        shown = ax.scatter(xy[:, 0], xy[:, 1], c=quality.numpy(), s=4, cmap="viridis", vmin=0, vmax=1)
        fig.colorbar(shown, ax=ax, label="quality exp(-||x - G(Q(x))||)")
        ax.set_aspect("equal")
        ax.set_title(f"quality scores of {len(xy)} inputs ({dataset} model)", fontsize=9)
        fig.tight_layout()
        return atomic_savefig(fig, out, dpi=110)
    k = min(count, len(quality))
    order = torch.argsort(quality, descending=True, stable=True)
    columns = max(1, math.ceil(math.sqrt(k)))
    rows = max(1, math.ceil(k / columns))
    fig = Figure(figsize=(2 * 1.3 * columns + 0.6, 1.45 * rows + 0.6))
    grid = fig.add_gridspec(rows, 2 * columns + 1, width_ratios=[1] * columns + [0.25] + [1] * columns)
    pixels = to_pixel_range(inputs.values).clamp(0, 1)
    for side, chosen in ((0, order[:k]), (1, order.flip(0)[:k])):
        for slot, index in enumerate(chosen.tolist()):
            r, c = divmod(slot, columns)
            ax = fig.add_subplot(grid[r, c + side * (columns + 1)])
            image = pixels[index].permute(1, 2, 0).numpy()
            ax.imshow(image[:, :, 0] if image.shape[2] == 1 else image, cmap="gray", vmin=0, vmax=1)
            ax.set_title(f"#{index} {float(quality[index]):.3g}", fontsize=6)
            ax.axis("off")
    fig.suptitle(f"highest (left) and lowest (right) quality scores of {len(quality)} inputs", fontsize=9)
    fig.tight_layout()
    return atomic_savefig(fig, out, dpi=110)


def reconstruction_grid(run: GenerativeRun, inputs: Inputs, out: str | Path, device: torch.device, count: int) -> Path:
    """Images: rows of inputs with G(Q(x)) below each (pairs of rows); points: inputs and their
    reconstructions joined by lines."""
    nets = load_run_networks(run, device)
    x = inputs.values[:count].to(device)
    rebuilt = reconstruct(nets, x).cpu()
    x = x.cpu()
    if inputs.points:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(4.6, 4.6))
        ax = fig.add_subplot(1, 1, 1)
        for a, b in zip(x.numpy(), rebuilt.numpy(), strict=True):
            ax.plot([a[0], b[0]], [a[1], b[1]], color="grey", linewidth=0.5)
        ax.scatter(x[:, 0], x[:, 1], s=6, label="x")
        ax.scatter(rebuilt[:, 0], rebuilt[:, 1], s=6, label="G(Q(x))")
        ax.legend(fontsize=8)
        ax.set_aspect("equal")
        fig.tight_layout()
        return atomic_savefig(fig, out, dpi=110)
    return save_pairs(x, rebuilt, out)


def save_pairs(top: torch.Tensor, bottom: torch.Tensor, out: str | Path, per_row: int = 10) -> Path:
    """Rows of `per_row` inputs, each followed by the row of their reconstructions."""
    from winn_robust.images import save_image_grid

    rows = []
    for start in range(0, len(top), per_row):
        a, b = top[start:start + per_row], bottom[start:start + per_row]
        pad = per_row - len(a)
        if pad:
            blank = torch.full((pad, *a.shape[1:]), -1.0)
            a, b = torch.cat([a, blank]), torch.cat([b, blank])
        rows += [a, b]
    return save_image_grid(torch.cat(rows), out, nrow=per_row)


def interpolation_grid(run: GenerativeRun, inputs: Inputs, out: str | Path, device: torch.device, steps: int,
                       pairs: int) -> Path:
    """For pairs of inputs (0 with 1, 2 with 3, ...): z_1 = Q(x_1), z_2 = Q(x_2), then
    G((1 - t) z_1 + t z_2) for `steps` values of t from 0 to 1, one row per pair, framed by the
    two inputs (the paper's Figure 5c)."""
    if inputs.points:
        raise UserError("--interpolate draws images; a run on 2-D points has none (plot its `sample` instead)")
    if steps < 2:
        raise UserError(f"--interpolate needs at least 2 steps, got {steps}")
    if len(inputs.values) < 2:
        raise UserError("--interpolate needs at least 2 inputs (pairs are inputs 0 and 1, 2 and 3, ...)")
    from winn_robust.images import save_image_grid

    nets = load_run_networks(run, device)
    x = inputs.values[:2 * pairs].to(device)
    x = x[:len(x) // 2 * 2]
    t = torch.linspace(0, 1, steps, device=device)
    rows = []
    with torch.no_grad():
        codes = nets["encoder"](x)
        for k in range(0, len(x), 2):
            z = (1 - t)[:, None] * codes[k] + t[:, None] * codes[k + 1]
            rows.append(torch.cat([x[k:k + 1], nets["generator"](z), x[k + 1:k + 2]]).cpu())
    return save_image_grid(torch.cat(rows), out, nrow=steps + 2)
