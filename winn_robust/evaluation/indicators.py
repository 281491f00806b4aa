"""Can these numbers be trusted? Failure indicators of a robustness evaluation, per model and eps.

Each indicator is a measured value, a threshold, PASS or WARN, and one line of advice. They are
anchored in AutoAttack's flags (Croce and Hein 2020), the checklist of Carlini et al. 2019 ("On
Evaluating Adversarial Robustness") and Pintor et al. 2022 ("Indicators of Attack Failure"). A
WARN does not say the model is not robust; it says this evaluation may overstate how robust it
is, and what to run to find out. Indicators whose evidence was not collected say N/A and which
attack would collect it.

Everything here reads a `CrossEvalResult` (predictions, probes, loss traces, captured notes)
and what the attacks declare about themselves; nothing is attacked again. As AutoAttack's
autoattack/checks.py, each check is one function: `check(evidence, target)` returns the
indicators of one model (and eps), none when it does not apply. `CHECKS` lists them with the
targets they run over, in report order. Checks that compare attacks group them by their class
attributes (`gradient_based`, `gradient_free`, `iterative`: winn_robust/attacks/base.py), never
by their names."""
from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Any, TypeAlias

import numpy as np

from winn_robust.attacks.base import Attack
from winn_robust.evaluation.curves import CURVE_BEATS_FIXED_MAX, beats_fixed
from winn_robust.evaluation.harness import CrossEvalResult
from winn_robust.evaluation.metrics import worst_case_wrong
from winn_robust.units import DEFAULT_NORM, NORM_LABELS, eps_text, image_diagonal

PASS, WARN, NA = "PASS", "WARN", "N/A"

ZERO_GRADIENT_MAX = 0.01          # fraction of probed images with an all-zero input gradient
PROBABILITY_MAX = 0.5             # fraction of probed images whose outputs are a probability vector
RANDOMNESS_MAX = 1e-4             # AutoAttack's check_randomized alpha
GRADIENT_FREE_MAX = 0.002         # AutoAttack's check_square_sr alpha
TRANSFER_MAX = 0.01
SINGLE_STEP_GAP_MAX = 0.3  # 30 points more images fooled by iterative than single-step attacks
SINGLE_STEP_MAX = 0.01
MONOTONE_DROP_MAX = 0.01          # largest fall of the error between consecutive eps
UNBOUNDED_MIN = 0.98              # error of an eps = 1 (L-inf) / eps = sqrt(C*H*W) (L2) attack
INCOMPLETE_RISE_MAX = 0.05        # share of PGD's loss rise that came in its last 20% of steps
CHANCE_SHARE_MAX = 0.5            # clean error above this share of chance error (1 - 1/classes): barely learned
VALIDATION_EXCESS_MAX = 0.15      # clean error above 2 x the checkpoint's validation error + this
CONVENTION_GAIN_MAX = 0.20        # another input convention cuts the probe batch's clean error by more
GRADIENT_FREE_TO_RUN = "square"   # the gradient-free attack the N/A advice suggests (AutoAttack's)
RANGE_ADVICE = {
    "fewer": "the model does far better when given [0, 1] images: it was trained on [0, 1] but its forward (or "
             "wrapper) converts them to [-1, 1] again (the x*2-1 mistake); external models (FILE.py:FUNCTION, "
             "TorchScript) receive [0, 1] images from winn-robust, so remove that conversion",
    "more": "the model does far better on [-1, 1] inputs: it was trained on [-1, 1] but external models receive [0, 1] "
            "images; start its forward with x = 2 * x - 1 (winn-robust's own checkpoints are converted already)",
    "standardised": "the model does far better on mean/std-normalised inputs: it was trained on (x - mean) / std; pass "
                    "--input-mean and --input-std (per channel, of [0, 1] pixels, e.g. ImageNet's 0.485,0.456,0.406 "
                    "and 0.229,0.224,0.225) so winn-robust normalises the [0, 1] images it gives the model",
}


