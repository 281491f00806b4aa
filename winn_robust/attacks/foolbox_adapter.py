"""foolbox's L-inf and L2 attacks behind our interface (an attack that has both builds the foolbox
class of its `norm`).

foolbox measures epsilon in the model's own input units; our models see [-1, 1], so a budget of
eps pixel units is passed as `eps_to_model(eps)` with bounds `MODEL_BOUNDS`. foolbox draws its
random starts from torch's global generator: we seed it from the attack's generator inside
`fork_rng`, so a foolbox run is repeatable and leaves the caller's RNG state alone."""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar

import torch

from winn_robust.attacks.base import Attack, AttackOutput, draw_seed, forked_global_rng, option
from winn_robust.attacks.pgd_l2 import l2_norms, l2_project
from winn_robust.models.base import frozen_eval
from winn_robust.units import MODEL_BOUNDS, MODEL_HIGH, MODEL_LOW, MODEL_SCALE, eps_to_model


def foolbox_model(model: torch.nn.Module, device: torch.device) -> Any:
    """A foolbox view of one of our [-1, 1] models."""
    import foolbox

    return foolbox.PyTorchModel(model, bounds=MODEL_BOUNDS, device=device)


@dataclass(frozen=True)
class FoolboxAttack(Attack):
    """Subclasses name the foolbox class they build at each norm (`foolbox_classes`, which also
    gives their `norms`); their fields other than seed and norm are that class's keyword options."""

    foolbox_classes: ClassVar[dict[str, str]] = {}  # norm -> class name in foolbox.attacks

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.norms = tuple(cls.foolbox_classes)

    def make(self) -> Any:
        """The foolbox attack of this norm, built with this attack's options."""
        import foolbox

        options = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("seed", "norm")}
        return getattr(foolbox.attacks, self.foolbox_classes[self.norm])(**options)

    def run(self, model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, eps: float,
            generator: torch.Generator) -> AttackOutput:
        with frozen_eval(model), forked_global_rng(images.device, draw_seed(generator)):
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
        x = images.detach()
        with frozen_eval(model), forked_global_rng(images.device, draw_seed(generator)):
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
    foolbox_classes: ClassVar[dict[str, str]] = {"linf": "FGSM"}


@dataclass(frozen=True)
class FoolboxPGD(FoolboxAttack):
    steps: int = option(50, at_least=1)
    rel_stepsize: float = option(0.025, above=0)  # foolbox's default: step = 0.025 * epsilon (2.5 * eps / 100 steps)
    random_start: bool = True

    name = "foolbox-pgd"
    summary = "foolbox's PGD (LinfProjectedGradientDescentAttack, or L2ProjectedGradientDescentAttack at L2)"
    iterative = True
    foolbox_classes: ClassVar[dict[str, str]] = {"linf": "LinfPGD", "l2": "L2PGD"}

    @property
    def randomized(self) -> bool:  # type: ignore[override]
        return self.random_start


@dataclass(frozen=True)
class FoolboxBIM(FoolboxAttack):
    steps: int = option(10, at_least=1)
    rel_stepsize: float = option(0.2, above=0)

    name = "foolbox-bim"
    summary = "foolbox's basic iterative method (PGD without random start), L-inf or L2"
    iterative = True
    foolbox_classes: ClassVar[dict[str, str]] = {"linf": "LinfBasicIterativeAttack", "l2": "L2BasicIterativeAttack"}


@dataclass(frozen=True)
class FoolboxDeepFool(FoolboxAttack):
    steps: int = option(50, at_least=1)
    overshoot: float = option(0.02, at_least=0)

    name = "foolbox-deepfool"
    summary = "foolbox's DeepFool, L-inf or L2 (a minimum-norm attack, clipped to eps)"
    iterative = True
    minimum_norm = True
    foolbox_classes: ClassVar[dict[str, str]] = {"linf": "LinfDeepFoolAttack", "l2": "L2DeepFoolAttack"}


@dataclass(frozen=True)
class FoolboxFGM(FoolboxAttack):
    name = "foolbox-fgm"
    summary = "foolbox's L2 fast gradient method (L2FastGradientAttack)"
    foolbox_classes: ClassVar[dict[str, str]] = {"l2": "L2FastGradientAttack"}


@dataclass(frozen=True)
class FoolboxFMN(FoolboxAttack):
    steps: int = option(100, at_least=1)
    max_stepsize: float = option(1.0, above=0)
    gamma: float = option(0.05, above=0, below=1)

    name = "foolbox-fmn"
    summary = "foolbox's fast minimum-norm attack (L2FMNAttack / LInfFMNAttack; Pintor et al. 2021)"
    iterative = True
    minimum_norm = True
    foolbox_classes: ClassVar[dict[str, str]] = {"linf": "LInfFMNAttack", "l2": "L2FMNAttack"}


@dataclass(frozen=True)
class FoolboxDDN(FoolboxAttack):
    steps: int = option(100, at_least=1)
    gamma: float = option(0.05, above=0, below=1)

    name = "foolbox-ddn"
    summary = "foolbox's decoupled direction and norm attack (DDNAttack; Rony et al. 2019), L2 minimum norm"
    iterative = True
    minimum_norm = True
    foolbox_classes: ClassVar[dict[str, str]] = {"l2": "DDNAttack"}
