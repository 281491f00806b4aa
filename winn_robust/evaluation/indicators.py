"""Can these numbers be trusted? Failure indicators of a robustness evaluation, per model and eps.

Each indicator is a measured value, a threshold, PASS or WARN, and one line of advice. They are
anchored in AutoAttack's flags (Croce and Hein 2020), the checklist of Carlini et al. 2019 ("On
Evaluating Adversarial Robustness") and Pintor et al. 2022 ("Indicators of Attack Failure"). A
WARN does not say the model is not robust; it says this evaluation may overstate how robust it
is, and what to run to find out. Indicators whose evidence was not collected say N/A and which
attack would collect it.

Everything here reads a `CrossEvalResult` (predictions, probes, loss traces, captured notes)
and the attacks' descriptions; nothing is attacked again."""
from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

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


def _status(value: float | None, threshold: float, warn_above: bool = True) -> str:
    if value is None:
        return NA
    return WARN if (value > threshold if warn_above else value < threshold) else PASS


def _fooled(result: CrossEvalResult, attack: str, eps: float, source: str, target: str, n: int) -> np.ndarray:
    preds = result.adv_preds[(attack, eps)][source][target][:n]
    return preds != result.labels[:n]


def unbounded_text(result: CrossEvalResult) -> tuple[float, str]:
    """The unbounded probe's eps and its description at the result's norm."""
    if result.norm == DEFAULT_NORM:
        return 1.0, "eps = 1"
    shape = tuple(result.example_images.shape[1:]) if result.example_images is not None else ()
    eps = image_diagonal(shape) if shape else float("nan")
    return eps, f"L2 eps = image diagonal {eps:.4g}"


def model_probes(result: CrossEvalResult) -> list[Indicator]:
    out = []
    unbounded_eps, unbounded_what = unbounded_text(result)
    for model, probe in result.probes.items():
        if probe.n == 0:
            continue
        zero = probe.zero_gradient / probe.n
        out.append(Indicator(
            "zero-gradients", "zero input gradients", model, None, None, zero, ZERO_GRADIENT_MAX,
            _status(zero, ZERO_GRADIENT_MAX),
            "gradient attacks cannot move these images (saturated softmax or a masked gradient): add apgd-t or "
            "square, which use a margin loss or no gradient",
            f"{probe.zero_gradient} of {probe.n} probed images"))
        prob = probe.probability_outputs / probe.n
        out.append(Indicator(
            "probability-outputs", "outputs are probabilities, not logits", model, None, None, prob, PROBABILITY_MAX,
            _status(prob, PROBABILITY_MAX),
            "attack the logits: a softmax before the loss flattens its gradient (remove it from the model's forward)",
            f"{probe.probability_outputs} of {probe.n} probed images"))
        out.append(Indicator(
            "randomness", "random outputs", model, None, None, probe.randomness, RANDOMNESS_MAX,
            _status(probe.randomness, RANDOMNESS_MAX),
            "the model is randomized: attack its expectation (EOT, AutoAttack version='rand') and report the "
            "error over several passes", "largest L2 distance of normalised outputs over repeated passes"))
        unbounded = probe.unbounded_wrong / probe.n
        out.append(Indicator(
            "unbounded-attack", f"unbounded attack ({unbounded_what}) fails", model, unbounded_eps, "pgd", unbounded,
            UNBOUNDED_MIN, _status(unbounded, UNBOUNDED_MIN, warn_above=False),
            f"at {unbounded_what} any image can be replaced, so the error must reach 100%: the attacks are not working "
            "on this model (masked gradients, a bug, or too few steps)", f"{probe.unbounded_wrong} of {probe.n} probed images"))
    return out


