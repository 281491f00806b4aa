"""Drawing images from a generative run: `winn-robust sample` on the folder of a generative method's run
(winn-gen, wgan-gp, iwgan: `generative_methods`).

The run is read from its own files alone (last.pt and each stage's checkpoint), with weights-only
loading; the method named in last.pt draws the images (WINN: noise-network starts through the
cascade checkpoints in turn; WGAN-GP: its generator, or its critic by the WINN procedure). A seed
fixes everything random, so the same seed gives the same images."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from winn_robust.checkpoint import CheckpointMeta, payload_meta, read_checkpoint
from winn_robust.errors import UserError
from winn_robust.training.generative.base import GenerativeMethod, is_generative
from winn_robust.training.methods import make_method
from winn_robust.training.methods.registry import METHOD_CLASSES
from winn_robust.training.run_folder import LAST_NAME
from winn_robust.units import to_pixel_range


@dataclass
class GenerativeRun:
    """A generative run folder, its last.pt's metadata and its method object."""
    folder: Path
    meta: CheckpointMeta
    method: GenerativeMethod

    @property
    def points(self) -> bool:
        """A run on 2-D points (the toy mixtures): its samples are points, not images."""
        return len(self.meta.image_shape) == 1

    @property
    def image_shape(self) -> tuple[int, int, int]:
        c, h, w = (int(v) for v in self.meta.image_shape)
        return c, h, w

    def load_networks(self, file: Path, networks: dict[str, nn.Module], device: torch.device) -> CheckpointMeta:
        """Load `networks` (built by the method) from one of the run's checkpoints; returns its metadata."""
        payload = read_checkpoint(file)
        try:
            nn.ModuleDict(networks).load_state_dict(payload["model"])
        except RuntimeError as exc:
            raise UserError(f"{file} does not hold the networks of {self.meta.method} "
                            f"({str(exc).splitlines()[0][:120]})") from None
        for module in networks.values():
            module.to(device).eval()
        return payload_meta(payload, file)


def generative_methods() -> tuple[str, ...]:
    """The names of the registered generative methods, in registry order."""
    return tuple(name for name, cls in METHOD_CLASSES.items() if getattr(cls, "generative", False))


def train_hint() -> str:
    """How to make a run `open_run` accepts: every generative method, named from the registry."""
    return "`winn-robust train --method " + "|".join(generative_methods()) + "`"


def open_run(path: str | Path) -> GenerativeRun:
    """A generative run from its folder (or a checkpoint file in it); a supervised run is one line."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    last = folder / LAST_NAME
    if not path.exists():
        raise UserError(f"{path} does not exist; pass the folder {train_hint()} wrote")
    if not last.is_file():
        raise UserError(f"{folder} holds no last.pt; pass the folder of a generative training run ({train_hint()})")
    meta = payload_meta(read_checkpoint(last), last)
    method = make_method(meta.method, meta.method_options)
    if not is_generative(method):
        raise UserError(f"{folder} is a {meta.method} run, a classifier with no generative model; sample from a "
                        f"{train_hint()} run (class-conditional synthesis from a classifier: `sample --per-class N`)")
    assert isinstance(method, GenerativeMethod)
    return GenerativeRun(folder, meta, method)


def sample_images(run: GenerativeRun, count: int, seed: int, device: torch.device, from_critic: bool = False,
                  progress: bool = False) -> torch.Tensor:
    """count images in [0, 1], (N, C, H, W) float32 on the CPU; a run on points: (N, 2) points."""
    if count <= 0:
        raise UserError(f"`count` must be positive, got {count}", mentions=("count",))
    rng = torch.Generator(device=device).manual_seed(seed)
    torch.manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        images = run.method.sample(run, count, seed, rng, device, from_critic=from_critic, progress=progress)
    if run.points:
        return images.detach().float().cpu()
    return to_pixel_range(images.detach().float().cpu()).clamp(0.0, 1.0)


def write_samples(images: torch.Tensor, out: str | Path, seed: int, checkpoint: str, extra: dict[str, Any]) -> Path:
    """`.npz`: images (N, C, H, W) float32 in [0, 1] (points (N, 2): `points`), seed, checkpoint;
    `.png`: a grid (points: a scatter plot beside the real mixture's, `extra["dataset"]`)."""
    from winn_robust.storage import atomic_write

    out = Path(out)
    suffix = out.suffix.lower()
    points = images.dim() == 2
    if suffix == ".png" and points:
        return scatter_points(images, str(extra.get("dataset", "")), out,
                              title=f"{len(images)} samples of {extra.get('method', '')} (seed {seed})")
    if suffix == ".npz":
        arrays = {("points" if points else "images"): images.numpy().astype(np.float32), "seed": np.int64(seed),
                  "checkpoint": np.str_(checkpoint),
                  **{k: np.asarray(v) for k, v in extra.items()}}
        atomic_write(out, lambda handle: np.savez(handle, **arrays))
    elif suffix == ".png":
        from winn_robust.images import save_image_grid

        nrow = max(1, round(len(images) ** 0.5))
        scale = max(1, -(-32 // max(images.shape[-2:])))  # small images enlarged (nearest) to at least 32 px
        big = images.repeat_interleave(scale, dim=-2).repeat_interleave(scale, dim=-1)
        save_image_grid(big * 2 - 1, out, nrow=nrow)
    else:
        raise UserError(f"`out` {out} must end in .npz (the images as an array) or .png (a grid)", mentions=("out",))
    return out


def scatter_points(points: torch.Tensor, dataset: str, out: Path, title: str, max_real: int = 2000) -> Path:
    """Samples (N, 2) in a scatter plot beside as many points of the real mixture (same axes)."""
    from matplotlib.figure import Figure

    from winn_robust.data import is_toy, toy_mixture
    from winn_robust.storage import atomic_savefig

    panels = [(title, points.numpy())]
    if is_toy(dataset):
        mixture = toy_mixture(dataset)
        real, _ = mixture.draw(min(max_real, max(1, len(points))), torch.Generator().manual_seed(0))
        panels.insert(0, (f"{dataset}: {len(real)} points of the real mixture", real.numpy()))
        low, high = mixture.bounds()
    else:
        low, high = float(points.min()) - 0.5, float(points.max()) + 0.5
    fig = Figure(figsize=(4.2 * len(panels), 4.2))
    for k, (name, xy) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), k + 1)
        ax.scatter(xy[:, 0], xy[:, 1], s=2, alpha=0.5, color="C0" if k or len(panels) == 1 else "C1")
        ax.set_xlim(low, high)
        ax.set_ylim(low, high)
        ax.set_aspect("equal")
        ax.set_title(name, fontsize=9)
    fig.tight_layout()
    return atomic_savefig(fig, out, dpi=110)
