"""Every shared training setting in one place (each method's own are in training/methods/);
defaults are the WINN paper's (docs/conventions.md), and each has its help text here, next to
it, for every command that exposes it."""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from winn_robust.data import TOY_DATASETS, is_toy, is_unlabelled
from winn_robust.errors import SettingError
from winn_robust.models import ARCHITECTURES, POINT_ARCHITECTURES
from winn_robust.models.generator import GENERATOR_INITS
from winn_robust.training.methods import TrainingMethod, make_method, settings_owners
from winn_robust.units import L2_EPS_MAX

FIELD_HELP = {
    "method": "baseline (CE only), icn (logistic introspective loss), winn (Wasserstein), pgd-at (Madry et al.), "
              "trades (Zhang et al.), fast-at (Wong et al.), or your own as NAME=FILE.py:FUNCTION",
    "arch": "vanilla, resnet20, resnet32, resnet44, resnet56, winn64 (Appendix C: textures, faces); mlp for the 2-D toys",
    "data": "mnist, svhn, fashion-mnist, cifar10 or digits (embedded, no download); generative methods also "
            "celeba (aligned JPEGs from --data-dir, no labels) and ring8, grid25, spiral20 (2-D Gaussian mixtures)",
    "epochs": "training epochs (paper: 200)",
    "batch_size": "positives per batch; WINN pairs each with a same-label negative (paper: 100)",
    "lr": "Adam learning rate (paper: 1e-3)",
    "beta1": "Adam beta1 (paper: 0.0)",
    "beta2": "Adam beta2 (paper: 0.9)",
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
    "select_by": "which epoch best.pt keeps: clean (lowest validation error; ties go to the later epoch), pgd "
                 "(lowest PGD error on the validation split, ties to the later epoch) or last (the final epoch); a "
                 "comma list (clean,last) also keeps best-RULE.pt for each further rule",
    "select_eps": "budget of --select-by pgd, in [0, 1] pixel units (default: the method's training eps)",
    "select_limit": "--select-by pgd attacks the first N validation images (default: all)",
    "amp": "bfloat16 autocast for the classification pass; synthesis stays float32 (off by default; see README)",
}


SELECT_RULES = ("clean", "pgd", "last")


def check_arch_for_data(arch: str, data: str, method: TrainingMethod) -> None:
    """2-D toy mixtures train only generative methods with the point MLPs; images never with them;
    unlabelled images (CelebA) only generative methods."""
    if is_unlabelled(data) and not getattr(method, "generative", False):
        raise SettingError("data", f"{data} has no class labels: train it with a generative method (winn-gen, "
                                   "wgan-gp, iwgan), not a classifier")
    if is_toy(data):
        if not getattr(method, "generative", False):
            raise SettingError("data", f"{data} is a 2-D toy mixture of points for the generative methods (iwgan, "
                                       "wgan-gp); supervised training needs images (mnist, digits, ...)")
        if arch not in POINT_ARCHITECTURES:
            raise SettingError("arch", f"{arch!r} is an image architecture and {data} is 2-D points; use "
                                       f"{' or '.join(POINT_ARCHITECTURES)} (the default for {', '.join(TOY_DATASETS)})")
    elif arch in POINT_ARCHITECTURES:
        raise SettingError("arch", f"{arch!r} is for 2-D points ({', '.join(TOY_DATASETS)}), not the images of {data}; "
                                   f"use one of {', '.join(ARCHITECTURES)}")


