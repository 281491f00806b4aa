"""foolbox's L-inf and L2 attacks behind our interface (an attack that has both builds the foolbox
class of its `norm`).

foolbox measures epsilon in the model's own input units; our models see [-1, 1], so a budget of
eps pixel units is passed as `eps_to_model(eps)` with bounds `MODEL_BOUNDS`. foolbox draws its
random starts from torch's global generator: we seed it from the attack's generator inside
`fork_rng`, so a foolbox run is repeatable and leaves the caller's RNG state alone."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from winn_robust.attacks.base import Attack, AttackOutput
from winn_robust.attacks.pgd_l2 import l2_norms, l2_project
from winn_robust.errors import UserError
from winn_robust.models.base import frozen_eval
from winn_robust.units import MODEL_BOUNDS, MODEL_HIGH, MODEL_LOW, MODEL_SCALE, eps_to_model


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
        clipped = clipped.detach()
        if self.norm == "l2":  # foolbox's float arithmetic may overshoot the ball by an ulp
            x = images.detach()
            clipped = (x + l2_project(clipped - x, eps_to_model(eps))).clamp(MODEL_LOW, MODEL_HIGH)
        return AttackOutput(clipped)

    def minimum_norms(self, model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor,
                      generator: torch.Generator) -> torch.Tensor:
        """A minimum-norm attack run unbounded: per image the norm (this attack's, in [0, 1] pixel
        units) of the smallest adversarial perturbation it found; 0 where the clean image is
        already wrong, inf where it found none."""
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator, device=generator.device).item())
        devices = [images.device] if images.device.type == "cuda" else []
        x = images.detach()
        with frozen_eval(model), torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            raw, _, _ = self.make()(foolbox_model(model, images.device), x, labels, epsilons=None)
            with torch.no_grad():
                clean_wrong = model(x).argmax(1) != labels
                fooled = model(raw.detach()).argmax(1) != labels
        delta = (raw.detach() - x).flatten(1)
        norms = (l2_norms(delta) if self.norm == "l2" else delta.abs().amax(dim=1)) / MODEL_SCALE
        norms = torch.where(fooled, norms, torch.full_like(norms, float("inf")))
        return torch.where(clean_wrong, torch.zeros_like(norms), norms)


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
    summary = "foolbox's PGD (LinfProjectedGradientDescentAttack, or L2ProjectedGradientDescentAttack at L2)"
    iterative = True
    norms = ("linf", "l2")

    @property
    def randomized(self) -> bool:  # type: ignore[override]
        return self.random_start

    def validate(self) -> None:
        if self.steps < 1 or self.rel_stepsize <= 0:
            raise UserError(f"foolbox-pgd needs steps >= 1 and rel_stepsize > 0, got {self.steps}, {self.rel_stepsize}")

    def make(self) -> Any:
        import foolbox
        cls = foolbox.attacks.L2PGD if self.norm == "l2" else foolbox.attacks.LinfPGD
        return cls(steps=self.steps, rel_stepsize=self.rel_stepsize, random_start=self.random_start)


@dataclass(frozen=True)
class FoolboxBIM(FoolboxAttack):
    steps: int = 10
    rel_stepsize: float = 0.2

    name = "foolbox-bim"
    summary = "foolbox's basic iterative method (PGD without random start), L-inf or L2"
    iterative = True
    norms = ("linf", "l2")

    def validate(self) -> None:
        if self.steps < 1 or self.rel_stepsize <= 0:
            raise UserError(f"foolbox-bim needs steps >= 1 and rel_stepsize > 0, got {self.steps}, {self.rel_stepsize}")

    def make(self) -> Any:
        import foolbox
        cls = foolbox.attacks.L2BasicIterativeAttack if self.norm == "l2" else foolbox.attacks.LinfBasicIterativeAttack
        return cls(steps=self.steps, rel_stepsize=self.rel_stepsize)


@dataclass(frozen=True)
class FoolboxDeepFool(FoolboxAttack):
    steps: int = 50
    overshoot: float = 0.02

    name = "foolbox-deepfool"
    summary = "foolbox's DeepFool, L-inf or L2 (a minimum-norm attack, clipped to eps)"
    iterative = True
    minimum_norm = True
    norms = ("linf", "l2")

    def validate(self) -> None:
        if self.steps < 1 or self.overshoot < 0:
            raise UserError(f"foolbox-deepfool needs steps >= 1 and overshoot >= 0, got {self.steps}, {self.overshoot}")

    def make(self) -> Any:
        import foolbox
        cls = foolbox.attacks.L2DeepFoolAttack if self.norm == "l2" else foolbox.attacks.LinfDeepFoolAttack
        return cls(steps=self.steps, overshoot=self.overshoot)


@dataclass(frozen=True)
class FoolboxFGM(FoolboxAttack):
    name = "foolbox-fgm"
    summary = "foolbox's L2 fast gradient method (L2FastGradientAttack)"
    norms = ("l2",)

    def make(self) -> Any:
        import foolbox
        return foolbox.attacks.L2FastGradientAttack()


@dataclass(frozen=True)
class FoolboxFMN(FoolboxAttack):
    steps: int = 100
    max_stepsize: float = 1.0
    gamma: float = 0.05

    name = "foolbox-fmn"
    summary = "foolbox's fast minimum-norm attack (L2FMNAttack / LInfFMNAttack; Pintor et al. 2021)"
    iterative = True
    minimum_norm = True
    norms = ("linf", "l2")

    def validate(self) -> None:
        if self.steps < 1 or self.max_stepsize <= 0 or not 0 < self.gamma < 1:
            raise UserError(f"foolbox-fmn needs steps >= 1, max_stepsize > 0 and 0 < gamma < 1, got {self.steps}, "
                            f"{self.max_stepsize}, {self.gamma}")

    def make(self) -> Any:
        import foolbox
        cls = foolbox.attacks.L2FMNAttack if self.norm == "l2" else foolbox.attacks.LInfFMNAttack
        return cls(steps=self.steps, max_stepsize=self.max_stepsize, gamma=self.gamma)


@dataclass(frozen=True)
class FoolboxDDN(FoolboxAttack):
    steps: int = 100
    gamma: float = 0.05

    name = "foolbox-ddn"
    summary = "foolbox's decoupled direction and norm attack (DDNAttack; Rony et al. 2019), L2 minimum norm"
    iterative = True
    minimum_norm = True
    norms = ("l2",)

    def validate(self) -> None:
        if self.steps < 1 or not 0 < self.gamma < 1:
            raise UserError(f"foolbox-ddn needs steps >= 1 and 0 < gamma < 1, got {self.steps}, {self.gamma}")

    def make(self) -> Any:
        import foolbox
        return foolbox.attacks.DDNAttack(steps=self.steps, gamma=self.gamma)