@dataclass(frozen=True)
class Indicator:
    indicator: str          # stable id, e.g. "zero-gradients"
    title: str
    model: str
    eps: float | None       # None: a property of the model, measured once
    attack: str | None
    value: float | None
    threshold: float
    status: str             # PASS, WARN or N/A
    advice: str
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Indicator:
        """A results.json record as written; fields an older or hand-edited record lacks read as
        empty (values are kept as the file holds them, so a rebuilt table prints them alike)."""
        defaults: dict[str, Any] = {"indicator": "unnamed indicator", "title": "", "model": "", "eps": None,
                                    "attack": None, "value": None, "threshold": float("nan"), "status": "", "advice": "",
                                    "detail": ""}
        return cls(**{**defaults, **{k: values[k] for k in defaults if k in values}})


# ----------------------------------------------------------------------------- what the checks read
AttackLike: TypeAlias = "Attack | type[Attack] | Mapping[str, bool]"


@dataclass(frozen=True)
class Declared:
    """What an attack declares about itself (its class attributes), as far as the checks care."""
    gradient_based: bool
    gradient_free: bool
    iterative: bool

    @classmethod
    def of(cls, attack: AttackLike) -> Declared:
        """From an attack (object or class), or from the older mapping {"gradient_based", "iterative"}, where
        an attack that is not gradient-based uses no gradient (true of every registered attack)."""
        if isinstance(attack, Mapping):
            based = bool(attack["gradient_based"])
            return cls(based, bool(attack.get("gradient_free", not based)), bool(attack["iterative"]))
        return cls(attack.gradient_based, attack.gradient_free, attack.iterative)


@dataclass(frozen=True)
class Target:
    """What one call of a check looks at: a model, and the eps (and attack) when it is per run."""
    model: str
    eps: float | None = None
    attack: str | None = None


@dataclass
class Evidence:
    """Everything the checks read: the result, the attacks' declarations by name, the robust error
    per model and eps, the checkpoints' validation errors and the number of classes."""
    result: CrossEvalResult
    attacks: Mapping[str, Declared]
    robust_error: Mapping[str, Mapping[float, float]]
    expected_error: Mapping[str, float | None]
    num_classes: int

    def runs(self, eps: float, **declared: bool) -> list[str]:
        """The attacks run at eps whose declarations match, e.g. `runs(eps, gradient_free=True)`."""
        return [a for a in whitebox_runs(self.result, eps)
                if all(getattr(self.attacks[a], key) == want for key, want in declared.items())]

    def n(self, eps: float) -> int:
        """The images every attack at eps ran on (the first n)."""
        return min(self.result.run_sizes[(a, eps)] for a in whitebox_runs(self.result, eps))

    def fooled(self, attacks: list[str], eps: float, model: str, sources: list[str] | None = None) -> np.ndarray:
        """Per image of the first n: did any of `attacks`, crafted on `sources` (default the model), fool it."""
        n = self.n(eps)
        return np.any([_fooled(self.result, a, eps, s, model, n) for a in attacks for s in sources or [model]], axis=0)

    def fooled_only_by(self, eps: float, model: str, by: list[str], not_by: list[str], by_text: str, not_by_text: str,
                       sources: list[str] | None = None) -> tuple[float, str]:
        """The comparison behind the attack-against-attack checks: the share of the first n images
        that `by` (crafted on `sources`, default the model) fools and `not_by` (crafted on the
        model) does not, and the detail line that counts them."""
        n = self.n(eps)
        extra = self.fooled(by, eps, model, sources) & ~self.fooled(not_by, eps, model)
        return _share(extra, n), f"{int(extra.sum())} of {n} images fooled by {by_text} and by {not_by_text}"

    @cached_property
    def worst(self) -> dict[float, dict[str, np.ndarray]]:
        return worst_case_wrong(self.result.labels, self.result.clean_preds, self.result.adv_preds)


