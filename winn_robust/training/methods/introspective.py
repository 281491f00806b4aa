"""The WINN paper's three methods: the cross-entropy baseline, ICN and WINN (docs/conventions.md)."""
from __future__ import annotations

from dataclasses import dataclass

from winn_robust.training.losses import LossTerms, baseline_loss, icn_loss, winn_loss
from winn_robust.training.methods.base import StepContext, TrainingMethod, check_non_negative, setting


@dataclass(frozen=True)
class Baseline(TrainingMethod):
    name = "baseline"
    summary = "softmax cross-entropy only"
    term_columns = ("", "")

    def loss(self, ctx: StepContext) -> LossTerms:
        return baseline_loss(ctx.scorer, ctx.pos, ctx.labels)


@dataclass(frozen=True)
class ICN(TrainingMethod):
    alpha: float = setting(0.01, check_non_negative)   # weight of the introspective term (paper: 0.01)

    name = "icn"
    summary = "CE + alpha * logistic loss of the critic separating positives from pseudo-negatives"
    uses_negatives = True

    def loss(self, ctx: StepContext) -> LossTerms:
        assert ctx.neg is not None
        return icn_loss(ctx.scorer, ctx.pos, ctx.neg, ctx.labels, self.alpha)


@dataclass(frozen=True)
class WINN(TrainingMethod):
    alpha: float = setting(0.01, check_non_negative)      # weight of the introspective term (paper: 0.01)
    gp_lambda: float = setting(10.0, check_non_negative)  # weight of the gradient penalty (paper: 10)

    name = "winn"
    summary = "CE + alpha * (Wasserstein critic gap + lambda * gradient penalty) against pseudo-negatives"
    uses_negatives = True
    uses_interpolation = True

    def loss(self, ctx: StepContext) -> LossTerms:
        assert ctx.neg is not None
        return winn_loss(ctx.scorer, ctx.pos, ctx.neg, ctx.labels, self.alpha, self.gp_lambda, None,
                         coefficients=ctx.coefficients)
