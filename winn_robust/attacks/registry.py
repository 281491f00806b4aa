"""Attacks by name, built once from the user's options and validated there; the harness only
ever sees `Attack` objects and never special-cases a name.

A name may have one implementation per threat model: `pgd` is our L-inf PGD at --norm linf and
our L2 PGD at --norm l2; `autoattack` and its parts, and most foolbox attacks, take either norm.
An attack without a version at the asked norm (fgsm at l2, fgm at linf) is one UserError."""
from __future__ import annotations

from collections.abc import Iterable, Mapping

from winn_robust.attacks.autoattack_adapter import APGDCE, APGDT, FABT, Square, StandardAutoAttack
from winn_robust.attacks.base import Attack, coerce_options
from winn_robust.attacks.fgsm import FGSM
from winn_robust.attacks.foolbox_adapter import FoolboxBIM, FoolboxDDN, FoolboxDeepFool, FoolboxFGM, FoolboxFGSM, FoolboxFMN, FoolboxPGD
from winn_robust.attacks.pgd import PGD
from winn_robust.attacks.pgd_l2 import FGM, PGDL2
from winn_robust.errors import SettingError, UserError
from winn_robust.units import DEFAULT_NORM, NORM_LABELS, check_norm

_CLASSES: tuple[type[Attack], ...] = (
    FGSM, FGM, PGD, PGDL2, APGDCE, APGDT, FABT, Square, StandardAutoAttack, FoolboxFGSM, FoolboxFGM, FoolboxPGD,
    FoolboxBIM, FoolboxDeepFool, FoolboxFMN, FoolboxDDN)

VARIANTS: dict[str, dict[str, type[Attack]]] = {}   # name -> norm -> class
for _cls in _CLASSES:
    for _norm in _cls.norms:
        VARIANTS.setdefault(_cls.name, {})[_norm] = _cls

# name -> its class at the default norm (L-inf), as before L2 existed; `attacks_for("l2")` lists the L2 names
ATTACKS: dict[str, type[Attack]] = {name: by_norm[DEFAULT_NORM] for name, by_norm in VARIANTS.items()
                                    if DEFAULT_NORM in by_norm}


def attacks_for(norm: str) -> list[str]:
    """The attack names that have a version at `norm`."""
    norm = check_norm(norm)
    return [name for name, by_norm in VARIANTS.items() if norm in by_norm]


def attack_class(name: str, norm: str = DEFAULT_NORM) -> type[Attack]:
    key, norm = name.strip().lower(), check_norm(norm)
    if key not in VARIANTS:
        raise UserError(f"unknown attack {name!r}; choose one of {', '.join(attacks_for(norm))}")
    if norm not in VARIANTS[key]:
        has = ", ".join(NORM_LABELS[n] for n in VARIANTS[key])
        raise UserError(f"attack {key} has no {NORM_LABELS[norm]} version (it is {has} only); at `norm` {norm} "
                        f"choose from {', '.join(attacks_for(norm))}", mentions=("norm",))
    return VARIANTS[key][norm]


def make_attack(name: str, options: Mapping[str, str | int | float | bool] | None = None, seed: int = 0,
                norm: str = DEFAULT_NORM) -> Attack:
    """The attack `name` at `norm` with `options` (strings from the command line are converted)."""
    cls = attack_class(name, norm)
    return cls(seed=seed, norm=check_norm(norm), **coerce_options(cls, options or {}))


def get_attack(name: str, norm: str = DEFAULT_NORM) -> Attack:
    """The attack `name` with its default options."""
    return make_attack(name, norm=norm)


def parse_attack_options(items: Iterable[str]) -> dict[str, dict[str, str]]:
    """`ATTACK.KEY=VALUE` strings (e.g. `pgd.steps=100`) grouped by attack."""
    options: dict[str, dict[str, str]] = {}
    for item in items:
        head, sep, value = item.partition("=")
        attack, dot, key = head.partition(".")
        if not sep or not dot or not attack.strip() or not key.strip():
            raise SettingError("attack_option", f"{item!r} must look like ATTACK.KEY=VALUE, e.g. pgd.steps=100")
        if attack.strip().lower() not in VARIANTS:
            raise UserError(f"unknown attack {attack.strip()!r} in `attack_option` {item!r}; choose one of "
                            f"{', '.join(VARIANTS)}", mentions=("attack_option",))
        options.setdefault(attack.strip().lower(), {})[key.strip()] = value.strip()
    return options