def _status(value: float | None, threshold: float, warn_above: bool = True) -> str:
    if value is None:
        return NA
    return WARN if (value > threshold if warn_above else value < threshold) else PASS


def _fooled(result: CrossEvalResult, attack: str, eps: float, source: str, target: str, n: int) -> np.ndarray:
    preds = result.adv_preds[(attack, eps)][source][target][:n]
    return preds != result.labels[:n]


def _share(extra: np.ndarray, n: int) -> float:
    return float(extra.mean()) if n else 0.0


def _eps(at: Target) -> float:
    assert at.eps is not None, "a per-eps check run on a per-model target"
    return at.eps


def unbounded_text(result: CrossEvalResult) -> tuple[float, str]:
    """The unbounded probe's eps and its description at the result's norm."""
    if result.norm == DEFAULT_NORM:
        return 1.0, "eps = 1"
    shape = tuple(result.example_images.shape[1:]) if result.example_images is not None else ()
    eps = image_diagonal(shape) if shape else float("nan")
    return eps, f"L2 eps = image diagonal {eps:.4g}"


def whitebox_runs(result: CrossEvalResult, eps: float) -> list[str]:
    return [attack for (attack, e) in result.adv_preds if e == eps]


# ----------------------------------------------------------------------------- the model's inputs
def clean_error_too_high(ev: Evidence, at: Target) -> list[Indicator]:
    """A clean error near chance, or far above the checkpoint's own validation error, usually means
    the inputs are in the wrong convention. WARN above 2 x validation error + 0.15, or, unknown,
    above half of chance error (1 - 1/classes)."""
    preds = ev.result.clean_preds[at.model]
    error = float((preds != ev.result.labels).mean()) if len(preds) else None
    chance = 1 - 1 / max(ev.num_classes, 2)
    expected = ev.expected_error.get(at.model)
    if expected is not None:
        threshold = 2 * expected + VALIDATION_EXCESS_MAX
        detail = f"validation error {100 * expected:.2f}% in its checkpoint"
    else:
        threshold = CHANCE_SHARE_MAX * chance
        detail = f"chance error {100 * chance:.1f}% with {ev.num_classes} classes; no validation error known"
    return [Indicator(
        "clean-error-too-high", "clean error far above expected", at.model, None, None, error, threshold,
        _status(error, threshold),
        "a clean error near chance or far above the model's own validation error usually means the inputs are in "
        "another convention than the model was trained on: winn-robust gives external models [0, 1] images and its "
        "own checkpoints [-1, 1] (x = 2u - 1); check the model's input range and normalisation "
        "(--input-mean/--input-std), the dataset (--data) and the checkpoint", detail)]


def input_convention_fits_better(ev: Evidence, at: Target) -> list[Indicator]:
    """Is the model fed in the convention it was trained in? The probe batch's clean mistakes as
    given against [0, 1] vs [-1, 1] and mean/std normalisation; WARN when another convention cuts
    the clean error by more than 0.20. Absent without the probe."""
    probe = ev.result.probes.get(at.model)
    if probe is None or probe.n == 0 or "given" not in probe.range_wrong:
        return []
    given = probe.range_wrong["given"]
    best = min((k for k in probe.range_wrong if k != "given"), key=lambda k: probe.range_wrong[k])
    gain = (given - probe.range_wrong[best]) / probe.n
    return [Indicator(
        "input-convention", "another input convention fits far better", at.model, None, None, max(gain, 0.0),
        CONVENTION_GAIN_MAX, _status(max(gain, 0.0), CONVENTION_GAIN_MAX),
        RANGE_ADVICE[best] if gain > CONVENTION_GAIN_MAX else
        "the model fits the convention it is given best; nothing to do",
        f"clean mistakes on the {probe.n} probed images: " + ", ".join(
            f"{k} {v}" for k, v in probe.range_wrong.items()) + " (given = as evaluated; fewer/more = one [0, 1] -> "
        "[-1, 1] conversion fewer/more; standardised = (u - mean) / std)")]


