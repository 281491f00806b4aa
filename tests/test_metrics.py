"""Metrics against numbers worked out by hand (docs/conventions.md)."""
from __future__ import annotations

from math import comb

import numpy as np
import pytest
from scipy.stats import binomtest

from winn_robust.evaluation.metrics import McNemar, Rate, compute_metrics

LABELS = np.arange(10)


def preds(wrong: set[int]) -> np.ndarray:
    """Predictions for LABELS that are wrong exactly on the given image indices."""
    return np.array([(y + 1) % 10 if i in wrong else y for i, y in enumerate(LABELS)])


# The hand-worked example: 10 images, a baseline "base", a method "meth", and "robust", a model
# that never errs on its own adversarial examples (zero denominator for "correction by baseline").
#   clean wrong:            base {0, 1}            meth {1, 2, 3}          robust {}
#   on base's adv:          base {0,1,4,5,6,7}     meth {1, 5}             robust {}
#   on meth's adv:          base {1, 2, 9}         meth {1, 2, 3, 8}       robust {}
#   on robust's adv:        base {0, 1}            meth {1, 2, 3}          robust {}
# Clean mistakes 0, 1 (base) and 1, 2, 3 (meth) stay wrong and count as adversarial mistakes.
CLEAN = {"base": preds({0, 1}), "meth": preds({1, 2, 3}), "robust": preds(set())}
ADV = {("fgsm", 0.125): {
    "base": {"base": preds({0, 1, 4, 5, 6, 7}), "meth": preds({1, 5}), "robust": preds(set())},
    "meth": {"base": preds({1, 2, 9}), "meth": preds({1, 2, 3, 8}), "robust": preds(set())},
    "robust": {"base": preds({0, 1}), "meth": preds({1, 2, 3}), "robust": preds(set())},
}}


RUN = ("fgsm", 0.125)


@pytest.fixture(scope="module")
def metrics():
    return compute_metrics(LABELS, CLEAN, ADV, baseline="base")


def test_row_order_puts_baseline_first(metrics):
    reordered = compute_metrics(LABELS, {"meth": CLEAN["meth"], "base": CLEAN["base"], "robust": CLEAN["robust"]},
                                ADV, baseline="base")
    assert reordered.models == ("base", "meth", "robust")
    assert metrics.n == 10


def test_clean_error_and_clean_mcnemar(metrics):
    # base wrong on {0, 1}: 2/10; meth wrong on {1, 2, 3}: 3/10.
    assert (metrics.clean_error["base"].k, metrics.clean_error["base"].n) == (2, 10)
    assert metrics.clean_error["meth"].value == pytest.approx(0.3)
    # b = base wrong & meth right = {0} -> 1; c = base right & meth wrong = {2, 3} -> 2;
    # p = min(1, 2 * (C(3,0) + C(3,1)) / 2^3) = min(1, 2 * 4 / 8) = 1.0
    test = metrics.mcnemar_clean["meth"]
    assert (test.b, test.c) == (1, 2)
    assert test.pvalue == pytest.approx(1.0)
    assert "base" not in metrics.mcnemar_clean


def test_adversarial_error_counts_clean_mistakes_that_stay_wrong(metrics):
    rows = metrics.by_run[RUN].models
    # N_base = |{0,1,4,5,6,7}| = 6 -> 0.6 (clean mistakes 0 and 1 included)
    assert (rows["base"].adv_error.k, rows["base"].adv_error.n, rows["base"].adv_error.value) == (6, 10, 0.6)
    # N_meth = |{1,2,3,8}| = 4 -> 0.4
    assert rows["meth"].adv_error.value == pytest.approx(0.4)
    assert rows["robust"].adv_error.value == 0.0


def test_correction_rates_by_hand(metrics):
    meth = metrics.by_run[RUN].models["meth"]
    # by method, on base's adv: N_{base and meth} = |{0,1,4,5,6,7} & {1,5}| = 2 -> 1 - 2/6 = 4/6
    assert (meth.correction_by_method.k, meth.correction_by_method.n) == (4, 6)
    assert meth.correction_by_method.value == pytest.approx(4 / 6)
    # by baseline, on meth's adv: N_{meth and base} = |{1,2,3,8} & {1,2,9}| = 2 -> 1 - 2/4 = 0.5
    assert (meth.correction_by_baseline.k, meth.correction_by_baseline.n) == (2, 4)
    assert meth.correction_by_baseline.value == pytest.approx(0.5)
    base = metrics.by_run[RUN].models["base"]
    assert base.correction_by_method is None and base.correction_by_baseline is None and base.mcnemar_adv is None


def test_zero_denominator_gives_none_not_a_crash(metrics):
    robust = metrics.by_run[RUN].models["robust"]
    # robust never errs on its own adv: N_robust = 0 -> correction by baseline undefined
    assert robust.correction_by_baseline.n == 0
    assert robust.correction_by_baseline.value is None
    assert robust.correction_by_baseline.low is None and robust.correction_by_baseline.high is None
    # on base's adv it fixes all 6 of base's mistakes: 6/6, CI upper bound exactly 1
    assert (robust.correction_by_method.k, robust.correction_by_method.n) == (6, 6)
    assert robust.correction_by_method.value == 1.0 and robust.correction_by_method.high == 1.0


