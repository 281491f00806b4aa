"""The numbers of the WINN paper's Tables 2-4, computed from prediction arrays alone.

Everything here takes integer predictions and labels (never models), so every figure in a
report can be recomputed by hand from `per_example.csv`. Definitions follow
docs/conventions.md exactly:

- adversarial error of A = N_A / N, N_A = #A's own adversarial examples that A misclassifies
  (clean mistakes that stay wrong count);
- correction rate by B of A's mistakes = 1 - N_{A and B} / N_A over A's adversarial examples
  (successes k = A's adversarial mistakes that B gets right, n = N_A);
- 95% exact Clopper-Pearson CI for every rate; exact McNemar (binomial test on the discordant
  pairs) for every paired comparison.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.stats import binomtest, bootstrap

CI_LEVEL = 0.95
DIFFERENCE_RESAMPLES = 2000
DIFFERENCE_SEED = 0

Preds = Mapping[str, np.ndarray]
RunKey = tuple[str, float]  # (attack, eps)
AdvPreds = Mapping[RunKey, Mapping[str, Mapping[str, np.ndarray]]]  # [(attack, eps)][source][target]


@dataclass(frozen=True)
class Rate:
    """k successes out of n with a 95% Clopper-Pearson CI; n == 0 leaves value and CI None
    (reports print "n/a") instead of dividing by zero."""

    k: int
    n: int
    value: float | None
    low: float | None
    high: float | None

    @classmethod
    def of(cls, k: int, n: int) -> Rate:
        k, n = int(k), int(n)
        if not 0 <= k <= n:
            raise ValueError(f"a rate needs 0 <= k <= n, got k={k}, n={n}")
        if n == 0:
            return cls(k, n, None, None, None)
        ci = binomtest(k, n).proportion_ci(CI_LEVEL, method="exact")
        return cls(k, n, k / n, float(ci.low), float(ci.high))

    @property
    def interval(self) -> tuple[float, float, float] | None:
        """(value, low, high) when the rate is defined (n > 0), else None: one check covers all three."""
        if self.value is None or self.low is None or self.high is None:
            return None
        return self.value, self.low, self.high

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class McNemar:
    """Exact McNemar test of a method against the baseline on the same images.
    b = baseline wrong & method right, c = baseline right & method wrong; two-sided p."""

    b: int
    c: int
    pvalue: float

    @classmethod
    def of(cls, b: int, c: int) -> McNemar:
        b, c = int(b), int(c)
        pvalue = 1.0 if b + c == 0 else float(binomtest(b, b + c, 0.5).pvalue)
        return cls(b, c, pvalue)

    @classmethod
    def from_errors(cls, baseline_wrong: np.ndarray, method_wrong: np.ndarray) -> McNemar:
        baseline_wrong, method_wrong = np.asarray(baseline_wrong, bool), np.asarray(method_wrong, bool)
        return cls.of(np.sum(baseline_wrong & ~method_wrong), np.sum(~baseline_wrong & method_wrong))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def error_rate(wrong: np.ndarray) -> Rate:
    wrong = np.asarray(wrong, bool)
    return Rate.of(wrong.sum(), wrong.size)


def correction_rate(source_wrong: np.ndarray, corrector_wrong: np.ndarray) -> Rate:
    """1 - N_{A and B} / N_A on A's adversarial examples: the share of A's mistakes B gets right."""
    source_wrong, corrector_wrong = np.asarray(source_wrong, bool), np.asarray(corrector_wrong, bool)
    return Rate.of(np.sum(source_wrong & ~corrector_wrong), source_wrong.sum())


@dataclass(frozen=True)
class Difference:
    """Method minus baseline error on the same images, with a 95% paired percentile bootstrap
    interval over the images (scipy.stats.bootstrap, fixed seed: reproducible)."""

    value: float
    low: float
    high: float
    resamples: int

    @classmethod
    def of(cls, baseline_wrong: np.ndarray, method_wrong: np.ndarray) -> Difference | None:
        diff = np.asarray(method_wrong, np.int8) - np.asarray(baseline_wrong, np.int8)
        if diff.size == 0:
            return None
        value = float(diff.mean())
        if diff.size < 2 or not diff.any():
            return cls(value, value, value, 0)
        ci = bootstrap((diff.astype(np.float64),), np.mean, n_resamples=DIFFERENCE_RESAMPLES, batch=200,
                       confidence_level=CI_LEVEL, method="percentile", vectorized=True,
                       rng=np.random.default_rng(DIFFERENCE_SEED)).confidence_interval
        return cls(value, float(ci.low), float(ci.high), DIFFERENCE_RESAMPLES)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ModelEpsMetrics:
    """One row of Table 3/4. The correction rates and McNemar tests are None for the baseline."""

    clean_error: Rate
    adv_error: Rate
    correction_by_method: Rate | None
    correction_by_baseline: Rate | None
    mcnemar_clean: McNemar | None
    mcnemar_adv: McNemar | None
    adv_difference: Difference | None = None   # adversarial error minus the baseline's

    def to_dict(self) -> dict[str, Any]:
        return {key: None if value is None else value.to_dict() for key, value in self.__dict__.items()}


@dataclass(frozen=True)
class EpsMetrics:
    """Everything for one attack at one eps, on its n images. `transfer_error[S][T]` is T's error
    on S's adversarial examples (diagonal = adversarial error); `correction[S][T]` is the
    correction rate by T of S's mistakes. Table 3's two correction rates are
    correction[baseline][M] and correction[M][baseline]."""

    attack: str
    eps: float
    n: int
    models: dict[str, ModelEpsMetrics]
    transfer_error: dict[str, dict[str, Rate]]
    correction: dict[str, dict[str, Rate]]

    def to_dict(self) -> dict[str, Any]:
        def matrix(m: dict[str, dict[str, Rate]]) -> dict[str, dict[str, Any]]:
            return {s: {t: r.to_dict() for t, r in row.items()} for s, row in m.items()}
        return {"attack": self.attack, "eps": self.eps, "n": self.n,
                "models": {k: v.to_dict() for k, v in self.models.items()},
                "transfer_error": matrix(self.transfer_error), "correction": matrix(self.correction)}


@dataclass(frozen=True)
class RobustMetrics:
    """The worst case at one eps over every attack run (white-box or transferred from any model),
    on the first n images, where every attack at this eps ran: robust error = the fraction of
    images the model gets wrong clean or on at least one adversarial example."""

    eps: float
    n: int
    attacks: tuple[str, ...]
    error: dict[str, Rate]
    mcnemar: dict[str, McNemar]   # methods only, against the baseline

    def to_dict(self) -> dict[str, Any]:
        return {"eps": self.eps, "n": self.n, "attacks": list(self.attacks),
                "error": {k: v.to_dict() for k, v in self.error.items()},
                "mcnemar": {k: v.to_dict() for k, v in self.mcnemar.items()}}


@dataclass(frozen=True)
class Metrics:
    """Tables 2-4 for every attack and eps, and the robust error. `models` is the row order:
    baseline first."""

    baseline: str
    n: int
    models: tuple[str, ...]
    clean_error: dict[str, Rate]
    mcnemar_clean: dict[str, McNemar]  # methods only, each against the baseline
    by_run: dict[RunKey, EpsMetrics]
    robust: dict[float, RobustMetrics]

    @property
    def attacks(self) -> list[str]:
        return list(dict.fromkeys(attack for attack, _ in self.by_run))

    def for_attack(self, attack: str) -> dict[float, EpsMetrics]:
        return {eps: m for (a, eps), m in self.by_run.items() if a == attack}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (runs as list entries, not keys; undefined values as None)."""
        return {"baseline": self.baseline, "n": self.n, "models": list(self.models),
                "clean_error": {k: v.to_dict() for k, v in self.clean_error.items()},
                "mcnemar_clean": {k: v.to_dict() for k, v in self.mcnemar_clean.items()},
                "runs": [m.to_dict() for m in self.by_run.values()],
                "robust": [m.to_dict() for m in self.robust.values()]}


