"""foolbox's L-inf attacks behind our interface.

foolbox measures epsilon in the model's own input units; our models see [-1, 1], so a budget of
eps pixel units is passed as `eps_to_model(eps)` with bounds `MODEL_BOUNDS`. foolbox draws its
random starts from torch's global generator: we seed it from the attack's generator inside
`fork_rng`, so a foolbox run is repeatable and leaves the caller's RNG state alone."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from winn_robust.attacks.base import Attack, AttackOutput
from winn_robust.errors import UserError
from winn_robust.models.base import frozen_eval
from winn_robust.units import MODEL_BOUNDS, eps_to_model


def foolbox_model(model: torch.nn.Module, device: torch.device) -> Any:
    """A foolbox view of one of our [-1, 1] models."""
    import foolbox

    return foolbox.PyTorchModel(model, bounds=MODEL_BOUNDS, device=device)


@dataclass(frozen=True)
class FoolboxAttack(Attack):
    """Subclasses say which foolbox class to build and with which of their options."""

    def make(self) -> Any:
        raise NotImplementedError

    def run(self, model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, eps: float,
            generator: torch.Generator) -> AttackOutput:
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator, device=generator.device).item())
        devices = [images.device] if images.device.type == "cuda" else []
        with frozen_eval(model), torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            _, clipped, _ = self.make()(foolbox_model(model, images.device), images.detach(), labels,
                                        epsilons=eps_to_model(eps))
        return AttackOutput(clipped.detach())


@dataclass(frozen=True)
class FoolboxFGSM(FoolboxAttack):
    name = "foolbox-fgsm"
    summary = "foolbox's FGSM (LinfFastGradientAttack)"

    def make(self) -> Any:
        import foolbox
        return foolbox.attacks.FGSM()


@dataclass(frozen=True)
class FoolboxPGD(FoolboxAttack):
    steps: int = 50
    rel_stepsize: float = 0.025     # foolbox's default: step = 0.025 * epsilon (2.5 * eps / 100 steps)
    random_start: bool = True

    name = "foolbox-pgd"
    summary = "foolbox's L-inf PGD (LinfProjectedGradientDescentAttack)"
    iterative = True

    @property
    def randomized(self) -> bool:  # type: ignore[override]
        return self.random_start

    def validate(self) -> None:
        if self.steps < 1 or self.rel_stepsize <= 0:
            raise UserError(f"foolbox-pgd needs steps >= 1 and rel_stepsize > 0, got {self.steps}, {self.rel_stepsize}")

    def make(self) -> Any:
        import foolbox
        return foolbox.attacks.LinfPGD(steps=self.steps, rel_stepsize=self.rel_stepsize, random_start=self.random_start)


@dataclass(frozen=True)
class FoolboxBIM(FoolboxAttack):
    steps: int = 10
    rel_stepsize: float = 0.2

    name = "foolbox-bim"
    summary = "foolbox's L-inf basic iterative method (PGD without random start)"
    iterative = True

    def validate(self) -> None:
        if self.steps < 1 or self.rel_stepsize <= 0:
            raise UserError(f"foolbox-bim needs steps >= 1 and rel_stepsize > 0, got {self.steps}, {self.rel_stepsize}")

    def make(self) -> Any:
        import foolbox
        return foolbox.attacks.LinfBasicIterativeAttack(steps=self.steps, rel_stepsize=self.rel_stepsize)


@dataclass(frozen=True)
class FoolboxDeepFool(FoolboxAttack):
    steps: int = 50
    overshoot: float = 0.02

    name = "foolbox-deepfool"
    summary = "foolbox's L-inf DeepFool (a minimum-norm attack, clipped to eps)"
    iterative = True

    def validate(self) -> None:
        if self.steps < 1 or self.overshoot < 0:
            raise UserError(f"foolbox-deepfool needs steps >= 1 and overshoot >= 0, got {self.steps}, {self.overshoot}")

    def make(self) -> Any:
        import foolbox
        return foolbox.attacks.LinfDeepFoolAttack(steps=self.steps, overshoot=self.overshoot)
