"""Our batched FGSM, exactly the project's convention (docs/conventions.md):
x_adv = clip(x + 2 * eps * sign(grad_x CE(f(x), y)), -1, 1), model in eval mode, true label,
input gradients only (no weight gradients are computed); a zero gradient leaves the pixel."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from winn_robust.attacks.base import Attack, AttackOutput, input_gradient
from winn_robust.models.base import frozen_eval
from winn_robust.units import MODEL_HIGH, MODEL_LOW, check_eps, eps_to_model


def fgsm_with_logits(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor,
                     eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(adversarial images, clean logits): the clean logits come free from the gradient pass,
    which saves the harness one forward per image and model. eps is trusted (checked upstream)."""
    x = images.detach().clone().requires_grad_(True)
    with frozen_eval(model), torch.enable_grad():
        logits = model(x)
        loss = F.cross_entropy(logits, labels, reduction="sum")
        grad = input_gradient(loss, x)
    adversarial = (x.detach() + eps_to_model(eps) * grad.sign()).clamp_(MODEL_LOW, MODEL_HIGH)
    return adversarial, logits.detach()


@dataclass(frozen=True)
class FGSM(Attack):
    name = "fgsm"
    summary = "fast gradient sign method, one step of 2*eps (ours; the WINN paper's attack)"

    def run(self, model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, eps: float,
            generator: torch.Generator) -> AttackOutput:
        adversarial, logits = fgsm_with_logits(model, images, labels, eps)
        return AttackOutput(adversarial, clean_logits=logits)


def fgsm(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, eps: float) -> torch.Tensor:
    """FGSM for direct callers: eps (in [0, 1] pixel units) is checked here, at the boundary."""
    return fgsm_with_logits(model, images, labels, check_eps(eps))[0]
