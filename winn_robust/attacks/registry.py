"""Attacks by name, built once from the user's options and validated there; the harness only
ever sees `Attack` objects and never special-cases a name."""
from __future__ import annotations

from collections.abc import Iterable, Mapping

from winn_robust.attacks.autoattack_adapter import APGDCE, APGDT, FABT, Square, StandardAutoAttack
from winn_robust.attacks.base import Attack, coerce_options
from winn_robust.attacks.fgsm import FGSM
from winn_robust.attacks.foolbox_adapter import FoolboxBIM, FoolboxDeepFool, FoolboxFGSM, FoolboxPGD
from winn_robust.attacks.pgd import PGD
from winn_robust.errors import UserError

ATTACKS: dict[str, type[Attack]] = {cls.name: cls for cls in (
    FGSM, PGD, APGDCE, APGDT, FABT, Square, StandardAutoAttack, FoolboxFGSM, FoolboxPGD, FoolboxBIM, FoolboxDeepFool)}


def attack_class(name: str) -> type[Attack]:
    key = name.strip().lower()
    if key not in ATTACKS:
        raise UserError(f"unknown attack {name!r}; choose one of {', '.join(ATTACKS)}")
    return ATTACKS[key]


def make_attack(name: str, options: Mapping[str, str | int | float | bool] | None = None, seed: int = 0) -> Attack:
    """The attack `name` with `options` (strings from the command line are converted)."""
    cls = attack_class(name)
    return cls(seed=seed, **coerce_options(cls, options or {}))


def get_attack(name: str) -> Attack:
    """The attack `name` with its default options."""
    return make_attack(name)


def parse_attack_options(items: Iterable[str]) -> dict[str, dict[str, str]]:
    """`ATTACK.KEY=VALUE` strings (e.g. `pgd.steps=100`) grouped by attack."""
    options: dict[str, dict[str, str]] = {}
    for item in items:
        head, sep, value = item.partition("=")
        attack, dot, key = head.partition(".")
        if not sep or not dot or not attack.strip() or not key.strip():
            raise UserError(f"--attack-option {item!r} must look like ATTACK.KEY=VALUE, e.g. pgd.steps=100")
        attack_class(attack)
        options.setdefault(attack.strip().lower(), {})[key.strip()] = value.strip()
    return options