def _model_order(names: list[str], baseline: str) -> tuple[str, ...]:
    if baseline not in names:
        raise ValueError(f"baseline {baseline!r} is not among the models {names}")
    return (baseline, *[name for name in names if name != baseline])


def _check_inputs(labels: np.ndarray, clean_preds: Preds, adv_preds: AdvPreds, names: tuple[str, ...]) -> None:
    n = labels.shape[0]
    for name, preds in clean_preds.items():
        if np.shape(preds) != (n,):
            raise ValueError(f"clean predictions of {name!r} have shape {np.shape(preds)}, expected ({n},)")
    for run, by_source in adv_preds.items():
        if set(by_source) != set(names):
            raise ValueError(f"{run}: adversarial sources {sorted(by_source)} differ from models {sorted(names)}")
        sizes = {np.shape(preds) for row in by_source.values() for preds in row.values()}
        for source, by_target in by_source.items():
            if set(by_target) != set(names):
                raise ValueError(f"{run}, source {source!r}: targets {sorted(by_target)} differ from models")
        if len(sizes) != 1 or len(next(iter(sizes))) != 1 or next(iter(sizes))[0] > n:
            raise ValueError(f"{run}: prediction arrays must share one length of at most {n}, got {sorted(sizes)}")


def run_metrics(attack: str, eps: float, labels: np.ndarray, clean_wrong: Mapping[str, np.ndarray],
                by_source: Mapping[str, Mapping[str, np.ndarray]], names: tuple[str, ...], baseline: str) -> EpsMetrics:
    """Table 3/4 and the matrices for one attack at one eps, on the first len(predictions) images."""
    n = len(next(iter(next(iter(by_source.values())).values())))
    labels = labels[:n]
    wrong = {s: {t: np.asarray(by_source[s][t]) != labels for t in names} for s in names}
    transfer = {s: {t: error_rate(wrong[s][t]) for t in names} for s in names}
    correction = {s: {t: correction_rate(wrong[s][s], wrong[s][t]) for t in names} for s in names}
    rows = {}
    for m in names:
        is_base = m == baseline
        rows[m] = ModelEpsMetrics(
            clean_error=error_rate(clean_wrong[m][:n]),
            adv_error=transfer[m][m],
            correction_by_method=None if is_base else correction[baseline][m],
            correction_by_baseline=None if is_base else correction[m][baseline],
            mcnemar_clean=None if is_base else McNemar.from_errors(clean_wrong[baseline][:n], clean_wrong[m][:n]),
            mcnemar_adv=None if is_base else McNemar.from_errors(wrong[baseline][baseline], wrong[m][m]),
            adv_difference=None if is_base else Difference.of(wrong[baseline][baseline], wrong[m][m]))
    return EpsMetrics(attack, float(eps), n, rows, transfer, correction)


