"""Our L2 attacks: FGM (one normalised-gradient step) and L2 PGD (Madry et al. 2018) with random
starts and restarts, batched, plus the plain pieces adversarial training reuses.

An L2 budget of eps pixel units is a model-space L2 radius of 2 eps (units.eps_to_model). A PGD
step moves by `step_size` (pixel units, default 2.5 * eps / steps) along the input gradient of
the cross-entropy normalised to unit L2 norm per image, then projects onto the L2 ball and clips
to the [-1, 1] box. Clipping after the projection never leaves the ball: x itself lies in the
box, so clipping only moves a coordinate toward x. Random starts are uniform in the ball. As in
our L-inf PGD each image keeps its most damaging iterate over every step of every restart."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from winn_robust.attacks.base import Attack, AttackOutput
from winn_robust.errors import UserError
from winn_robust.models.base import frozen_eval
from winn_robust.units import MODEL_HIGH, MODEL_LOW, eps_to_model

TINY = 1e-12   # a zero gradient stays zero instead of dividing by zero

Iterate = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], None]


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


def random_l2_start(x: torch.Tensor, radius: float, generator: torch.Generator) -> torch.Tensor:
    """x plus a perturbation uniform in the L2 ball of `radius` (direction Gaussian, norm radius
    * U^(1/d)), clipped to the box."""
    direction = l2_normalise(torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype))
    dims = x[0].numel()
    u = torch.rand(len(x), generator=generator, device=x.device, dtype=x.dtype)
    return (x + direction * _per_image(radius * u.pow(1.0 / dims), x)).clamp(MODEL_LOW, MODEL_HIGH)


def l2_step(current: torch.Tensor, grad: torch.Tensor, x: torch.Tensor, radius: float, alpha: float) -> torch.Tensor:
    """One ascent step: `alpha` along the normalised gradient, back onto the ball and the box."""
    moved = current + alpha * l2_normalise(grad)
    return (x + l2_project(moved - x, radius)).clamp(MODEL_LOW, MODEL_HIGH)


def l2_ascent(model: torch.nn.Module, x: torch.Tensor, labels: torch.Tensor, radius: float, alpha: float, steps: int,
              start: torch.Tensor | None = None, on_iterate: Iterate | None = None) -> torch.Tensor:
    """`steps` L2 PGD steps on the cross-entropy from `start` (x when None), radius and step in
    MODEL units, with the model as the caller set it (training calls this in eval mode too).
    `on_iterate(images, logits, per-image loss)` sees every iterate, the last included (an attack
    keeps its best there); without it the last iterate gets no extra forward pass. Returns the
    last iterate, detached."""
    x = x.detach()
    current = x.clone() if start is None else start.detach()
    with torch.enable_grad():
        for step in range(steps + (on_iterate is not None)):
            last = step == steps
            current = current.detach().requires_grad_(not last)
            logits = model(current)
            loss = F.cross_entropy(logits, labels, reduction="none")
            if on_iterate is not None:
                on_iterate(current.detach(), logits.detach(), loss.detach())
            if last:
                break
            (grad,) = torch.autograd.grad(loss.sum(), current)
            current = l2_step(current.detach(), grad, x, radius, alpha)
    return current.detach()


@dataclass(frozen=True)
class PGDL2(Attack):
    steps: int = 50
    step_size: float = 0.0      # pixel units; 0 means 2.5 * eps / steps
    restarts: int = 3
    random_start: bool = True

    name = "pgd"
    summary = "L2 projected gradient descent on the cross-entropy, random starts and restarts (ours)"
    iterative = True
    norms = ("l2",)

    @property
    def randomized(self) -> bool:  # type: ignore[override]
        return self.random_start

    def validate(self) -> None:
        if self.steps < 1 or self.restarts < 1:
            raise UserError(f"pgd needs steps >= 1 and restarts >= 1, got steps={self.steps}, restarts={self.restarts}")
        if self.step_size < 0:
            raise UserError(f"pgd step_size must be >= 0 (0 = 2.5 * eps / steps), got {self.step_size}")

    def step_for(self, eps: float) -> float:
        return self.step_size if self.step_size > 0 else 2.5 * eps / self.steps

    def run(self, model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, eps: float,
            generator: torch.Generator) -> AttackOutput:
        x = images.detach()
        radius, alpha = eps_to_model(eps), eps_to_model(self.step_for(eps))
        state = {"best": x.clone(), "fooled": torch.zeros(len(x), dtype=torch.bool, device=x.device),
                 "loss": torch.full((len(x),), -float("inf"), device=x.device)}
        trace = torch.zeros(self.steps + 1, len(x), device=x.device)
        clean_logits: list[torch.Tensor] = []
        random = self.random_start and radius > 0
        running = torch.empty(0)
        step = 0

        def keep(candidate: torch.Tensor, logits: torch.Tensor, loss: torch.Tensor) -> None:
            nonlocal running, step
            if not random and not clean_logits:
                clean_logits.append(logits)
            fooled = logits.argmax(1) != labels
            better = (fooled & ~state["fooled"]) | ((fooled == state["fooled"]) & (loss > state["loss"]))
            state["best"] = torch.where(_per_image(better, x), candidate, state["best"])
            state["fooled"], state["loss"] = state["fooled"] | fooled, torch.where(better, loss, state["loss"])
            running = torch.max(running, loss)
            trace[step] = running
            step += 1

        with frozen_eval(model):
            for _ in range(self.restarts):
                running, step = torch.full((len(x),), -float("inf"), device=x.device), 0
                start = random_l2_start(x, radius, generator) if random else None
                l2_ascent(model, x, labels, radius, alpha, self.steps, start=start, on_iterate=keep)
        unfooled = ~state["fooled"]
        return AttackOutput(state["best"], clean_logits=clean_logits[0] if clean_logits else None,
                            loss_trace_sum=(trace * unfooled).sum(dim=1), loss_trace_count=int(unfooled.sum()))


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