# ----------------------------------------------------------------------------- probes of the model
def zero_gradients(ev: Evidence, at: Target) -> list[Indicator]:
    """AutoAttack's check_zero_gradients: gradient attacks cannot move an image whose input gradient
    is all zero. WARN above 1% of the probed images."""
    probe = ev.result.probes[at.model]
    zero = probe.zero_gradient / probe.n
    return [Indicator(
        "zero-gradients", "zero input gradients", at.model, None, None, zero, ZERO_GRADIENT_MAX,
        _status(zero, ZERO_GRADIENT_MAX),
        "gradient attacks cannot move these images (saturated softmax or a masked gradient): add apgd-t or "
        "square, which use a margin loss or no gradient",
        f"{probe.zero_gradient} of {probe.n} probed images")]


def probability_outputs(ev: Evidence, at: Target) -> list[Indicator]:
    """AutoAttack's check_range_output: a softmax before the loss flattens its gradient. WARN when
    over half of the probed images get a probability vector."""
    probe = ev.result.probes[at.model]
    prob = probe.probability_outputs / probe.n
    return [Indicator(
        "probability-outputs", "outputs are probabilities, not logits", at.model, None, None, prob, PROBABILITY_MAX,
        _status(prob, PROBABILITY_MAX),
        "attack the logits: a softmax before the loss flattens its gradient (remove it from the model's forward)",
        f"{probe.probability_outputs} of {probe.n} probed images")]


def randomness(ev: Evidence, at: Target) -> list[Indicator]:
    """AutoAttack's check_randomized: a random model needs attacks on its expectation. WARN when
    repeated passes differ by more than 1e-4 (L2, normalised outputs)."""
    probe = ev.result.probes[at.model]
    return [Indicator(
        "randomness", "random outputs", at.model, None, None, probe.randomness, RANDOMNESS_MAX,
        _status(probe.randomness, RANDOMNESS_MAX),
        "the model is randomized: attack its expectation (EOT, AutoAttack version='rand') and report the "
        "error over several passes", "largest L2 distance of normalised outputs over repeated passes")]


def unbounded_attack(ev: Evidence, at: Target) -> list[Indicator]:
    """Carlini et al.'s sanity check: with an unbounded budget every image can be replaced, so a
    working attack reaches 100% error. WARN below 98% of the probed images."""
    probe = ev.result.probes[at.model]
    unbounded_eps, unbounded_what = unbounded_text(ev.result)
    unbounded = probe.unbounded_wrong / probe.n
    return [Indicator(
        "unbounded-attack", f"unbounded attack ({unbounded_what}) fails", at.model, unbounded_eps, "pgd", unbounded,
        UNBOUNDED_MIN, _status(unbounded, UNBOUNDED_MIN, warn_above=False),
        f"at {unbounded_what} any image can be replaced, so the error must reach 100%: the attacks are not working "
        "on this model (masked gradients, a bug, or too few steps)", f"{probe.unbounded_wrong} of {probe.n} probed images")]


# ----------------------------------------------------------------------------- attacks compared at one eps
def gradient_free_beats_gradient(ev: Evidence, at: Target) -> list[Indicator]:
    """AutoAttack's check_square_sr: images a gradient-free attack fools and no gradient attack does
    mean the gradient misleads. Every gradient-free attack at eps against every gradient-based one;
    WARN above 0.002 of the images."""
    eps = _eps(at)
    free, gradient = ev.runs(eps, gradient_free=True), ev.runs(eps, gradient_based=True)
    value: float | None = None
    detail = f"needs {GRADIENT_FREE_TO_RUN} and a gradient attack at this eps"
    if free and gradient:
        value, detail = ev.fooled_only_by(eps, at.model, free, gradient, "/".join(free), "no gradient attack")
    return [Indicator("gradient-free-beats-gradient", "gradient-free beats gradient-based", at.model, eps,
                      "/".join(free) or GRADIENT_FREE_TO_RUN, value, GRADIENT_FREE_MAX,
                      _status(value, GRADIENT_FREE_MAX),
                      f"run {GRADIENT_FREE_TO_RUN} (alone) to check this; AutoAttack reports its own Square check as a "
                      "flag when it fires" if value is None else
                      f"the gradient is misleading on this model (masking or obfuscation): trust {'/'.join(free)}'s "
                      "numbers, and try an adaptive attack", detail)]


