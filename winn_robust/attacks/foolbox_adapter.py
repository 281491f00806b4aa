"""foolbox attacks behind our registry: proof that the harness is attack-agnostic.

foolbox measures epsilon in the model's own input units; our models see [-1, 1], so a budget
of eps pixel units is passed to foolbox as 2 * eps with bounds (-1, 1)."""
from __future__ import annotations

from typing import Any, Callable

import torch

from winn_robust.models.base import frozen_eval
from winn_robust.attacks.registry import MODEL_SCALE, check_eps, register_attack


def foolbox_attack(make_attack: Callable[[], Any]) -> Callable[..., torch.Tensor]:
    def run(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, eps: float) -> torch.Tensor:
        import foolbox

        eps = check_eps(eps)
        with frozen_eval(model):
            fmodel = foolbox.PyTorchModel(model, bounds=(-1.0, 1.0), device=images.device)
            _, clipped, _ = make_attack()(fmodel, images, labels, epsilons=MODEL_SCALE * eps)
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
