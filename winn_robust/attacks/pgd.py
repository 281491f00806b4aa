"""Our PGD (Madry et al. 2018) with random starts and restarts, batched, and the projected
gradient-ascent loop it shares with adversarial training (PGD-AT, TRADES, Fast-AT). The L-inf
version is here; pgd_l2.py gives the L2 start and step to the same loop and bookkeeping.

Each image keeps its most damaging iterate over every step of every restart (a mistake found at
any step is never lost; among mistakes, or among non-mistakes, the higher cross-entropy wins),
so more steps or restarts can only raise the error. Steps move by `step_size` (pixel units,
default 2.5 * eps / steps) along the sign of the input gradient of the cross-entropy on the
true label, then project onto the eps-ball and the [-1, 1] box."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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
# one ascent step of a threat model: (iterate, input gradient) -> the next iterate, projected
StepRule = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def box_around(x: torch.Tensor, radius: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The intersection of the L-inf ball of `radius` (model units) around x with the pixel box."""
    return (x - radius).clamp(min=MODEL_LOW), (x + radius).clamp(max=MODEL_HIGH)


def uniform_start(x: torch.Tensor, radius: float, noise: torch.Tensor) -> torch.Tensor:
    """x moved by (2 * noise - 1) * radius (noise ~ U[0, 1), the image's shape), projected."""
    low, high = box_around(x, radius)
    return torch.min(torch.max(x + (2 * noise - 1) * radius, low), high)


def linf_step(x: torch.Tensor, radius: float, alpha: float) -> StepRule:
    """`alpha` along the gradient's sign, then onto the L-inf ball of `radius` and the box."""
    low, high = box_around(x, radius)
    return lambda current, grad: torch.min(torch.max(current + alpha * grad.sign(), low), high)


def projected_ascent(model: torch.nn.Module, start: torch.Tensor, objective: Objective, step_rule: StepRule,
                     steps: int, on_iterate: IterateHook | None = None) -> torch.Tensor:
    """`steps` projected gradient-ascent steps on sum(objective(model(x'))) from `start`, the
    threat model's step and projection in `step_rule` (L-inf: `linf_step`; L2: pgd_l2.l2_step_rule).
    Returns the last iterate. `on_iterate` sees every iterate with its logits; without it the last
    iterate is not evaluated (adversarial training needs only the image). The caller puts the
    model in eval mode with frozen parameters (`frozen_eval`)."""
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
            current = step_rule(current.detach(), grad)
    return current.detach()


def sign_ascent(model: torch.nn.Module, x: torch.Tensor, start: torch.Tensor, objective: Objective,
                radius: float, step: float, steps: int, on_iterate: IterateHook | None = None) -> torch.Tensor:
    """L-inf projected sign-gradient ascent around x (radius and step in model units)."""
    return projected_ascent(model, start, objective, linf_step(x, radius, step), steps, on_iterate)


class BestIterate:
    """Each image's most damaging iterate so far: a mistake found at any step is never lost;
    among mistakes, or among non-mistakes, the higher cross-entropy wins. Also the running
    maximum loss per step of the current restart (the report's loss-trace indicator)."""

    def __init__(self, x: torch.Tensor, labels: torch.Tensor, steps: int) -> None:
        self.labels = labels
        self.best = x.clone()
        self.fooled = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        self.loss = torch.full((len(x),), -float("inf"), device=x.device)
        self.trace = torch.zeros(steps + 1, len(x), device=x.device)
        self.running = torch.empty(0)

    def __call__(self, step: int, candidate: torch.Tensor, logits: torch.Tensor, loss: torch.Tensor) -> None:
        fooled = logits.argmax(1) != self.labels
        better = (fooled & ~self.fooled) | ((fooled == self.fooled) & (loss > self.loss))
        self.best = torch.where(better.view(-1, *[1] * (candidate.dim() - 1)), candidate, self.best)
        self.fooled, self.loss = self.fooled | fooled, torch.where(better, loss, self.loss)
        self.running = loss if step == 0 else torch.max(self.running, loss)
        self.trace[step] = self.running

    def output(self, clean_logits: torch.Tensor | None) -> AttackOutput:
        unfooled = ~self.fooled
        return AttackOutput(self.best, clean_logits=clean_logits, loss_trace_sum=(self.trace * unfooled).sum(dim=1),
                            loss_trace_count=int(unfooled.sum()))


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
        return self.run_from(model, x, labels, eps, [self.draw_noise(x, generator) if random else None
                                                     for _ in range(self.restarts)])

    # the threat model's three pieces (pgd_l2.PGDL2 overrides them)
    def draw_noise(self, x: torch.Tensor, generator: torch.Generator) -> Any:
        """One restart's random numbers: U[0, 1) of the images' shape."""
        return torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)

    def start_at(self, x: torch.Tensor, radius: float, noise: Any) -> torch.Tensor:
        return uniform_start(x, radius, noise)

    def step_rule(self, x: torch.Tensor, radius: float, alpha: float) -> StepRule:
        return linf_step(x, radius, alpha)

    def run_from(self, model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, eps: float,
                 noises: list[Any]) -> AttackOutput:
        """PGD with the random starts given: one `draw_noise` value per restart (None: start at the
        image). Adversarial training draws them for a whole global batch and passes each rank its
        rows, so several ranks attack exactly as one process does."""
        x = images.detach()
        radius, alpha = eps_to_model(eps), eps_to_model(self.step_for(eps))
        tracker = BestIterate(x, labels, self.steps)
        clean_logits: list[torch.Tensor] = []
        from_clean = False

        def keep(step: int, candidate: torch.Tensor, logits: torch.Tensor, loss: torch.Tensor) -> None:
            if not clean_logits and step == 0 and from_clean:
                clean_logits.append(logits)
            tracker(step, candidate, logits, loss)

        def cross_entropy(logits: torch.Tensor) -> torch.Tensor:
            return F.cross_entropy(logits, labels, reduction="none")

        rule = self.step_rule(x, radius, alpha)
        with frozen_eval(model):
            for restart, noise in enumerate(noises[:self.restarts]):
                from_clean = restart == 0 and (noise is None or radius == 0)
                start = x.clone() if noise is None or radius == 0 else self.start_at(x, radius, noise)
                projected_ascent(model, start, cross_entropy, rule, self.steps, on_iterate=keep)
        return tracker.output(clean_logits[0] if clean_logits else None)