def transfer_beats_white_box(ev: Evidence, at: Target) -> list[Indicator]:
    """Carlini et al.: white-box attacks should be the strongest, so images only another model's
    adversarial examples fool mean they fail. WARN above 0.01 of the images; N/A with one model."""
    eps = _eps(at)
    others = [s for s in ev.result.model_names if s != at.model]
    value: float | None = None
    detail = "needs a second model"
    if others:
        attacks = ev.runs(eps)
        value, detail = ev.fooled_only_by(eps, at.model, attacks, attacks, "another model's examples", "none of its own",
                                          sources=others)
    return [Indicator("transfer-beats-white-box", "transfer beats white-box", at.model, eps, None, value,
                      TRANSFER_MAX, _status(value, TRANSFER_MAX),
                      "white-box attacks should be the strongest: they fail on this model, so use stronger "
                      "or adaptive attacks (more steps, restarts, apgd-t, square)", detail)]


def single_step_beats_iterative(ev: Evidence, at: Target) -> list[Indicator]:
    """Pintor et al.: an iterative gradient attack should find every image one step finds; images
    only a single-step attack fools mean its optimisation fails. WARN above 0.01 of the images."""
    eps = _eps(at)
    single = ev.runs(eps, gradient_based=True, iterative=False)
    iterative = ev.runs(eps, gradient_based=True, iterative=True)
    value: float | None = None
    detail = (f"needs {'fgsm' if ev.result.norm == DEFAULT_NORM else 'fgm'} and an iterative "
              "gradient attack (pgd, apgd-ce) at this eps")
    if single and iterative:
        value, detail = ev.fooled_only_by(eps, at.model, single, iterative, "/".join(single), "no iterative attack")
    return [Indicator("single-step-beats-iterative", "single-step beats iterative", at.model, eps, None, value,
                      SINGLE_STEP_MAX, _status(value, SINGLE_STEP_MAX),
                      "an iterative attack should find everything one step finds: its optimisation fails "
                      "(step size, masking): raise steps and restarts", detail)]


def autoattack_flags(ev: Evidence, at: Target) -> list[Indicator]:
    """AutoAttack's own flags, as pyautoattack logged them while attacking: always WARN."""
    eps = _eps(at)
    return [Indicator("autoattack-flag", "AutoAttack's own flag", at.model, eps, attack, None, 0.0,
                      WARN, "read AutoAttack's flags_doc.md for this case", note)
            for attack in ev.runs(eps) for note in ev.result.notes.get((attack, eps), {}).get(at.model, [])]


def single_step_far_weaker(ev: Evidence, at: Target) -> list[Indicator]:
    """Catastrophic overfitting (Wong et al. 2020) and masked gradients: a model trained with
    single-step examples can defeat exactly that step while staying weak against PGD, so its FGSM
    error says nothing. Share of images an iterative gradient attack fools and no single-step one
    does; WARN above 0.3. Absent without both kinds at eps."""
    eps = _eps(at)
    single = ev.runs(eps, gradient_based=True, iterative=False)
    iterative = ev.runs(eps, gradient_based=True, iterative=True)
    if not single or not iterative:
        return []
    value, detail = ev.fooled_only_by(eps, at.model, iterative, single, "/".join(iterative), f"no {'/'.join(single)}")
    return [Indicator("single-step-far-weaker", "single-step far weaker than iterative", at.model, eps, None,
                      value, SINGLE_STEP_GAP_MAX, _status(value, SINGLE_STEP_GAP_MAX),
                      "the input gradient at the image misleads a single step (gradient masking; after "
                      "FGSM or Fast-AT training, catastrophic overfitting): quote PGD or AutoAttack, not "
                      "FGSM, and for Fast-AT lower the step or eps, or stop before the collapse", detail)]


