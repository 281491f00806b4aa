"""Every training hyper-parameter in one place; defaults are the WINN paper's (docs/conventions.md),
and each has its help text here, next to it, for every command that exposes it."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from winn_robust.errors import UserError
from winn_robust.models import ARCHITECTURES
from winn_robust.models.generator import GENERATOR_INITS

METHODS = ("baseline", "icn", "winn")

FIELD_HELP = {
    "method": "baseline (CE only), icn (logistic introspective loss) or winn (Wasserstein)",
    "arch": "vanilla, resnet20, resnet32, resnet44 or resnet56",
    "data": "mnist, svhn, fashion-mnist, cifar10 or digits (embedded, no download)",
    "epochs": "training epochs (paper: 200)",
    "batch_size": "positives per batch; WINN pairs each with a same-label negative (paper: 100)",
    "lr": "Adam learning rate (paper: 1e-3)",
    "beta1": "Adam beta1 (paper: 0.0)",
    "beta2": "Adam beta2 (paper: 0.9)",
    "alpha": "weight of the introspective term (paper: 0.01)",
    "gp_lambda": "gradient-penalty weight lambda (paper: 10)",
    "negatives_per_class": "pseudo-negatives synthesized per class each epoch (paper: 100)",
    "initial_negatives_per_class": "pool entries per class drawn from the frozen random generator",
    "synthesis_lr": "Adam learning rate on the pixels during synthesis (paper: 0.02)",
    "synthesis_beta1": "synthesis Adam beta1 (paper: 0.9)",
    "synthesis_beta2": "synthesis Adam beta2 (paper: 0.9)",
    "synthesis_max_steps": "step budget per synthesis batch (paper: 2000)",
    "synthesis_tolerance": "stop when |mean f(x) - tau| <= this (paper: 1e-3)",
    "synthesis_ce_weight": "weight of CE(target class) in the synthesis loss (paper: 0.5)",
    "val_size": "validation images held out of training for model selection (paper: 5000; "
                "capped at 10%% of the training set for small datasets)",
    "train_limit": "use only the first N training images (quick runs)",
    "seed": "seed for weights, shuffling, pools and synthesis",
    "generator_init": "how the fixed random network that draws WINN/ICN's first fake images is initialised: "
                      "official (as the paper's code: varied first images) or legacy (an older winn-robust "
                      "version's: nearly identical first images; only to repeat old runs)",
    "amp": "bfloat16 autocast for the classification pass; synthesis stays float32 (off by default; see README)",
}


@dataclass
class TrainConfig:
    method: str = "winn"
    arch: str = "vanilla"
    data: str = "mnist"
    epochs: int = 200
    batch_size: int = 100
    lr: float = 1e-3
    beta1: float = 0.0
    beta2: float = 0.9
    alpha: float = 0.01            # weight of the introspective term
    gp_lambda: float = 10.0        # weight of the gradient penalty (WINN)
    negatives_per_class: int = 100         # synthesized and appended each epoch
    initial_negatives_per_class: int = 100  # drawn from the frozen random generator
    synthesis_lr: float = 0.02
    synthesis_beta1: float = 0.9
    synthesis_beta2: float = 0.9
    synthesis_max_steps: int = 2000
    synthesis_tolerance: float = 1e-3
    synthesis_ce_weight: float = 0.5
    val_size: int = 5000
    train_limit: int | None = None
    seed: int = 0
    generator_init: str = "official"
    amp: bool = False

    @property
    def introspective(self) -> bool:
        return self.method in ("icn", "winn")

    def validate(self) -> TrainConfig:
        """Check every value once (names are case-insensitive: WINN, ResNet32 and Digits are accepted)."""
        for name in ("method", "arch", "data", "generator_init"):
            setattr(self, name, str(getattr(self, name)).strip().lower())
        self.data = {"fashionmnist": "fashion-mnist", "fashion_mnist": "fashion-mnist", "cifar-10": "cifar10"}.get(
            self.data, self.data)
        if self.method not in METHODS:
            raise UserError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        if self.arch not in ARCHITECTURES:
            raise UserError(f"unknown architecture {self.arch!r}; choose one of {', '.join(ARCHITECTURES)}")
        if self.generator_init not in GENERATOR_INITS:
            raise UserError(f"unknown --generator-init {self.generator_init!r}; choose one of {', '.join(GENERATOR_INITS)}")
        positive = ("epochs", "batch_size", "lr", "negatives_per_class", "initial_negatives_per_class",
                    "synthesis_lr", "synthesis_max_steps", "val_size")
        for name in positive:
            if getattr(self, name) <= 0:
                raise UserError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        for name in ("beta1", "beta2", "synthesis_beta1", "synthesis_beta2"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise UserError(f"--{name.replace('_', '-')} must be in [0, 1), got {getattr(self, name)}")
        for name in ("alpha", "gp_lambda", "synthesis_tolerance", "synthesis_ce_weight"):
            if getattr(self, name) < 0:
                raise UserError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if self.train_limit is not None and self.train_limit <= 0:
            raise UserError(f"--train-limit must be positive, got {self.train_limit}")
        return self

    def with_method(self, method: str) -> TrainConfig:
        """The same settings for another method (how `reproduce` trains every method alike)."""
        return replace(self, method=method).validate()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})