def input_convention(result: CrossEvalResult, expected_error: Mapping[str, float | None],
                     num_classes: int) -> list[Indicator]:
    """Is the model fed in the convention it was trained in? Its clean error against chance and
    against its checkpoint's validation error, and against the probe batch's error under the
    other conventions ([0, 1] vs [-1, 1], mean/std normalisation)."""
    out = []
    chance = 1 - 1 / max(num_classes, 2)
    for model, preds in result.clean_preds.items():
        error = float((preds != result.labels).mean()) if len(preds) else None
        expected = expected_error.get(model)
        if expected is not None:
            threshold = 2 * expected + VALIDATION_EXCESS_MAX
            detail = f"validation error {100 * expected:.2f}% in its checkpoint"
        else:
            threshold = CHANCE_SHARE_MAX * chance
            detail = f"chance error {100 * chance:.1f}% with {num_classes} classes; no validation error known"
        out.append(Indicator(
            "clean-error-too-high", "clean error far above expected", model, None, None, error, threshold,
            _status(error, threshold),
            "a clean error near chance or far above the model's own validation error usually means the inputs are in "
            "another convention than the model was trained on: winn-robust gives external models [0, 1] images and its "
            "own checkpoints [-1, 1] (x = 2u - 1); check the model's input range and normalisation "
            "(--input-mean/--input-std), the dataset (--data) and the checkpoint", detail))
        probe = result.probes.get(model)
        if probe is None or probe.n == 0 or "given" not in probe.range_wrong:
            continue
        given = probe.range_wrong["given"]
        best = min((k for k in probe.range_wrong if k != "given"), key=lambda k: probe.range_wrong[k])
        gain = (given - probe.range_wrong[best]) / probe.n
        out.append(Indicator(
            "input-convention", "another input convention fits far better", model, None, None, max(gain, 0.0),
            CONVENTION_GAIN_MAX, _status(max(gain, 0.0), CONVENTION_GAIN_MAX),
            RANGE_ADVICE[best] if gain > CONVENTION_GAIN_MAX else
            "the model fits the convention it is given best; nothing to do",
            f"clean mistakes on the {probe.n} probed images: " + ", ".join(
                f"{k} {v}" for k, v in probe.range_wrong.items()) + " (given = as evaluated; fewer/more = one [0, 1] -> "
            "[-1, 1] conversion fewer/more; standardised = (u - mean) / std)"))
    return out


def whitebox_runs(result: CrossEvalResult, eps: float) -> list[str]:
    return [attack for (attack, e) in result.adv_preds if e == eps]


def per_eps(result: CrossEvalResult, describe: Mapping[str, Mapping[str, bool]]) -> list[Indicator]:
    """Indicators comparing attacks at one eps: gradient-free, transfer, single-step."""
    out = []
    names = result.model_names
    for eps in result.eps_values:
        attacks = whitebox_runs(result, eps)
        n = min(result.run_sizes[(a, eps)] for a in attacks)
        gradient = [a for a in attacks if describe[a]["gradient_based"]]
        iterative = [a for a in gradient if describe[a]["iterative"]]
        for model in names:
            own = {a: _fooled(result, a, eps, model, model, n) for a in attacks}
            any_gradient = np.any([own[a] for a in gradient], axis=0) if gradient else None
            # gradient-free beats gradient-based
            if "square" in attacks and any_gradient is not None:
                extra = own["square"] & ~any_gradient
                value: float | None = float(extra.mean()) if n else 0.0
                detail = f"{int(extra.sum())} of {n} images fooled by square and by no gradient attack"
            else:
                value, detail = None, "needs square and a gradient attack at this eps"
            out.append(Indicator("gradient-free-beats-gradient", "gradient-free beats gradient-based", model, eps,
                                 "square", value, GRADIENT_FREE_MAX, _status(value, GRADIENT_FREE_MAX),
                                 "run square (alone) to check this; AutoAttack reports its own Square check as a flag "
                                 "when it fires" if value is None else
                                 "the gradient is misleading on this model (masking or obfuscation): trust square's "
                                 "numbers, and try an adaptive attack",
                                 detail))
            # transfer beats white-box
            others = [s for s in names if s != model]
            if others:
                transferred = np.any([_fooled(result, a, eps, s, model, n) for a in attacks for s in others], axis=0)
                white = np.any(list(own.values()), axis=0)
                extra = transferred & ~white
                value, detail = float(extra.mean()) if n else 0.0, \
                    f"{int(extra.sum())} of {n} images fooled by another model's examples and by none of its own"
            else:
                value, detail = None, "needs a second model"
            out.append(Indicator("transfer-beats-white-box", "transfer beats white-box", model, eps, None, value,
                                 TRANSFER_MAX, _status(value, TRANSFER_MAX),
                                 "white-box attacks should be the strongest: they fail on this model, so use stronger "
                                 "or adaptive attacks (more steps, restarts, apgd-t, square)", detail))
            # single step beats iterative
            single = [a for a in gradient if a not in iterative]
            if single and iterative:
                one = np.any([own[a] for a in single], axis=0)
                many = np.any([own[a] for a in iterative], axis=0)
                extra = one & ~many
                value, detail = float(extra.mean()) if n else 0.0, \
                    f"{int(extra.sum())} of {n} images fooled by {'/'.join(single)} and by no iterative attack"
            else:
                value, detail = None, (f"needs {'fgsm' if result.norm == DEFAULT_NORM else 'fgm'} and an iterative "
                                       "gradient attack (pgd, apgd-ce) at this eps")
            out.append(Indicator("single-step-beats-iterative", "single-step beats iterative", model, eps, None, value,
                                 SINGLE_STEP_MAX, _status(value, SINGLE_STEP_MAX),
                                 "an iterative attack should find everything one step finds: its optimisation fails "
                                 "(step size, masking): raise steps and restarts", detail))
            for attack in attacks:
                for note in result.notes.get((attack, eps), {}).get(model, []):
                    out.append(Indicator("autoattack-flag", "AutoAttack's own flag", model, eps, attack, None, 0.0,
                                         WARN, "read AutoAttack's flags_doc.md for this case", note))
    return out


