"""The failure indicators group attacks by what they declare (class attributes on `Attack`), never
by their names: a new gradient-free attack takes part in the gradient-free check as `square` does."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from winn_robust.attacks.autoattack_adapter import Square
from winn_robust.attacks.base import Attack, AttackOutput
from winn_robust.attacks.fgsm import FGSM
from winn_robust.attacks.pgd import PGD
from winn_robust.attacks.registry import VARIANTS
from winn_robust.evaluation.harness import CrossEvalResult
from winn_robust.evaluation.indicators import NA, PASS, WARN, Declared, Target, compute_indicators, evidence, gradient_free_beats_gradient
from winn_robust.evaluation.probes import ProbeResult
from winn_robust.reporting.provenance import Provenance
from winn_robust.units import MODEL_HIGH, MODEL_LOW, eps_to_model


@dataclass(frozen=True)
class RandomSign(Attack):
    """A test-only gradient-free attack: one random corner of the eps box (never registered)."""
    name = "random-sign"
    gradient_based = False
    gradient_free = True
    randomized = True

    def run(self, model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, eps: float,
            generator: torch.Generator) -> AttackOutput:
        signs = torch.randint(0, 2, images.shape, generator=generator, device=images.device) * 2 - 1
        return AttackOutput((images + eps_to_model(eps) * signs).clamp(MODEL_LOW, MODEL_HIGH))


LABELS = np.zeros(100, dtype=np.int64)


def fooling(*ranges: tuple[int, int]) -> np.ndarray:
    """Predictions wrong exactly on the images in the given [start, stop) ranges."""
    preds = LABELS.copy()
    for start, stop in ranges:
        preds[start:stop] = 1
    return preds


def one_model(runs: dict[str, np.ndarray], eps: float = 0.1) -> CrossEvalResult:
    return CrossEvalResult(labels=LABELS, clean_preds={"m": LABELS},
                           adv_preds={(a, eps): {"m": {"m": p}} for a, p in runs.items()},
                           run_sizes={(a, eps): len(LABELS) for a in runs})


def gradient_free(result: CrossEvalResult, attacks: dict) -> list:
    return gradient_free_beats_gradient(evidence(result, attacks), Target("m", 0.1))


def test_a_gradient_free_attack_not_named_square_takes_part():
    result = one_model({"fgsm": fooling((0, 10)), "random-sign": fooling((0, 10), (10, 13))})
    (row,) = gradient_free(result, {"fgsm": FGSM, "random-sign": RandomSign})
    assert (row.attack, row.status, row.value) == ("random-sign", WARN, pytest.approx(0.03))
    assert row.detail == "3 of 100 images fooled by random-sign and by no gradient attack"
    assert "trust random-sign's numbers" in row.advice


def test_every_gradient_free_attack_at_the_eps_counts():
    result = one_model({"fgsm": fooling((0, 10)), "square": fooling((10, 12)), "random-sign": fooling((20, 23))})
    (row,) = gradient_free(result, {"fgsm": FGSM(), "square": Square(), "random-sign": RandomSign()})
    assert row.attack == "square/random-sign" and row.value == pytest.approx(0.05)
    assert row.detail == "5 of 100 images fooled by square/random-sign and by no gradient attack"


def test_square_alone_reads_as_before_and_no_gradient_free_attack_is_na():
    result = one_model({"fgsm": fooling((0, 10)), "square": fooling((0, 10))})
    (row,) = gradient_free(result, {"fgsm": FGSM, "square": Square})
    assert (row.attack, row.status, row.value) == ("square", PASS, 0.0)
    assert row.detail == "0 of 100 images fooled by square and by no gradient attack"
    assert row.advice == ("the gradient is misleading on this model (masking or obfuscation): trust square's numbers, "
                          "and try an adaptive attack")
    (na,) = gradient_free(one_model({"fgsm": fooling((0, 10))}), {"fgsm": FGSM})
    assert (na.attack, na.status, na.value) == ("square", NA, None)
    assert na.detail == "needs square and a gradient attack at this eps"
    assert na.advice == "run square (alone) to check this; AutoAttack reports its own Square check as a flag when it fires"


def test_the_older_property_mapping_reads_as_the_attack_classes_do():
    """evaluate.py passes {"gradient_based", "iterative"} per attack; for every registered attack
    it must declare the same as the class (gradient-free = not gradient-based)."""
    for by_norm in VARIANTS.values():
        for cls in by_norm.values():
            assert Declared.of({"gradient_based": cls.gradient_based, "iterative": cls.iterative}) == Declared.of(cls)
    assert [name for name, by_norm in VARIANTS.items() if any(c.gradient_free for c in by_norm.values())] == ["square"]


def test_the_report_order_is_the_checks_order():
    """Checks grouped by target, models and eps in the result's order: the order reports show."""
    runs = {(a, eps): {m: {m2: LABELS for m2 in ("a", "b")} for m in ("a", "b")}
            for a in ("fgsm", "pgd") for eps in (0.2, 0.1)}
    probe = ProbeResult(n=10, zero_gradient=0, probability_outputs=0, randomness=0.0, unbounded_wrong=10,
                        range_wrong={"given": 1, "fewer": 5})
    result = CrossEvalResult(labels=LABELS, clean_preds={"a": LABELS, "b": LABELS}, adv_preds=runs,
                             run_sizes={k: 100 for k in runs}, table_eps=0.2, probes={"b": probe, "a": probe},
                             loss_traces={("pgd", 0.1): {"a": ([0.0] * 6, 0)}},
                             notes={("fgsm", 0.1): {"b": ["flag one", "flag two"]}})
    got = [(i.indicator, i.model, i.eps) for i in compute_indicators(
        result, {"a": {0.1: 0.0, 0.2: 0.0}, "b": {0.2: 0.0}}, {"fgsm": FGSM, "pgd": PGD})]
    compared = ("gradient-free-beats-gradient", "transfer-beats-white-box", "single-step-beats-iterative")
    assert got == [
        *[(check, m, None) for m in ("a", "b") for check in ("clean-error-too-high", "input-convention")],
        *[(check, m, 1.0 if check == "unbounded-attack" else None) for m in ("b", "a")
          for check in ("zero-gradients", "probability-outputs", "randomness", "unbounded-attack")],
        *[(check, m, eps) for eps in (0.2, 0.1) for m in ("a", "b")
          for check in compared + (("autoattack-flag",) * 2 if (m, eps) == ("b", 0.1) else ())],
        *[("single-step-far-weaker", m, eps) for eps in (0.2, 0.1) for m in ("a", "b")],
        ("not-monotone-in-eps", "a", None), ("not-monotone-in-eps", "b", None),
        ("incomplete-optimisation", "a", 0.1)]


def test_a_new_gradient_free_attack_takes_part_in_a_real_evaluation():
    """End to end, through the harness and build_report (the attack is given as an object, not registered)."""
    from winn_robust.evaluation import EvalSpec, cross_evaluate
    from winn_robust.experiments.evaluate import build_report

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3)).eval()
    images, labels = torch.rand(20, 1, 4, 4) * 2 - 1, torch.arange(20) % 3
    spec = EvalSpec.build((0.1,), ["fgsm", RandomSign()], batch_size=20)
    result = cross_evaluate({"m": model}, images, labels, spec, progress=False)
    report = build_report(result, ["m"], Provenance(table_eps=0.1), spec, ())
    (row,) = [i for i in report.indicators if i.indicator == "gradient-free-beats-gradient"]
    assert row.attack == "random-sign" and row.value is not None and row.status in (PASS, WARN)
    assert row.detail.endswith("images fooled by random-sign and by no gradient attack")