def worst_case_wrong(labels: np.ndarray, clean_preds: Preds, adv_preds: AdvPreds) -> dict[float, dict[str, np.ndarray]]:
    """Per eps and model: wrong clean or on any adversarial example (any attack, any source), on the
    first n images where every attack at that eps ran. The `worst[eps=E]:M` columns of per_example.csv."""
    out: dict[float, dict[str, np.ndarray]] = {}
    names = list(clean_preds)
    for eps in dict.fromkeys(e for _, e in adv_preds):
        runs = [by_source for (_, e), by_source in adv_preds.items() if e == eps]
        n = min(len(next(iter(r.values()))[names[0]]) for r in runs)
        out[float(eps)] = {}
        for model in names:
            wrong = np.asarray(clean_preds[model])[:n] != labels[:n]
            for by_source in runs:
                for source in names:
                    wrong = wrong | (np.asarray(by_source[source][model])[:n] != labels[:n])
            out[float(eps)][model] = wrong
    return out


def compute_metrics(labels: np.ndarray, clean_preds: Preds, adv_preds: AdvPreds, baseline: str) -> Metrics:
    """Tables 2-4 plus the full transfer and correction matrices for every attack and eps, and the
    robust (worst-case) error per eps.

    labels: (N,) ints; clean_preds[model]: (N,); adv_preds[(attack, eps)][source][target]: (n,) =
    target's prediction on source's adversarial example of each of the first n images."""
    labels = np.asarray(labels)
    names = _model_order(list(clean_preds), baseline)
    _check_inputs(labels, clean_preds, adv_preds, names)
    clean_wrong = {m: np.asarray(clean_preds[m]) != labels for m in names}
    clean_error = {m: error_rate(clean_wrong[m]) for m in names}
    mcnemar_clean = {m: McNemar.from_errors(clean_wrong[baseline], clean_wrong[m]) for m in names[1:]}
    by_run = {(attack, float(eps)): run_metrics(attack, float(eps), labels, clean_wrong, by_source, names, baseline)
              for (attack, eps), by_source in adv_preds.items()}
    robust = {}
    for eps, wrong in worst_case_wrong(labels, clean_preds, adv_preds).items():
        attacks = tuple(a for a, e in adv_preds if e == eps)
        robust[eps] = RobustMetrics(eps, len(wrong[baseline]), attacks, {m: error_rate(wrong[m]) for m in names},
                                    {m: McNemar.from_errors(wrong[baseline], wrong[m]) for m in names[1:]})
    return Metrics(baseline, int(labels.shape[0]), names, clean_error, mcnemar_clean, by_run, robust)