def monotone(result: CrossEvalResult, metrics_error: Mapping[str, Mapping[float, float]]) -> list[Indicator]:
    """Error should not fall as eps grows: per model, over the attacks' own error at ascending eps."""
    out = []
    for model, by_eps in metrics_error.items():
        ordered = sorted(by_eps.items())
        if len(ordered) < 2:
            out.append(Indicator("not-monotone-in-eps", "not monotone in eps", model, None, None, None,
                                 MONOTONE_DROP_MAX, NA, "evaluate at several eps to check this", "one eps only"))
            continue
        drops = [(a[1] - b[1], a[0], b[0]) for a, b in itertools.pairwise(ordered)]
        drop, low, high = max(drops)
        value = max(0.0, drop)
        out.append(Indicator("not-monotone-in-eps", "not monotone in eps", model, None, None, value, MONOTONE_DROP_MAX,
                             _status(value, MONOTONE_DROP_MAX),
                             "a larger budget can only make a correct attack stronger: the attack misbehaves "
                             "(a fixed step that overshoots, masking); use an iterative attack with restarts",
                             f"robust error falls by {100 * value:.2f} points from eps {eps_text(low)} to {eps_text(high)}"
                             if value else "robust error rises with eps"))
    return out


def incomplete(result: CrossEvalResult) -> list[Indicator]:
    """PGD's running-best loss on the images it did not fool, still rising over its last steps."""
    out = []
    for (attack, eps), traces in result.loss_traces.items():
        for model, (trace, count) in traces.items():
            if count == 0 or len(trace) < 5:
                value, detail = 0.0, "every image fooled"
            else:
                mean = np.asarray(trace) / count
                total = mean[-1] - mean[0]
                late = mean[-1] - mean[int(0.8 * (len(mean) - 1))]
                value = float(late / total) if total > 1e-12 else 0.0
                detail = (f"mean loss of the {count} unfooled images rose {total:.4g} over the last restart, "
                          f"{late:.4g} of it in the final 20% of steps")
            out.append(Indicator("incomplete-optimisation", "incomplete optimisation", model, eps, attack, value,
                                 INCOMPLETE_RISE_MAX, _status(value, INCOMPLETE_RISE_MAX),
                                 f"the loss was still rising: raise {attack} steps (e.g. --attack-option "
                                 f"{attack}.steps=200)", detail))
    return out


