"""What an evaluation is asked to do, validated once where it is built.

The harness and the attacks trust an `EvalSpec`: eps values are in [0, 1] pixel units and
de-duplicated (the first one is the table eps), the attacks exist with valid options, the batch
size and limits are positive. Each attack runs at every eps on the first `limit` images unless
`attack_limits` / `attack_eps` narrow it (strong attacks on a subset, at the table eps only).

`norm` is the threat model (linf or l2) of every attack and eps; `curve` an optional
minimum-norm attack run once, unbounded, on the first `curve_limit` images (None = all
evaluated), whose per-image smallest perturbation gives the robust error at every eps."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from winn_robust.attacks import Attack, attack_class, make_attack
from winn_robust.errors import SettingError, UserError
from winn_robust.units import DEFAULT_NORM, NORM_LABELS, check_eps, check_norm

CURVE_ATTACKS = {"fmn": "foolbox-fmn", "ddn": "foolbox-ddn", "deepfool": "foolbox-deepfool"}

SPEC_VERSION = 1  # of EvalSpec.to_dict(): bump when a key changes meaning


@dataclass(frozen=True)
class AttackRun:
    """One attack at one eps on the first `n` evaluated images (None = all of them)."""
    attack: Attack
    eps: float
    n: int | None

    @property
    def key(self) -> tuple[str, float]:
        return self.attack.name, self.eps


@dataclass(frozen=True)
class EvalSpec:
    eps: tuple[float, ...]
    attacks: tuple[Attack, ...] = ()
    batch_size: int = 500
    limit: int | None = None
    seed: int = 0
    attack_limits: Mapping[str, int] = field(default_factory=dict)
    attack_eps: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    probes: bool = True
    norm: str = DEFAULT_NORM
    curve: Attack | None = None
    curve_limit: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.eps, (int, float)):
            raise UserError("EvalSpec.eps is a sequence of eps values, e.g. eps=(0.125,)")
        norm = check_norm(self.norm)
        object.__setattr__(self, "norm", norm)
        eps = tuple(dict.fromkeys(check_eps(e, norm) for e in self.eps))  # de-duplicated, the user's order
        if not eps:
            raise UserError("give at least one eps")
        object.__setattr__(self, "eps", eps)
        attacks = self.attacks or (make_attack("fgsm" if norm == "linf" else "fgm", seed=self.seed, norm=norm),)
        wrong_norm = [a.name for a in (*attacks, *([self.curve] if self.curve else [])) if a.norm != norm]
        if wrong_norm:
            raise UserError(f"attack(s) {', '.join(wrong_norm)} were built for another norm than this evaluation's "
                            f"{NORM_LABELS[norm]}; build them with norm={norm!r}")
        if self.curve is not None and not self.curve.minimum_norm:
            raise SettingError("curve", f"{self.curve.name} is not a minimum-norm attack; use fmn (foolbox-fmn), ddn "
                            "(foolbox-ddn, L2) or foolbox-deepfool")
        if self.curve_limit is not None and int(self.curve_limit) < 1:
            raise SettingError("curve_limit", f"must be positive, got {self.curve_limit}")
        names = [a.name for a in attacks]
        if len(set(names)) != len(names):
            raise UserError(f"attack listed twice in {', '.join(names)}; give each attack once")
        object.__setattr__(self, "attacks", tuple(attacks))
        if int(self.batch_size) < 1:
            raise SettingError("batch_size", f"must be positive, got {self.batch_size}")
        if self.limit is not None and int(self.limit) < 1:
            raise SettingError("limit", f"must be positive, got {self.limit}")
        for name, n in self.attack_limits.items():
            if name not in names:
                raise SettingError("attack_limit", f"names {name!r}, which is not among the attacks ({', '.join(names)})")
            if int(n) < 1:
                raise SettingError("attack_limit", f"{name}={n} must be positive")
        checked_eps = {}
        for name, values in self.attack_eps.items():
            if name not in names:
                raise UserError(f"attack eps given for {name!r}, which is not among the attacks ({', '.join(names)})")
            chosen = tuple(dict.fromkeys(check_eps(e, norm) for e in values))
            missing = [e for e in chosen if e not in eps]
            if missing or not chosen:
                raise UserError(f"eps {missing or list(values)} for attack {name} must be among the evaluation's eps {list(eps)}")
            checked_eps[name] = chosen
        object.__setattr__(self, "attack_limits", MappingProxyType(dict(self.attack_limits)))
        object.__setattr__(self, "attack_eps", MappingProxyType(checked_eps))

    @classmethod
    def build(cls, eps: Iterable[float], attacks: Iterable[str | Attack] = ("fgsm",),
              options: Mapping[str, Mapping[str, Any]] | None = None, seed: int = 0, norm: str = DEFAULT_NORM,
              curve: str | Attack | None = None, **rest: Any) -> EvalSpec:
        """From attack names (with `options[name]`) or Attack objects, all at `norm`; `curve` a
        minimum-norm attack by curve name (fmn, ddn) or attack name, or an Attack."""
        options = options or {}
        norm = check_norm(norm)
        curve_name = CURVE_ATTACKS.get(curve.strip().lower(), curve.strip().lower()) if isinstance(curve, str) else None
        used = [a if isinstance(a, str) else a.name for a in attacks] + ([curve_name] if curve_name else [])
        unknown = [name for name in options if name not in used]
        if unknown:
            raise SettingError("options", f"given for attack(s) {', '.join(unknown)} that are not run; add them to `attacks`",
                               mentions=("attacks",))
        built = tuple(a if not isinstance(a, str) else make_attack(a, options.get(a.strip().lower()), seed, norm)
                      for a in attacks)
        curve_attack = make_attack(curve_name, options.get(curve_name), seed, norm) if curve_name else \
            (curve if isinstance(curve, Attack) else None)
        return cls(eps=tuple(eps), attacks=built, seed=seed, norm=norm, curve=curve_attack, **rest)

    @property
    def table_eps(self) -> float:
        """The eps of the headline tables: the first one given."""
        return self.eps[0]

    @property
    def ordered_eps(self) -> tuple[float, ...]:
        """The table eps first, then the rest ascending (the order reports use)."""
        return (self.table_eps, *sorted(e for e in self.eps if e != self.table_eps))

    @property
    def attack_names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.attacks)

    @property
    def runs(self) -> tuple[AttackRun, ...]:
        """Every (attack, eps) pair this evaluation runs, attack by attack, eps in report order."""
        out = []
        for attack in self.attacks:
            for eps in self.ordered_eps:
                if eps in self.attack_eps.get(attack.name, self.eps):
                    limit = self.attack_limits.get(attack.name)
                    n = limit if self.limit is None else (self.limit if limit is None else min(limit, self.limit))
                    out.append(AttackRun(attack, eps, n))
        return tuple(out)

    def describe(self) -> dict[str, Any]:
        """JSON-ready: what ran, with every setting (recorded in results.json and table.md). The
        norm and the curve appear only when used (L-inf records read as they always did)."""
        out: dict[str, Any] = {
            "eps": list(self.eps), "table_eps": self.table_eps, "batch_size": self.batch_size, "limit": self.limit,
            "seed": self.seed, "attacks": [a.settings() for a in self.attacks],
            "attack_limits": dict(self.attack_limits), "attack_eps": {k: list(v) for k, v in self.attack_eps.items()}}
        if self.norm != DEFAULT_NORM:
            out["norm"] = self.norm
        if self.curve is not None:
            out["curve"] = {**self.curve.settings(), "limit": self.curve_limit}
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready and complete: `EvalSpec.from_dict(spec.to_dict())` is the same evaluation
        (attacks by registry name with every setting; how `reproduce` hands an evaluation to a job)."""
        return {"version": SPEC_VERSION, "eps": list(self.eps), "attacks": [a.settings() for a in self.attacks],
                "batch_size": self.batch_size, "limit": self.limit, "seed": self.seed,
                "attack_limits": dict(self.attack_limits), "attack_eps": {k: list(v) for k, v in self.attack_eps.items()},
                "probes": self.probes, "norm": self.norm,
                "curve": None if self.curve is None else self.curve.settings(), "curve_limit": self.curve_limit}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> EvalSpec:
        """The inverse of `to_dict`, validated like any other EvalSpec; another version is refused."""
        if values.get("version") != SPEC_VERSION:
            raise UserError(f"evaluation settings of version {values.get('version')!r}, but this winn-robust reads version "
                            f"{SPEC_VERSION}; write them again with this version")
        norm = str(values.get("norm", DEFAULT_NORM))

        def built(settings: Mapping[str, Any]) -> Attack:
            options = {k: v for k, v in settings.items() if k != "attack"}
            try:
                return attack_class(str(settings.get("attack", "")), str(options.get("norm", norm)))(**options)
            except TypeError as exc:
                raise UserError(f"attack settings {dict(settings)} do not fit attack {settings.get('attack')!r}: {exc}") from None

        attacks = [built(settings) for settings in values.get("attacks", [])]
        curve = values.get("curve")
        return cls(eps=tuple(values["eps"]), attacks=tuple(attacks), batch_size=int(values["batch_size"]),
                   limit=values.get("limit"), seed=int(values.get("seed", 0)),
                   attack_limits=dict(values.get("attack_limits") or {}),
                   attack_eps={k: tuple(v) for k, v in (values.get("attack_eps") or {}).items()},
                   probes=bool(values.get("probes", True)), norm=norm, curve=built(curve) if curve else None,
                   curve_limit=values.get("curve_limit"))
