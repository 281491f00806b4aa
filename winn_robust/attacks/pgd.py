"""Our L-inf PGD (Madry et al. 2018) with random starts and restarts, batched.

Each image keeps its most damaging iterate over every step of every restart (a mistake found at
any step is never lost; among mistakes, or among non-mistakes, the higher cross-entropy wins),
so more steps or restarts can only raise the error. Steps move by `step_size` (pixel units,
default 2.5 * eps / steps) along the sign of the input gradient of the cross-entropy on the
true label, then project onto the eps-ball and the [-1, 1] box."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from winn_robust.attacks.base import Attack, AttackOutput, input_gradient
from winn_robust.errors import UserError
from winn_robust.models.base import frozen_eval
from winn_robust.units import MODEL_HIGH, MODEL_LOW, eps_to_model


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
        radius, alpha = eps_to_model(eps), eps_to_model(self.step_for(eps))
        low, high = (x - radius).clamp(min=MODEL_LOW), (x + radius).clamp(max=MODEL_HIGH)
        best = x.clone()
        best_fooled = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        best_loss = torch.full((len(x),), -float("inf"), device=x.device)
        clean_logits = None
        trace = torch.zeros(self.steps + 1, len(x), device=x.device)

        def keep(candidate: torch.Tensor, logits: torch.Tensor, loss: torch.Tensor) -> None:
            nonlocal best, best_fooled, best_loss
            fooled = logits.argmax(1) != labels
            better = (fooled & ~best_fooled) | ((fooled == best_fooled) & (loss > best_loss))
            best = torch.where(better.view(-1, *[1] * (x.dim() - 1)), candidate, best)
            best_fooled, best_loss = best_fooled | fooled, torch.where(better, loss, best_loss)

        with frozen_eval(model), torch.enable_grad():
            for _ in range(self.restarts):
                if self.random_start and radius > 0:
                    noise = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
                    current = torch.min(torch.max(x + (2 * noise - 1) * radius, low), high)
                else:
                    current = x.clone()
                running = torch.full((len(x),), -float("inf"), device=x.device)
                for step in range(self.steps + 1):
                    current = current.detach().requires_grad_(step < self.steps)
                    logits = model(current)
                    loss = F.cross_entropy(logits, labels, reduction="none")
                    if clean_logits is None and not (self.random_start and radius > 0):
                        clean_logits = logits.detach()
                    keep(current.detach(), logits.detach(), loss.detach())
                    running = torch.max(running, loss.detach())
                    trace[step] = running
                    if step == self.steps:
                        break
                    grad = input_gradient(loss.sum(), current)
                    current = torch.min(torch.max(current.detach() + alpha * grad.sign(), low), high)
        unfooled = ~best_fooled
        return AttackOutput(best, clean_logits=clean_logits, loss_trace_sum=(trace * unfooled).sum(dim=1),
                            loss_trace_count=int(unfooled.sum()))
