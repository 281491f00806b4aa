"""Our batched FGSM, exactly DESIGN.md's convention:
x_adv = clip(x + 2 * eps * sign(grad_x CE(f(x), y)), -1, 1), model in eval mode, true label,
input gradients only (no weight gradients are computed); a zero gradient leaves the pixel."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from winn_robust.models.base import frozen_eval
from winn_robust.attacks.registry import MODEL_SCALE, check_eps, register_attack


def fgsm_with_logits(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor,
                     eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(adversarial images, clean logits): the clean logits come free from the gradient pass,
    which saves the harness one forward per image and model."""
    eps = check_eps(eps)
    x = images.detach().clone().requires_grad_(True)
    with frozen_eval(model), torch.enable_grad():
        logits = model(x)
        loss = F.cross_entropy(logits, labels, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x)
    adversarial = (x.detach() + MODEL_SCALE * eps * grad.sign()).clamp_(-1.0, 1.0)
    return adversarial, logits.detach()


@register_attack("fgsm")
def fgsm(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, eps: float) -> torch.Tensor:
    return fgsm_with_logits(model, images, labels, eps)[0]