def test_adversarial_mcnemar_pairs_own_adversarial_examples(metrics):
    test = metrics.by_run[RUN].models["meth"].mcnemar_adv
    # base wrong on own adv {0,1,4,5,6,7}, meth wrong on own adv {1,2,3,8}
    # b = {0,4,5,6,7} = 5, c = {2,3,8} = 3; p = 2 * (1 + 8 + 28 + 56) / 256 = 186/256
    assert (test.b, test.c) == (5, 3)
    assert test.pvalue == pytest.approx(186 / 256)


def test_transfer_and_correction_matrices(metrics):
    at = metrics.by_run[RUN]
    assert at.transfer_error["meth"]["base"].value == pytest.approx(0.3)  # base on meth's adv: {1, 2, 9}
    assert at.transfer_error["base"]["meth"].value == pytest.approx(0.2)  # meth on base's adv: {1, 5}
    for name in metrics.models:
        assert at.transfer_error[name][name] == at.models[name].adv_error
    assert at.correction["base"]["meth"] == at.models["meth"].correction_by_method
    assert at.correction["meth"]["base"] == at.models["meth"].correction_by_baseline


def test_empty_test_set_is_all_none():
    empty = np.zeros(0, np.int64)
    m = compute_metrics(empty, {"a": empty, "b": empty}, {("fgsm", 0.1): {s: {t: empty for t in "ab"} for s in "ab"}}, "a")
    row = m.by_run[("fgsm", 0.1)].models["b"]
    assert row.clean_error.value is None and row.adv_error.value is None and row.correction_by_method.value is None
    assert row.mcnemar_adv.pvalue == 1.0 and row.adv_difference is None
    assert m.robust[0.1].error["b"].value is None


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="baseline"):
        compute_metrics(LABELS, CLEAN, ADV, baseline="nope")
    with pytest.raises(ValueError, match="shape"):
        compute_metrics(LABELS, {**CLEAN, "meth": CLEAN["meth"][:5]}, ADV, baseline="base")
    with pytest.raises(ValueError):
        Rate.of(3, 2)


@pytest.mark.parametrize("b, c", [(0, 0), (1, 0), (0, 5), (3, 3), (5, 3), (2, 9), (40, 25)])
def test_mcnemar_matches_scipy_and_hand_formula(b, c):
    test = McNemar.of(b, c)
    n = b + c
    hand = 1.0 if n == 0 else min(1.0, 2 * sum(comb(n, i) for i in range(min(b, c) + 1)) / 2 ** n)
    assert test.pvalue == pytest.approx(hand, rel=1e-12)
    if n:
        assert test.pvalue == pytest.approx(binomtest(b, n, 0.5).pvalue, rel=1e-12)


def test_mcnemar_from_errors_counts_discordant_pairs():
    base = np.array([1, 1, 0, 0, 1], bool)
    meth = np.array([0, 1, 1, 0, 0], bool)
    assert (McNemar.from_errors(base, meth).b, McNemar.from_errors(base, meth).c) == (2, 1)


@pytest.mark.parametrize("k, n", [(0, 7), (1, 10), (5, 10), (10, 10), (89, 10000), (3241, 10000)])
def test_clopper_pearson_brackets_value_and_matches_scipy(k, n):
    rate = Rate.of(k, n)
    ci = binomtest(k, n).proportion_ci(0.95, method="exact")
    assert rate.low == pytest.approx(ci.low, abs=1e-15) and rate.high == pytest.approx(ci.high, abs=1e-15)
    assert rate.low <= rate.value <= rate.high
    assert rate.low < rate.high
    assert (rate.low == 0.0) == (k == 0) and (rate.high == 1.0) == (k == n)


def test_robust_error_is_the_worst_case_over_clean_and_every_source(metrics):
    # base: clean {0,1} + own {0,1,4,5,6,7} + meth's {1,2,9} + robust's {0,1} = {0,1,2,4,5,6,7,9}
    robust = metrics.robust[0.125]
    assert (robust.error["base"].k, robust.error["meth"].k, robust.error["robust"].k) == (8, 5, 0)
    assert robust.n == 10 and robust.attacks == ("fgsm",)
    # McNemar on the worst case: b = base wrong & meth right = {0,4,6,7,9}, c = base right & meth wrong = {3,8}
    assert (robust.mcnemar["meth"].b, robust.mcnemar["meth"].c) == (5, 2)


def test_difference_and_its_interval():
    from winn_robust.evaluation.metrics import Difference

    base, meth = np.array([1, 1, 1, 1, 0, 0, 0, 0] * 10, bool), np.array([1, 0, 0, 0, 0, 0, 0, 0] * 10, bool)
    diff = Difference.of(base, meth)
    assert diff.value == pytest.approx(-3 / 8)
    assert diff.low < diff.value < diff.high < 0
    assert Difference.of(base, meth) == diff  # a fixed seed: reproducible
