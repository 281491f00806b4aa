"""Training methods by name, built once from their settings and validated there; the trainer
only ever sees `TrainingMethod` objects. `NAME=FILE.py:FUNCTION` is a user's own method."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from winn_robust.errors import SettingError
from winn_robust.training.methods.adversarial import PGDAT, PUBLISHED, TRADES, FastAT
from winn_robust.training.methods.base import TrainingMethod, coerce_settings
from winn_robust.training.methods.introspective import ICN, WINN, Baseline
from winn_robust.training.methods.user import UserMethod

METHOD_CLASSES: dict[str, type[TrainingMethod]] = {cls.name: cls for cls in (Baseline, ICN, WINN, PGDAT, TRADES, FastAT)}
METHODS = tuple(METHOD_CLASSES)  # the supervised methods (`reproduce` trains these); METHOD_CLASSES has every one


def register_method(cls: type[TrainingMethod]) -> type[TrainingMethod]:
    """Add a method class to the registry (the generative methods register themselves this way, from
    training/generative, which imports this package and not the other way round)."""
    METHOD_CLASSES[cls.name] = cls
    return cls


def split_method_spec(text: str) -> tuple[str, str | None]:
    """`NAME` or `NAME=FILE.py:FUNCTION` -> (name, source or None); names are case-insensitive."""
    name, sep, source = str(text).strip().partition("=")
    if sep:
        return name.strip(), source.strip()
    return name.strip().lower(), None


def method_class(name: str) -> type[TrainingMethod]:
    key = name.strip().lower()
    if key not in METHOD_CLASSES:
        raise SettingError("method", f"{name!r} is unknown; choose one of {', '.join(METHOD_CLASSES)}, or give your own as "
                                     "NAME=FILE.py:FUNCTION")
    return METHOD_CLASSES[key]


def make_method(spec: str, settings: Mapping[str, Any] | None = None) -> TrainingMethod:
    """The method `spec` (a name, or NAME=FILE.py:FUNCTION) with `settings` (strings are converted).
    A stored user method (settings holding its `source`) is rebuilt from its settings."""
    settings = dict(settings or {})
    name, source = split_method_spec(spec)
    if source is None and name not in METHOD_CLASSES and settings.get("source"):
        source = str(settings["source"])
    if source is not None:
        options = coerce_settings(UserMethod, {k: v for k, v in settings.items() if k not in ("label", "source")})
        return UserMethod.from_spec(name, source, options)
    cls = method_class(name)
    return cls(**coerce_settings(cls, settings))


def published_settings(name: str) -> tuple[str, dict[str, Any]]:
    """A paper's published settings (`madry-mnist`, `trades-cifar10`, ...): (method, settings)."""
    key = name.strip().lower()
    if key not in PUBLISHED:
        raise SettingError("method_preset", f"{name!r} is unknown; choose one of {', '.join(PUBLISHED)}")
    method, values = PUBLISHED[key]
    return method, dict(values)


def settings_owners() -> dict[str, list[str]]:
    """Each setting name and the methods that have it (for --help and for refusing a setting the
    chosen method does not have)."""
    from dataclasses import fields

    owners: dict[str, list[str]] = {}
    classes: list[type[TrainingMethod]] = [*METHOD_CLASSES.values(), UserMethod]
    for cls in classes:
        for f in fields(cls):
            owners.setdefault(f.name, []).append(cls.name)
    return owners