# ----------------------------------------------------------------------------- across eps and steps
def not_monotone_in_eps(ev: Evidence, at: Target) -> list[Indicator]:
    """A larger budget can only make a correct attack stronger: the robust error should not fall
    as eps grows. WARN when it falls by more than 1 point between consecutive eps; N/A at one eps."""
    ordered = sorted(ev.robust_error[at.model].items())
    if len(ordered) < 2:
        return [Indicator("not-monotone-in-eps", "not monotone in eps", at.model, None, None, None,
                          MONOTONE_DROP_MAX, NA, "evaluate at several eps to check this", "one eps only")]
    drop, low, high = max((a[1] - b[1], a[0], b[0]) for a, b in itertools.pairwise(ordered))
    value = max(0.0, drop)
    return [Indicator("not-monotone-in-eps", "not monotone in eps", at.model, None, None, value, MONOTONE_DROP_MAX,
                      _status(value, MONOTONE_DROP_MAX),
                      "a larger budget can only make a correct attack stronger: the attack misbehaves "
                      "(a fixed step that overshoots, masking); use an iterative attack with restarts",
                      f"robust error falls by {100 * value:.2f} points from eps {eps_text(low)} to {eps_text(high)}"
                      if value else "robust error rises with eps")]


def incomplete_optimisation(ev: Evidence, at: Target) -> list[Indicator]:
    """Pintor et al.: an attack whose running-best loss on the images it did not fool is still
    rising over its last steps stopped too early. WARN when over 5% of the rise came in the final
    20% of steps. Only attacks that report a loss trace (our PGD)."""
    trace, count = ev.result.loss_traces[(str(at.attack), _eps(at))][at.model]
    if count == 0 or len(trace) < 5:
        value, detail = 0.0, "every image fooled"
    else:
        mean = np.asarray(trace) / count
        total = mean[-1] - mean[0]
        late = mean[-1] - mean[int(0.8 * (len(mean) - 1))]
        value = float(late / total) if total > 1e-12 else 0.0
        detail = (f"mean loss of the {count} unfooled images rose {total:.4g} over the last restart, "
                  f"{late:.4g} of it in the final 20% of steps")
    return [Indicator("incomplete-optimisation", "incomplete optimisation", at.model, at.eps, at.attack, value,
                      INCOMPLETE_RISE_MAX, _status(value, INCOMPLETE_RISE_MAX),
                      f"the loss was still rising: raise {at.attack} steps (e.g. --attack-option "
                      f"{at.attack}.steps=200)", detail)]


def curve_beats_fixed_eps(ev: Evidence, at: Target) -> list[Indicator]:
    """The minimum-norm curve can only be at or below the fixed-eps attacks' worst case: images it
    fools within eps that they all missed mean they are too weak. WARN above 0.01; absent without
    a curve."""
    result = ev.result
    if not result.min_norms or result.curve is None:
        return []
    eps, attack = _eps(at), str(result.curve.get("attack"))
    value, count, n = beats_fixed(result.min_norms[at.model], ev.worst[eps][at.model], eps)
    return [Indicator(
        "curve-beats-fixed-eps", "minimum-norm curve above the fixed-eps attacks", at.model, eps, attack, value,
        CURVE_BEATS_FIXED_MAX, _status(value, CURVE_BEATS_FIXED_MAX),
        f"the {NORM_LABELS.get(result.norm, result.norm)} minimum-norm attack found adversarial examples within "
        "eps that every fixed-eps attack missed: those attacks are too weak at this eps (more steps and "
        "restarts, apgd-t, the autoattack ensemble)",
        f"{count} of {n} images fooled by {attack} within eps and by no fixed-eps attack")]


