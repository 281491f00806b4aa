"""The classification-pass objectives of the three methods.

All three see positives through one forward pass; WINN and ICN also see same-label
pseudo-negatives (and WINN interpolates for its gradient penalty) in that same pass: layer
norm is per-sample, so concatenating the batches changes nothing but speed."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F


@dataclass
class LossTerms:
    """Every term of one step, kept on the device (no host sync in the inner loop)."""
    loss: torch.Tensor
    ce: torch.Tensor
    introspective: torch.Tensor   # WINN: mean f(neg) - mean f(pos); ICN: logistic loss
    penalty: torch.Tensor          # WINN gradient penalty; zero otherwise
    f_pos_mean: torch.Tensor
    logits_pos: torch.Tensor | None  # None: the method did not give logits (no training error logged)

    def stacked(self) -> torch.Tensor:
        return torch.stack([self.loss.detach(), self.ce.detach(), self.introspective.detach(), self.penalty.detach()])


TERM_NAMES = ("total loss", "cross-entropy", "introspective term", "gradient penalty")


def input_gradient_norm(f_values: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """||grad_x f(x)||_2 per image, differentiable (create_graph) so it can be penalized."""
    (grad,) = torch.autograd.grad(f_values.sum(), inputs, create_graph=True)
    return grad.flatten(1).norm(2, dim=1)


class Scorer(Protocol):
    """Anything with the classifier's `score`: the model itself, or its data-parallel wrapper."""

    def score(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...


def interpolation_coefficients(n: int, like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """a ~ U[0, 1], one per image, shaped to broadcast over images like `like` (N, C, H, W)."""
    return torch.rand(n, *([1] * (like.dim() - 1)), generator=generator, device=like.device, dtype=like.dtype)


def interpolate(pos: torch.Tensor, neg: torch.Tensor, generator: torch.Generator | None,
                coefficients: torch.Tensor | None = None) -> torch.Tensor:
    """x_hat = a * pos + (1 - a) * neg with a ~ U[0, 1] per image (drawn here unless given)."""
    a = interpolation_coefficients(pos.shape[0], pos, generator) if coefficients is None else coefficients
    return a * pos + (1 - a) * neg


def baseline_loss(model: Scorer, pos: torch.Tensor, labels: torch.Tensor) -> LossTerms:
    logits, f_pos = model.score(pos)
    ce = F.cross_entropy(logits, labels)
    zero = ce.new_zeros(())
    return LossTerms(ce, ce, zero, zero, f_pos.detach().mean(), logits)


def winn_loss(model: Scorer, pos: torch.Tensor, neg: torch.Tensor, labels: torch.Tensor,
              alpha: float, gp_lambda: float, generator: torch.Generator | None,
              coefficients: torch.Tensor | None = None) -> LossTerms:
    """CE(pos) + alpha * (mean f(neg) - mean f(pos) + lambda * mean (||grad f(x_hat)|| - 1)^2).
    `coefficients` (the interpolation's a) are drawn from `generator` unless given."""
    n = pos.shape[0]
    x_hat = interpolate(pos, neg, generator, coefficients).requires_grad_(True)
    logits, f = model.score(torch.cat([pos, neg, x_hat]))
    f_pos, f_neg, f_hat = f[:n], f[n:2 * n], f[2 * n:]
    ce = F.cross_entropy(logits[:n], labels)
    critic_gap = f_neg.mean() - f_pos.mean()
    penalty = ((input_gradient_norm(f_hat, x_hat) - 1.0) ** 2).mean()
    loss = ce + alpha * (critic_gap + gp_lambda * penalty)
    return LossTerms(loss, ce, critic_gap, penalty, f_pos.detach().mean(), logits[:n])


def icn_loss(model: Scorer, pos: torch.Tensor, neg: torch.Tensor, labels: torch.Tensor,
             alpha: float) -> LossTerms:
    """CE(pos) + alpha * logistic loss of f separating positives (+1) from negatives (-1)."""
    n = pos.shape[0]
    logits, f = model.score(torch.cat([pos, neg]))
    f_pos, f_neg = f[:n], f[n:]
    ce = F.cross_entropy(logits[:n], labels)
    logistic = F.softplus(-f_pos).mean() + F.softplus(f_neg).mean()
    loss = ce + alpha * logistic
    return LossTerms(loss, ce, logistic, ce.new_zeros(()), f_pos.detach().mean(), logits[:n])


def adversarial_loss(model: Scorer, adv: torch.Tensor, labels: torch.Tensor) -> LossTerms:
    """CE on adversarial images only (PGD-AT, Fast-AT); train error is the error on them."""
    logits, f = model.score(adv)
    ce = F.cross_entropy(logits, labels)
    zero = ce.new_zeros(())
    return LossTerms(ce, ce, zero, zero, f.detach().mean(), logits)


def trades_kl(logits_adv: torch.Tensor, probs_clean: torch.Tensor) -> torch.Tensor:
    """KL(p(x) || p(x')) per image, as TRADES writes it: KLDivLoss(log_softmax(x'), softmax(x))
    summed over the classes."""
    return F.kl_div(F.log_softmax(logits_adv, dim=1), probs_clean, reduction="none").sum(dim=1)


def trades_loss(model: Scorer, pos: torch.Tensor, adv: torch.Tensor, labels: torch.Tensor, beta: float) -> LossTerms:
    """CE(f(x), y) + beta * mean KL(p(x) || p(x')), both passes in one forward, gradients through
    both distributions (as the official code: the clean softmax is not detached)."""
    n = pos.shape[0]
    logits, f = model.score(torch.cat([pos, adv]))
    clean, perturbed = logits[:n], logits[n:]
    ce = F.cross_entropy(clean, labels)
    kl = trades_kl(perturbed, F.softmax(clean, dim=1)).mean()
    loss = ce + beta * kl
    return LossTerms(loss, ce, kl, ce.new_zeros(()), f[:n].detach().mean(), clean)