def single_step_gap(result: CrossEvalResult, describe: Mapping[str, Mapping[str, bool]]) -> list[Indicator]:
    """Catastrophic overfitting (Wong et al. 2020) and masked gradients: iterative attacks fool far
    more images than the single-step ones (FGSM). A model trained with single-step examples can
    learn to defeat exactly that step while staying weak against PGD; its FGSM error then says
    nothing about its robustness. Share of images an iterative gradient attack fools and no
    single-step attack does."""
    out = []
    for eps in result.eps_values:
        attacks = whitebox_runs(result, eps)
        gradient = [a for a in attacks if describe[a]["gradient_based"]]
        iterative = [a for a in gradient if describe[a]["iterative"]]
        single = [a for a in gradient if a not in iterative]
        if not single or not iterative:
            continue
        n = min(result.run_sizes[(a, eps)] for a in attacks)
        for model in result.model_names:
            one = np.any([_fooled(result, a, eps, model, model, n) for a in single], axis=0)
            many = np.any([_fooled(result, a, eps, model, model, n) for a in iterative], axis=0)
            extra = many & ~one
            value = float(extra.mean()) if n else 0.0
            out.append(Indicator("single-step-far-weaker", "single-step far weaker than iterative", model, eps, None,
                                 value, SINGLE_STEP_GAP_MAX, _status(value, SINGLE_STEP_GAP_MAX),
                                 "the input gradient at the image misleads a single step (gradient masking; after "
                                 "FGSM or Fast-AT training, catastrophic overfitting): quote PGD or AutoAttack, not "
                                 "FGSM, and for Fast-AT lower the step or eps, or stop before the collapse",
                                 f"{int(extra.sum())} of {n} images fooled by {'/'.join(iterative)} and by no "
                                 f"{'/'.join(single)}"))
    return out


def curve_check(result: CrossEvalResult) -> list[Indicator]:
    """The minimum-norm curve can only be at or below the fixed-eps attacks' worst case at every
    evaluated eps: images it fools within eps that they all missed mean they are too weak."""
    if not result.min_norms or result.curve is None:
        return []
    out = []
    attack = str(result.curve.get("attack"))
    worst = worst_case_wrong(result.labels, result.clean_preds, result.adv_preds)
    for eps in result.eps_values:
        for model in result.model_names:
            value, count, n = beats_fixed(result.min_norms[model], worst[eps][model], eps)
            out.append(Indicator(
                "curve-beats-fixed-eps", "minimum-norm curve above the fixed-eps attacks", model, eps, attack, value,
                CURVE_BEATS_FIXED_MAX, _status(value, CURVE_BEATS_FIXED_MAX),
                f"the {NORM_LABELS.get(result.norm, result.norm)} minimum-norm attack found adversarial examples within "
                "eps that every fixed-eps attack missed: those attacks are too weak at this eps (more steps and "
                "restarts, apgd-t, the autoattack ensemble)",
                f"{count} of {n} images fooled by {attack} within eps and by no fixed-eps attack"))
    return out


def compute_indicators(result: CrossEvalResult, robust_error: Mapping[str, Mapping[float, float]],
                       describe: Mapping[str, Mapping[str, bool]],
                       expected_error: Mapping[str, float | None] | None = None,
                       num_classes: int | None = None) -> list[Indicator]:
    """Every indicator for every model (and eps). `robust_error[model][eps]` is the worst-case
    error; `describe[attack]` says whether it is gradient-based and iterative; `expected_error`
    the validation error a checkpoint records (None when unknown, e.g. external models)."""
    classes = num_classes or ((int(result.labels.max()) + 1) if result.labels.size else 2)
    return [*input_convention(result, expected_error or {}, classes), *model_probes(result), *per_eps(result, describe),
            *single_step_gap(result, describe),
            *monotone(result, robust_error), *incomplete(result), *curve_check(result)]


def warnings_only(indicators: list[Indicator]) -> list[Indicator]:
    return [i for i in indicators if i.status == WARN]