@dataclass(frozen=True)
class TrainConfig:
    """The settings of one training run, validated once when built (a SettingError names the
    field). `method` is a method's name (or NAME=FILE.py:FUNCTION); its own settings live in
    `method_options` (resolved to the method's full settings on construction, so two configs of
    the same run compare equal); `training_method` is the typed method object. The pseudo-negative
    settings (negatives_per_class, synthesis_*, generator_init) are shared by every method that
    synthesizes negatives (ICN and WINN) and unused by the others."""
    method: str = "winn"
    arch: str = "vanilla"
    data: str = "mnist"
    epochs: int = 200
    batch_size: int = 100
    lr: float = 1e-3
    beta1: float = 0.0
    beta2: float = 0.9
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
    select_by: str = "clean"               # which epoch best.pt holds: clean | pgd | last
    select_eps: float | None = None        # pgd selection budget, [0, 1] pixel units (default: the train eps)
    select_limit: int | None = None        # pgd selection on the first N validation images (default: all)
    method_options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("arch", "data", "generator_init", "select_by"):
            object.__setattr__(self, name, str(getattr(self, name)).strip().lower())
        object.__setattr__(self, "data", {"fashionmnist": "fashion-mnist", "fashion_mnist": "fashion-mnist",
                                          "cifar-10": "cifar10"}.get(self.data, self.data))
        built = make_method(self.method, self.method_options).resolved_for(self.data)
        object.__setattr__(self, "method", built.method_name)
        object.__setattr__(self, "method_options", built.settings())
        object.__setattr__(self, "_method", built)
        if self.arch not in ARCHITECTURES and self.arch not in POINT_ARCHITECTURES:
            raise SettingError("arch", f"{self.arch!r} is unknown; choose one of {', '.join(ARCHITECTURES)} (images) "
                                       f"or {', '.join(POINT_ARCHITECTURES)} (2-D points)")
        check_arch_for_data(self.arch, self.data, built)
        if self.generator_init not in GENERATOR_INITS:
            raise SettingError("generator_init", f"{self.generator_init!r} is unknown; choose one of "
                                                 f"{', '.join(GENERATOR_INITS)}")
        rules = [r.strip() for r in self.select_by.split(",")]
        object.__setattr__(self, "select_by", ",".join(rules))
        unknown = [r for r in rules if r not in SELECT_RULES]
        if unknown or len(set(rules)) != len(rules):
            raise SettingError("select_by", f"{self.select_by!r} must be one rule of {', '.join(SELECT_RULES)} (or a comma "
                                            "list of different ones: the first for best.pt, each other for best-RULE.pt)")
        for name in ("epochs", "batch_size", "lr", "negatives_per_class", "initial_negatives_per_class",
                     "synthesis_lr", "synthesis_max_steps", "val_size"):
            if not getattr(self, name) > 0:
                raise SettingError(name, f"must be positive, got {getattr(self, name)}")
        for name in ("lr", "synthesis_lr", "synthesis_tolerance", "synthesis_ce_weight"):
            if not math.isfinite(getattr(self, name)):
                raise SettingError(name, f"must be a finite number, got {getattr(self, name)}")
        for name in ("beta1", "beta2", "synthesis_beta1", "synthesis_beta2"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise SettingError(name, f"must be in [0, 1), got {getattr(self, name)}")
        for name in ("synthesis_tolerance", "synthesis_ce_weight"):
            if not getattr(self, name) >= 0:
                raise SettingError(name, f"must be >= 0, got {getattr(self, name)}")
        for name in ("train_limit", "select_limit"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise SettingError(name, f"must be positive, got {getattr(self, name)}")
        top = L2_EPS_MAX if self.training_method.threat_norm == "l2" else 1.0
        if self.select_eps is not None and not 0.0 < self.select_eps <= top:
            raise SettingError("select_eps", f"must be in (0, {top:g}] pixel units, got {self.select_eps}")
        if "pgd" in self.select_rules and self.selection_eps is None:
            raise SettingError("select_eps", f"is needed to select by PGD error: {self.method} has no training eps; "
                                             "give the PGD budget in [0, 1] pixel units")

    @property
    def training_method(self) -> TrainingMethod:
        """The typed method object (built and validated once, with the config)."""
        method: TrainingMethod = self.__dict__["_method"]
        return method

    @property
    def select_rules(self) -> tuple[str, ...]:
        """The selection rules: the first picks best.pt, each other one best-RULE.pt."""
        return tuple(self.select_by.split(","))

    @property
    def introspective(self) -> bool:
        """The method synthesizes pseudo-negatives (pool and synthesis pass)."""
        return self.training_method.uses_negatives

    @property
    def selection_eps(self) -> float | None:
        """The budget of PGD model selection: select_eps, else the method's training eps."""
        return self.select_eps if self.select_eps is not None else self.training_method.train_eps

    @property
    def selection_norm(self) -> str:
        """The threat model of PGD model selection: the method's training norm."""
        return self.training_method.threat_norm

    def with_method(self, method: str, options: Mapping[str, Any] | None = None) -> TrainConfig:
        """The same shared settings for another method (how `reproduce` trains every method alike)."""
        return replace(self, method=method, method_options=dict(options or {}))

    def to_dict(self) -> dict[str, Any]:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values["method_options"] = dict(self.method_options)
        return values

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        """From to_dict's output, or from an older checkpoint's flat hparams (alpha and gp_lambda
        were shared fields then: they become the method's own settings)."""
        known = {f.name for f in fields(cls)}
        given = {k: v for k, v in values.items() if k in known}
        if "method_options" not in values:
            owners = settings_owners()
            method = str(values.get("method", cls.method)).lower()
            given["method_options"] = {k: v for k, v in values.items()
                                       if k in ("alpha", "gp_lambda") and method in owners.get(k, [])}
        return cls(**given)
