"""Our L-inf PGD (Madry et al. 2018) with random starts and restarts, batched, and the projected
sign-gradient ascent loop it shares with adversarial training (PGD-AT, TRADES, Fast-AT).

Each image keeps its most damaging iterate over every step of every restart (a mistake found at
any step is never lost; among mistakes, or among non-mistakes, the higher cross-entropy wins),
so more steps or restarts can only raise the error. Steps move by `step_size` (pixel units,
default 2.5 * eps / steps) along the sign of the input gradient of the cross-entropy on the
true label, then project onto the eps-ball and the [-1, 1] box."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from winn_robust.attacks.base import Attack, AttackOutput, input_gradient
from winn_robust.errors import UserError
from winn_robust.models.base import frozen_eval
from winn_robust.units import MODEL_HIGH, MODEL_LOW, eps_to_model

# per-image objective of the logits and the current iterate (the ascent maximises its sum)
Objective = Callable[[torch.Tensor], torch.Tensor]
# sees every iterate, the last included: (step, iterate, logits, per-image objective)
IterateHook = Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor], None]


def box_around(x: torch.Tensor, radius: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The intersection of the L-inf ball of `radius` (model units) around x with the pixel box."""
    return (x - radius).clamp(min=MODEL_LOW), (x + radius).clamp(max=MODEL_HIGH)


def uniform_start(x: torch.Tensor, radius: float, noise: torch.Tensor) -> torch.Tensor:
    """x moved by (2 * noise - 1) * radius (noise ~ U[0, 1), the image's shape), projected."""
    low, high = box_around(x, radius)
    return torch.min(torch.max(x + (2 * noise - 1) * radius, low), high)


def sign_ascent(model: torch.nn.Module, x: torch.Tensor, start: torch.Tensor, objective: Objective,
                radius: float, step: float, steps: int, on_iterate: IterateHook | None = None) -> torch.Tensor:
    """`steps` steps of projected sign-gradient ascent on sum(objective(model(x'))) from `start`,
    each projected onto the L-inf ball of `radius` around x and the pixel box (model units).
    Returns the last iterate. `on_iterate` sees every iterate with its logits; without it the last
    iterate is not evaluated (adversarial training needs only the image). The caller puts the
    model in eval mode with frozen parameters (`frozen_eval`)."""
    low, high = box_around(x, radius)
    current = start.detach()
    with torch.enable_grad():
        for index in range(steps + 1):
            last = index == steps
            if last and on_iterate is None:
                break
            current = current.detach().requires_grad_(not last)
            logits = model(current)
            value = objective(logits)
            if on_iterate is not None:
                on_iterate(index, current.detach(), logits.detach(), value.detach())
            if last:
                break
            grad = input_gradient(value.sum(), current)  # a detached input is a zero gradient, not a crash
            current = torch.min(torch.max(current.detach() + step * grad.sign(), low), high)
    return current.detach()


@dataclass(frozen=True)
class PGD(Attack):
    steps: int = 50
    step_size: float = 0.0      # pixel units; 0 means 2.5 * eps / steps
    restarts: int = 3
    random_start: bool = True

    name = "pgd"
    summary = "L-inf projected gradient descent on the cross-entropy, random starts and restarts (ours)"
    iterative = True

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
        random = self.random_start and eps > 0
        noises = [torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) if random else None
                  for _ in range(self.restarts)]
        return self.run_from(model, x, labels, eps, noises)

    def run_from(self, model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, eps: float,
                 noises: list[torch.Tensor | None]) -> AttackOutput:
        """PGD with the random starts given: one U[0, 1) tensor of the images' shape per restart
        (None: start at the image). Adversarial training draws them for a whole global batch and
        passes each rank its rows, so several ranks attack exactly as one process does."""
        x = images.detach()
        radius, alpha = eps_to_model(eps), eps_to_model(self.step_for(eps))
        best = x.clone()
        best_fooled = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        best_loss = torch.full((len(x),), -float("inf"), device=x.device)
        clean_logits: torch.Tensor | None = None
        trace = torch.zeros(self.steps + 1, len(x), device=x.device)
        running = torch.empty(0)
        from_clean = False

        def keep(step: int, candidate: torch.Tensor, logits: torch.Tensor, loss: torch.Tensor) -> None:
            nonlocal best, best_fooled, best_loss, clean_logits, running
            if clean_logits is None and step == 0 and from_clean:
                clean_logits = logits
            fooled = logits.argmax(1) != labels
            better = (fooled & ~best_fooled) | ((fooled == best_fooled) & (loss > best_loss))
            best = torch.where(better.view(-1, *[1] * (x.dim() - 1)), candidate, best)
            best_fooled, best_loss = best_fooled | fooled, torch.where(better, loss, best_loss)
            running = loss if step == 0 else torch.max(running, loss)
            trace[step] = running

        def cross_entropy(logits: torch.Tensor) -> torch.Tensor:
            return F.cross_entropy(logits, labels, reduction="none")

        with frozen_eval(model):
            for restart, noise in enumerate(noises[:self.restarts]):
                from_clean = restart == 0 and (noise is None or radius == 0)
                start = x.clone() if noise is None or radius == 0 else uniform_start(x, radius, noise)
                sign_ascent(model, x, start, cross_entropy, radius, alpha, self.steps, on_iterate=keep)
        unfooled = ~best_fooled
        return AttackOutput(best, clean_logits=clean_logits, loss_trace_sum=(trace * unfooled).sum(dim=1),
                            loss_trace_count=int(unfooled.sum()))
