"""The reference defences, from their papers' definitions, on the project's own PGD loop
(winn_robust/attacks/pgd.py): the inner maximisation runs with the model in eval mode and frozen
parameters, eps in [0, 1] pixel units (model space 2 eps), every iterate projected onto the
eps-ball and the pixel box.

- PGD-AT (Madry et al. 2018): minimise CE(f(x'), y), x' = the harness's PGD (`pgd` attack) with
  one random start, K steps of a; it keeps each image's most damaging iterate rather than the last.
- TRADES (Zhang et al. 2019): minimise CE(f(x), y) + beta * KL(p(x) || p(x')), x' from K
  sign-gradient steps that maximise that KL, started at x + 0.001 N(0, 1) (pixel units).
- Fast-AT (Wong, Rice, Kolter 2020): one FGSM step of 1.25 eps from a uniform start in the ball.

`norm` is the threat model of the inner attack (`--train-norm`): at `l2` the same loops take the
L2 start and step of attacks/pgd_l2.py (the normalised gradient, projection onto the L2 ball,
then the box): PGD-AT's inner attack is the harness's L2 PGD from a start uniform in the ball;
TRADES keeps its 0.001 N(0, 1) start, as the official code's l_2 branch does (which steps 2 eps / K;
ours defaults to 2.5 eps / K as at L-inf: give step_size to match); Fast-AT takes one FGM step of
1.25 eps from a start uniform in the ball. An L2 eps is the L2 norm of the perturbation of the
[0, 1] image (units.py), so it may exceed 1.

`ramp_epochs` > 0 grows the training eps linearly from 0 over that many epochs (per batch), the
steps growing with it: PGD-AT on MNIST can stall near chance without a ramp in some set-ups."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from winn_robust.attacks.pgd import PGD, StepRule, linf_step, projected_ascent, uniform_start
from winn_robust.attacks.pgd_l2 import l2_ball_start, l2_step_rule, pgd_at_norm
from winn_robust.errors import SettingError
from winn_robust.models.base import frozen_eval
from winn_robust.training.losses import LossTerms, adversarial_loss, trades_kl, trades_loss
from winn_robust.training.methods.base import StepContext, TrainingMethod, check_non_negative, check_positive, setting
from winn_robust.units import L2_EPS_MAX, MODEL_HIGH, MODEL_LOW, MODEL_SCALE, NORMS, eps_to_model

TRADES_START_STD = 0.001  # pixel units, the official code's


@dataclass(frozen=True)
class AdversarialMethod(TrainingMethod):
    """Shared settings: eps (None until the run's table eps or --train-eps fills it), the linear
    ramp and the threat model."""
    eps: float | None = None
    ramp_epochs: float = setting(0.0, check_non_negative)
    norm: str = "linf"

    term_columns = ("", "")  # no critic terms to log (TRADES logs its KL term)

    def validate(self) -> None:
        if self.norm not in NORMS:
            raise SettingError("norm", f"{self.norm!r} is not a threat model; choose one of {', '.join(NORMS)}", method_setting=True)
        if self.eps is not None and self.norm == "l2" and not 0.0 <= self.eps <= L2_EPS_MAX:
            raise SettingError("eps", f"must be an L2 norm in [0, {L2_EPS_MAX:g}] pixel units, got {self.eps} "
                                      "(MNIST's usual 1.5-2, CIFAR-10's 0.5)", method_setting=True)
        if self.eps is not None and self.norm == "linf" and not 0.0 <= self.eps <= 1.0:
            raise SettingError("eps", f"must be in [0, 1] pixel units, got {self.eps} (8/255 = 0.0314; MNIST's 0.3)", method_setting=True)

    @property
    def threat_norm(self) -> str:
        return self.norm

    def step_rule(self, x: torch.Tensor, radius: float, alpha: float) -> StepRule:
        """The inner attack's step and projection at this method's norm (model units)."""
        return l2_step_rule(x, radius, alpha) if self.norm == "l2" else linf_step(x, radius, alpha)

    def random_start(self, ctx: StepContext, x: torch.Tensor, radius: float) -> torch.Tensor:
        """A start uniform in the ball of this norm, from the run's stream (whole global batch)."""
        if self.norm == "l2":
            return l2_ball_start(x, radius, ctx.randn(tuple(x.shape[1:])), ctx.rand(()))
        return uniform_start(x, radius, ctx.rand(tuple(x.shape[1:])))

    @property
    def train_eps(self) -> float | None:
        return self.eps

    def ramped_step(self, step_size: float, eps_now: float) -> float:
        """An inner step size given in pixel units at the full training eps, scaled with the
        ramped eps; 0 when it is unset (0: the method's default rule)."""
        return step_size * (eps_now / self.eps) if step_size > 0 and self.eps else 0.0

    def eps_at(self, ctx: StepContext) -> float:
        """The training eps of this batch (the ramp's value while it lasts)."""
        if self.eps is None:
            raise SettingError("eps", f"is not set for {self.name}; give the training eps in [0, 1] pixel units", method_setting=True)
        if self.ramp_epochs <= 0:
            return self.eps
        return self.eps * min(1.0, ctx.progress / self.ramp_epochs)


@dataclass(frozen=True)
class PGDAT(AdversarialMethod):
    steps: int = setting(10, check_positive)
    step_size: float = setting(0.0, check_non_negative)   # pixel units; 0 = 2.5 * eps / steps

    name = "pgd-at"
    summary = "Madry et al. 2018: CE on PGD examples from a uniform random start"

    def inner_attack(self, eps_now: float) -> PGD:
        """The harness's PGD at this norm: one restart from a random start in the ball, the step
        scaled with a ramped eps."""
        return pgd_at_norm(self.norm, steps=self.steps, step_size=self.ramped_step(self.step_size, eps_now), restarts=1,
                           random_start=True)

    def loss(self, ctx: StepContext) -> LossTerms:
        eps_now = self.eps_at(ctx)
        shape = tuple(ctx.pos.shape[1:])
        noise = (ctx.randn(shape), ctx.rand(())) if self.norm == "l2" else ctx.rand(shape)
        adv = self.inner_attack(eps_now).run_from(ctx.model, ctx.pos, ctx.labels, eps_now, [noise]).adversarial
        return adversarial_loss(ctx.scorer, adv, ctx.labels)


@dataclass(frozen=True)
class TRADES(AdversarialMethod):
    beta: float = setting(6.0, check_non_negative)
    steps: int = setting(10, check_positive)
    step_size: float = setting(0.0, check_non_negative)   # pixel units; 0 = 2.5 * eps / steps

    name = "trades"
    summary = "Zhang et al. 2019: CE(f(x)) + beta * KL(p(x) || p(x')), x' maximising that KL"
    term_names = ("total loss", "cross-entropy", "TRADES KL term", "unused")
    term_columns = ("robust_term", "")

    def perturb(self, model: torch.nn.Module, x: torch.Tensor, eps_now: float, start_noise: torch.Tensor) -> torch.Tensor:
        """TRADES' inner maximisation: K steps (sign steps at L-inf, normalised-gradient steps at
        L2) on KL(p(x) || p(x')) from x + 0.001 N(0, 1)."""
        radius = eps_to_model(eps_now)
        step_pixels = self.ramped_step(self.step_size, eps_now) or 2.5 * eps_now / self.steps
        with frozen_eval(model):
            with torch.no_grad():
                probs = F.softmax(model(x), dim=1)
            start = (x + MODEL_SCALE * TRADES_START_STD * start_noise).clamp(MODEL_LOW, MODEL_HIGH)

            def kl(logits: torch.Tensor) -> torch.Tensor:
                return trades_kl(logits, probs)

            return projected_ascent(model, start, kl, self.step_rule(x, radius, eps_to_model(step_pixels)), self.steps)

    def loss(self, ctx: StepContext) -> LossTerms:
        eps_now = self.eps_at(ctx)
        adv = self.perturb(ctx.model, ctx.pos, eps_now, ctx.randn(tuple(ctx.pos.shape[1:])))
        return trades_loss(ctx.scorer, ctx.pos, adv, ctx.labels, self.beta)


@dataclass(frozen=True)
class FastAT(AdversarialMethod):
    step_factor: float = setting(1.25, check_positive)   # the FGSM step, in units of eps

    name = "fast-at"
    summary = "Wong et al. 2020: one FGSM step of 1.25 eps from a uniform random start"

    def perturb(self, model: torch.nn.Module, x: torch.Tensor, labels: torch.Tensor, eps_now: float,
                start: torch.Tensor) -> torch.Tensor:
        """One step of step_factor * eps (FGSM at L-inf, FGM at L2) from `start`, projected."""
        radius = eps_to_model(eps_now)
        with frozen_eval(model):
            def cross_entropy(logits: torch.Tensor) -> torch.Tensor:
                return F.cross_entropy(logits, labels, reduction="none")

            return projected_ascent(model, start, cross_entropy, self.step_rule(x, radius, self.step_factor * radius), 1)

    def loss(self, ctx: StepContext) -> LossTerms:
        eps_now = self.eps_at(ctx)
        start = self.random_start(ctx, ctx.pos, eps_to_model(eps_now))
        adv = self.perturb(ctx.model, ctx.pos, ctx.labels, eps_now, start)
        return adversarial_loss(ctx.scorer, adv, ctx.labels)


# The papers' published settings (L-inf; eps and steps in [0, 1] pixel units), as `--method-preset NAME`.
PUBLISHED: dict[str, tuple[str, dict[str, Any]]] = {
    "madry-mnist": ("pgd-at", {"norm": "linf", "eps": 0.3, "steps": 40, "step_size": 0.01}),
    "madry-cifar10": ("pgd-at", {"norm": "linf", "eps": 8 / 255, "steps": 10, "step_size": 2 / 255}),
    "trades-mnist": ("trades", {"norm": "linf", "eps": 0.3, "steps": 40, "step_size": 0.01, "beta": 1.0}),
    "trades-cifar10": ("trades", {"norm": "linf", "eps": 0.031, "steps": 10, "step_size": 0.007, "beta": 6.0}),
    "fast-at-mnist": ("fast-at", {"norm": "linf", "eps": 0.3, "step_factor": 1.25}),
    "fast-at-cifar10": ("fast-at", {"norm": "linf", "eps": 8 / 255, "step_factor": 1.25}),
}
