"""Our L2 attacks: FGM (one normalised-gradient step) and L2 PGD (Madry et al. 2018) with random
starts and restarts, batched, plus the plain pieces adversarial training reuses.

An L2 budget of eps pixel units is a model-space L2 radius of 2 eps (units.eps_to_model). A PGD
step moves by `step_size` (pixel units, default 2.5 * eps / steps) along the input gradient of
the cross-entropy normalised to unit L2 norm per image, then projects onto the L2 ball and clips
to the [-1, 1] box. Clipping after the projection never leaves the ball: x itself lies in the
box, so clipping only moves a coordinate toward x. Random starts are uniform in the ball. As in
our L-inf PGD each image keeps its most damaging iterate over every step of every restart."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from winn_robust.attacks.base import Attack, AttackOutput
from winn_robust.attacks.pgd import PGD, StepRule, projected_ascent
from winn_robust.models.base import frozen_eval
from winn_robust.units import MODEL_HIGH, MODEL_LOW, eps_to_model

TINY = 1e-12   # a zero gradient stays zero instead of dividing by zero


def l2_norms(delta: torch.Tensor) -> torch.Tensor:
    """Per-image L2 norm of a batch (N, ...)."""
    return delta.flatten(1).norm(dim=1)


def _per_image(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return values.view(-1, *[1] * (like.dim() - 1))


def l2_project(delta: torch.Tensor, radius: float) -> torch.Tensor:
    """Each image's perturbation scaled back onto the L2 ball of `radius` when it lies outside."""
    norms = l2_norms(delta)
    factor = torch.clamp(radius / norms.clamp_min(TINY), max=1.0)
    return delta * _per_image(factor, delta)


def l2_normalise(grad: torch.Tensor) -> torch.Tensor:
    """Unit L2 norm per image (an all-zero gradient stays zero)."""
    return grad / _per_image(l2_norms(grad).clamp_min(TINY), grad)


def l2_ball_start(x: torch.Tensor, radius: float, direction: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """x plus a perturbation uniform in the L2 ball of `radius`: the direction of the Gaussian
    `direction` (the images' shape), the norm radius * u^(1/d) (u ~ U[0, 1), one per image),
    clipped to the box."""
    dims = x[0].numel()
    return (x + l2_normalise(direction) * _per_image(radius * u.pow(1.0 / dims), x)).clamp(MODEL_LOW, MODEL_HIGH)


def draw_l2_noise(x: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The random numbers of one L2 start: a Gaussian of the images' shape, one U[0, 1) per image."""
    return (torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype),
            torch.rand(len(x), generator=generator, device=x.device, dtype=x.dtype))


def random_l2_start(x: torch.Tensor, radius: float, generator: torch.Generator) -> torch.Tensor:
    """A start uniform in the L2 ball of `radius` around x, clipped to the box."""
    return l2_ball_start(x, radius, *draw_l2_noise(x, generator))


def l2_step(current: torch.Tensor, grad: torch.Tensor, x: torch.Tensor, radius: float, alpha: float) -> torch.Tensor:
    """One ascent step: `alpha` along the normalised gradient, back onto the ball and the box."""
    moved = current + alpha * l2_normalise(grad)
    return (x + l2_project(moved - x, radius)).clamp(MODEL_LOW, MODEL_HIGH)


def l2_step_rule(x: torch.Tensor, radius: float, alpha: float) -> StepRule:
    """`l2_step` around x as the step rule of pgd.projected_ascent."""
    return lambda current, grad: l2_step(current, grad, x, radius, alpha)


def l2_ascent(model: torch.nn.Module, x: torch.Tensor, labels: torch.Tensor, radius: float, alpha: float, steps: int,
              start: torch.Tensor | None = None) -> torch.Tensor:
    """`steps` L2 PGD steps on the cross-entropy from `start` (x when None), radius and step in
    MODEL units, with the model as the caller set it. Returns the last iterate, detached."""
    def cross_entropy(logits: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, labels, reduction="none")

    return projected_ascent(model, x.detach() if start is None else start, cross_entropy,
                            l2_step_rule(x.detach(), radius, alpha), steps)


@dataclass(frozen=True)
class PGDL2(PGD):
    """Our PGD loop and best-iterate bookkeeping with the L2 start and step."""
    name = "pgd"
    summary = "L2 projected gradient descent on the cross-entropy, random starts and restarts (ours)"
    norms = ("l2",)

    def draw_noise(self, x: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return draw_l2_noise(x, generator)

    def start_at(self, x: torch.Tensor, radius: float, noise: Any) -> torch.Tensor:
        return l2_ball_start(x, radius, *noise)

    def step_rule(self, x: torch.Tensor, radius: float, alpha: float) -> StepRule:
        return l2_step_rule(x, radius, alpha)


def pgd_at_norm(norm: str, **settings: Any) -> PGD:
    """Our PGD at a threat model ('linf' or 'l2'), for the code that picks the norm from a setting
    (adversarial training's inner attack, PGD model selection)."""
    return (PGDL2 if norm == "l2" else PGD)(norm=norm, **settings)


@dataclass(frozen=True)
class FGM(Attack):
    name = "fgm"
    summary = "fast gradient method, the L2 single step: x + 2*eps * g / ||g||_2, clipped (ours)"
    norms = ("l2",)

    def run(self, model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, eps: float,
            generator: torch.Generator) -> AttackOutput:
        x = images.detach().clone().requires_grad_(True)
        with frozen_eval(model), torch.enable_grad():
            logits = model(x)
            (grad,) = torch.autograd.grad(F.cross_entropy(logits, labels, reduction="sum"), x)
        adversarial = (x.detach() + eps_to_model(eps) * l2_normalise(grad)).clamp_(MODEL_LOW, MODEL_HIGH)
        return AttackOutput(adversarial, clean_logits=logits.detach())
