"""Anysize synthesis: an image of any size from a critic trained on small patches (the WINN paper,
section 5.2, after the INN authors' anysize-image generation).

One working image (the canvas) of the output size plus one patch, (S + p) x (S + p), is improved
by Adam on its pixels. Each step draws `patches_per_step` patch positions uniformly at random
(every top-left corner in [0, S] x [0, S]), scores every patch with the critic, and backpropagates
the sum of the scores to the canvas; each pixel's gradient is then divided by the number of drawn
patches that cover it, so a pixel's gradient is the AVERAGE of the gradients its patches assign it
(the paper's "for the overlapping pixels between patches, we take the average of the gradients";
a pixel no patch covers gets 0). The canvas is clipped to [-1, 1] after every step, and at the end
its centre S x S is cut out (p // 2 pixels off each side).

Coverage: a pixel at least p - 1 pixels from the canvas's border is covered by a random patch with
probability p^2 / (S + 1)^2, the same for all of them; the last p / 2 pixels of the output towards
its border are covered less often (down to about half as often at the edge), as in the paper's
320x320 canvas for a 256x256 output."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from winn_robust.models.base import frozen_eval
from winn_robust.training.generative.critic import AscentSettings, Critic
from winn_robust.units import MODEL_HIGH, MODEL_LOW


def canvas_side(size: int, patch: int) -> int:
    """The working image's side for an output of size x size: one patch more."""
    return size + patch


def center_crop(canvas: torch.Tensor, size: int, patch: int) -> torch.Tensor:
    """The output: the canvas's (..., size, size) centre, patch // 2 pixels off each side."""
    top = patch // 2
    return canvas[..., top:top + size, top:top + size]


def random_positions(side: int, patch: int, count: int, rng: torch.Generator) -> torch.Tensor:
    """count top-left corners (y, x), each uniform over every patch position inside the canvas."""
    return torch.randint(0, side - patch + 1, (count, 2), generator=rng, device=rng.device)


def patch_indices(positions: torch.Tensor, patch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column indices (P, p, 1) and (P, 1, p) of each patch's pixels, for advanced indexing."""
    offsets = torch.arange(patch, device=positions.device)
    rows = (positions[:, 0:1] + offsets)[:, :, None]
    cols = (positions[:, 1:2] + offsets)[:, None, :]
    return rows, cols


def gather_patches(canvas: torch.Tensor, positions: torch.Tensor, patch: int) -> torch.Tensor:
    """The patches (P, C, p, p) of a (C, H, W) canvas at `positions`; differentiable (the gradient
    of a pixel is the sum over the patches holding it)."""
    rows, cols = patch_indices(positions, patch)
    return canvas[:, rows, cols].permute(1, 0, 2, 3)


def coverage(shape: tuple[int, int], positions: torch.Tensor, patch: int) -> torch.Tensor:
    """(H, W): how many of the patches cover each pixel."""
    rows, cols = patch_indices(positions, patch)
    rows, cols = torch.broadcast_tensors(rows, cols)
    counts = torch.zeros(shape, device=positions.device)
    counts.index_put_((rows.reshape(-1), cols.reshape(-1)), torch.ones(rows.numel(), device=positions.device),
                      accumulate=True)
    return counts


def averaged_gradient(f: Critic, canvas: torch.Tensor, positions: torch.Tensor, patch: int
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """(gradient of the canvas, mean patch score): each pixel's gradient is the average over the
    patches covering it of d f(patch) / d pixel (0 where no patch lies)."""
    x = canvas.detach().requires_grad_(True)
    scores = f(gather_patches(x, positions, patch))
    (grad,) = torch.autograd.grad(scores.sum(), x)
    counts = coverage(tuple(canvas.shape[-2:]), positions, patch)  # type: ignore[arg-type]
    return grad / counts.clamp_min(1.0), scores.detach().mean()


@dataclass
class CanvasAscent:
    canvas: torch.Tensor   # (C, S + p, S + p) in [-1, 1]
    steps: int             # Adam steps taken
    final_mean: float      # mean patch score of the last draw of patches (before its step, if one was taken)


def ascend_canvas(f: Critic, critic: nn.Module, canvas: torch.Tensor, patch: int, patches_per_step: int,
                  settings: AscentSettings, rng: torch.Generator, threshold: float | None = None,
                  steps: int | None = None) -> CanvasAscent:
    """Adam (a fresh one, `settings`' learning rate and betas) on the canvas maximising the mean
    patch score with averaged gradients, clipped to [-1, 1] after every step. `steps` given:
    exactly that many steps; otherwise until the mean score of a step's patches reaches
    `threshold` (tested before the step) or settings.max_steps have run."""
    param = nn.Parameter(canvas.detach().clone())
    optimizer = torch.optim.Adam([param], lr=settings.lr, betas=settings.betas)
    budget = settings.max_steps if steps is None else steps
    side = param.shape[-1]
    taken, mean = 0, float("nan")
    with frozen_eval(critic):
        while taken < budget:
            positions = random_positions(side, patch, patches_per_step, rng)
            grad, score = averaged_gradient(f, param, positions, patch)
            mean = float(score)
            if mean != mean or (steps is None and threshold is not None and mean >= threshold):
                break
            param.grad = -grad  # ascent: Adam minimises
            optimizer.step()
            with torch.no_grad():
                param.clamp_(MODEL_LOW, MODEL_HIGH)
            taken += 1
    return CanvasAscent(param.detach().clone(), taken, mean)