# ----------------------------------------------------------------------------- the list and its runner
Check = Callable[[Evidence, Target], list[Indicator]]
Targets = Callable[[Evidence], list[Target]]


def each_model(ev: Evidence) -> list[Target]:
    return [Target(model) for model in ev.result.clean_preds]


def each_probed_model(ev: Evidence) -> list[Target]:
    return [Target(model) for model, probe in ev.result.probes.items() if probe.n != 0]


def each_eps_and_model(ev: Evidence) -> list[Target]:
    return [Target(model, eps) for eps in ev.result.eps_values for model in ev.result.model_names]


def each_model_with_robust_error(ev: Evidence) -> list[Target]:
    return [Target(model) for model in ev.robust_error]


def each_traced_run(ev: Evidence) -> list[Target]:
    return [Target(model, eps, attack) for (attack, eps), traces in ev.result.loss_traces.items() for model in traces]


# In report order: for each group, its targets in turn, and for each target the group's checks in turn.
CHECKS: tuple[tuple[Targets, tuple[Check, ...]], ...] = (
    (each_model, (clean_error_too_high, input_convention_fits_better)),
    (each_probed_model, (zero_gradients, probability_outputs, randomness, unbounded_attack)),
    (each_eps_and_model, (gradient_free_beats_gradient, transfer_beats_white_box, single_step_beats_iterative,
                          autoattack_flags)),
    (each_eps_and_model, (single_step_far_weaker,)),
    (each_model_with_robust_error, (not_monotone_in_eps,)),
    (each_traced_run, (incomplete_optimisation,)),
    (each_eps_and_model, (curve_beats_fixed_eps,)),
)


def evidence(result: CrossEvalResult, attacks: Mapping[str, AttackLike] | None = None,
             robust_error: Mapping[str, Mapping[float, float]] | None = None,
             expected_error: Mapping[str, float | None] | None = None, num_classes: int | None = None) -> Evidence:
    """The checks' input; `attacks[name]` an Attack (object or class) or the older mapping; without
    `num_classes`, the labels' largest + 1."""
    classes = num_classes if num_classes is not None else ((int(result.labels.max()) + 1) if result.labels.size else 2)
    return Evidence(result, {name: Declared.of(a) for name, a in (attacks or {}).items()}, robust_error or {},
                    expected_error or {}, classes)


def run_checks(ev: Evidence, checks: tuple[tuple[Targets, tuple[Check, ...]], ...] = CHECKS) -> list[Indicator]:
    return [indicator for targets, group in checks for at in targets(ev) for check in group for indicator in check(ev, at)]


def compute_indicators(result: CrossEvalResult, robust_error: Mapping[str, Mapping[float, float]],
                       attacks: Mapping[str, AttackLike],
                       expected_error: Mapping[str, float | None] | None = None,
                       num_classes: int | None = None) -> list[Indicator]:
    """Every indicator for every model (and eps). `robust_error[model][eps]` is the worst-case
    error; `attacks[name]` the attack that ran under that name (what it declares is read from it);
    `expected_error` the validation error a checkpoint records (None when unknown, e.g. external models)."""
    return run_checks(evidence(result, attacks, robust_error, expected_error, num_classes or None))


def input_convention(result: CrossEvalResult, expected_error: Mapping[str, float | None],
                     num_classes: int) -> list[Indicator]:
    """The input-convention checks alone (clean error far above expected, another convention fits)."""
    return run_checks(evidence(result, expected_error=expected_error, num_classes=num_classes),
                      ((each_model, (clean_error_too_high, input_convention_fits_better)),))


def single_step_gap(result: CrossEvalResult, attacks: Mapping[str, AttackLike]) -> list[Indicator]:
    """The "single-step far weaker than iterative" check alone, at every eps and model."""
    return run_checks(evidence(result, attacks), ((each_eps_and_model, (single_step_far_weaker,)),))


def warnings_only(indicators: list[Indicator]) -> list[Indicator]:
    return [i for i in indicators if i.status == WARN]