SETTING_HELP = {
    "alpha": "weight of the introspective term (paper: 0.01)",
    "gp_lambda": "gradient-penalty weight lambda (paper: 10)",
    "eps": "training budget in [0, 1] pixel units, a decimal or a fraction (MNIST: 0.3; CIFAR-10: 8/255) "
           "[default in reproduce: the table eps]",
    "steps": "inner attack steps K (default 10)",
    "step_size": "inner step in [0, 1] pixel units; 0 = 2.5 * eps / K (default 0)",
    "ramp_epochs": "grow the training eps linearly from 0 over this many epochs (default 0: no ramp)",
    "norm": "threat model of the training budget and the inner attack: linf or l2 (an L2 eps is the L2 norm of the "
            "perturbation of the [0, 1] image) [default: linf; in reproduce: --norm]",
    "beta": "weight of the KL term (official CIFAR-10 script: 6, the default; MNIST script: 1)",
    "step_factor": "the FGSM step in units of eps (paper: 1.25)",
    "cascades": "number of cascaded critics K; 1 = WINN-single (paper: 4; digits: 2)",
    "iterations": "winn-gen: iterations per cascade (critic passes then a synthesis; paper: 100; digits: 20); "
                  "wgan-gp: generator iterations (reference: 200000; digits: 1400; fashion-mnist: 3000)",
    "critic_passes": "critic passes over the iteration's images (paper: 3)",
    "positives": "positives per iteration, times min(iteration + 1, growth) (paper: 1000; digits: 250)",
    "growth": "the positives' growth cap (paper: 5)",
    "negatives": "pseudo-negatives synthesized per iteration (paper: 1000; digits: 250)",
    "last_negatives": "pseudo-negatives synthesized in a cascade's last iteration (paper: 10000; digits: 1000)",
    "initial_negatives": "starting images from the Appendix D noise network (paper: 10000; digits: 1000)",
    "critic_lr": "critic Adam learning rate (paper: 1e-4; wgan-gp on digits: 1e-3; iwgan on the toys: 3e-4)",
    "generator_lr": "generator Adam learning rate (reference: 1e-4; wgan-gp on digits: 1e-3; iwgan: the generator's and "
                    "encoder's, 3e-4 on the toys)",
    "lr_decay": "true: both learning rates fall linearly to 0 over the run (iwgan on the toys: true; else false)",
    "log_every": "generator iterations per metrics.csv row and last.pt checkpoint (default: 100)",
    "n_critic": "critic steps per generator iteration (reference: 5; iwgan: then as many generator and encoder steps)",
    "gan_beta1": "Adam beta1 of the generator and critic (reference: 0.5)",
    "gan_beta2": "Adam beta2 of the generator and critic (reference: 0.9)",
    "gan_batch": "real images (and fakes) per critic and generator step (reference: 64)",
    "latent_dim": "generator latent dimension, z ~ N(0, I) (reference: 128; iwgan: the paper's 5 for the toys, 8 for "
                  "MNIST-like and digits, else 64)",
    "generator_width": "the generator's last hidden width W, doubled per layer towards 4x4 (reference DIM: 64; "
                       "CIFAR-10: 128)",
    "ascent_lr": "synthesis Adam learning rate on the images (paper: 0.01)",
    "ascent_beta1": "synthesis Adam beta1 (paper: 0.9)",
    "ascent_beta2": "synthesis Adam beta2 (official code: 0.999)",
    "ascent_max_steps": "step budget of one synthesis batch (paper: 2000; digits: 500)",
    "steps_per_iteration": "Algorithm-1 outer loops per metrics row (toys: 55 x 10 rows; digits: 30 x 15 "
                           "rows; else 1000 x 100 rows)",
    "mmd_lambda": "weight lambda2 of the MMD penalty pulling Q(x) towards N(0, I) (default 1)",
    "gap_steps": "inner Adam steps of each duality-gap probe on held-out batches (default 10)",
    "gap_lr": "learning rate of the duality-gap probes (default: the training ones)",
    "gap_batch": "held-out points of the batch the primal value and the gap are measured on (default 512)",
    "stop_gap": "stop once the duality gap stayed below this for stop_patience rows (default: none, full budget)",
    "stop_patience": "rows in a row the gap must stay below --stop-gap (default 3)",
}

# the flag of each method setting on the command line (the CLI and the jobs that rebuild one)
CLI_FLAGS = {"alpha": "--alpha", "gp_lambda": "--gp-lambda", "eps": "--train-eps", "steps": "--train-steps",
             "step_size": "--train-step-size", "ramp_epochs": "--eps-ramp-epochs", "norm": "--train-norm",
             "beta": "--beta", "step_factor": "--fast-step-factor", "cascades": "--cascade", "iterations": "--iterations",
             "critic_passes": "--critic-passes", "positives": "--positives", "growth": "--growth",
             "negatives": "--negatives", "last_negatives": "--last-negatives", "initial_negatives": "--initial-negatives",
             "critic_lr": "--critic-lr", "ascent_lr": "--ascent-lr", "ascent_beta1": "--ascent-beta1",
             "ascent_beta2": "--ascent-beta2", "ascent_max_steps": "--ascent-max-steps",
             "generator_lr": "--generator-lr", "log_every": "--log-every", "n_critic": "--n-critic",
             "gan_beta1": "--gan-beta1", "gan_beta2": "--gan-beta2", "gan_batch": "--gan-batch",
             "latent_dim": "--latent-dim", "generator_width": "--generator-width",
             "steps_per_iteration": "--steps-per-iteration", "mmd_lambda": "--mmd-lambda", "gap_steps": "--gap-steps",
             "gap_lr": "--gap-lr", "gap_batch": "--gap-batch", "stop_gap": "--stop-gap",
             "stop_patience": "--stop-patience", "lr_decay": "--lr-decay"}
