"""foolbox attacks behind our registry: proof that the harness is attack-agnostic.

foolbox measures epsilon in the model's own input units; our models see [-1, 1], so a budget
of eps pixel units is passed to foolbox as `eps_to_model(eps)` with bounds `MODEL_BOUNDS`."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from winn_robust.attacks.registry import register_attack
from winn_robust.models.base import frozen_eval
from winn_robust.units import MODEL_BOUNDS, eps_to_model


def foolbox_model(model: torch.nn.Module, device: torch.device) -> Any:
    """A foolbox view of one of our [-1, 1] models."""
    import foolbox

    return foolbox.PyTorchModel(model, bounds=MODEL_BOUNDS, device=device)


def foolbox_attack(make_attack: Callable[[], Any]) -> Callable[..., torch.Tensor]:
    def run(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, eps: float) -> torch.Tensor:
        with frozen_eval(model):
            _, clipped, _ = make_attack()(foolbox_model(model, images.device), images, labels,
                                          epsilons=eps_to_model(eps))
        return clipped.detach()
    return run


def _fgsm() -> Any:
    import foolbox
    return foolbox.attacks.FGSM()


def _linf_pgd() -> Any:
    import foolbox
    return foolbox.attacks.LinfPGD()


register_attack("foolbox-fgsm")(foolbox_attack(_fgsm))
register_attack("foolbox-pgd")(foolbox_attack(_linf_pgd))
