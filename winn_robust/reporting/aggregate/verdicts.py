"""The verdict paragraph: what the numbers say in sentences, a reduction with the interval of the
reduction, "significant" only when the 95% interval excludes 0, then every indicator that warned."""
from __future__ import annotations

from winn_robust.evaluation.seeds import (
    BootstrapInterval,
    seed_caveat,
)
from winn_robust.reporting.aggregate.statistics import CLEAN_ATTACK, ROBUST_ATTACK, Aggregate
from winn_robust.reporting.per_example import format_eps
from winn_robust.units import eps_text


def reference_verdict(agg: Aggregate) -> str:
    """Sentences comparing every other method with the reference (e.g. pgd-at), as the verdict
    compares them with the baseline: robust error at the table eps and clean error."""
    if agg.reference is None:
        return ""
    sentences = []
    for row in agg.reference_rows:
        if row.difference is None or row.metric == "adv_error":
            continue
        verb, amount = _change(row.difference)
        what = "clean error" if row.metric == "clean_error" else f"robust error at eps {format_eps(row.eps or 0)}"
        sentences.append(f"{row.model} {verb} {what} {amount} against {agg.reference}.")
    return (f"Against the reference defence {agg.reference} (method minus {agg.reference} of the same seed, same "
            "intervals): " + " ".join(sentences))


def _points(value: float) -> str:
    return f"{100 * value:.1f}"


def _change(diff: BootstrapInterval) -> tuple[str, str]:
    """('lowers', 'by 11.2 points (95% CI 6.1 to 16.3, significant)'): a reduction is stated
    with the interval of the reduction, an increase with the interval of the increase."""
    significance = "significant" if diff.excludes_zero else "not significant"
    if diff.mean == 0:
        return "leaves", f"unchanged (0.0 points, 95% CI {_points(diff.low)} to {_points(diff.high)}, {significance})"
    if diff.mean < 0:
        verb, size, low, high = "lowers", -diff.mean, -diff.high, -diff.low
    else:
        verb, size, low, high = "raises", diff.mean, diff.low, diff.high
    return verb, f"by {_points(size)} points (95% CI {_points(low)} to {_points(high)}, {significance})"


def _difference(agg: Aggregate, model: str, metric: str, attack: str, eps: float | None) -> BootstrapInterval:
    diff = agg.row(model, metric, attack, eps).difference
    if diff is None:
        raise ValueError(f"{model} has no difference for {metric}")
    return diff


def verdict(agg: Aggregate) -> str:
    """The verdict paragraph: for each method, its adversarial error under every attack and its
    robust error at the table eps, then clean error, each as a difference from the baseline of the
    same seed with its 95% interval; then every failure indicator that warned on any seed."""
    n_seeds = len(agg.seeds)
    seeds_text = f"{n_seeds} seed{'s' if n_seeds != 1 else ''}"
    sentences = [] if agg.methods else [f"The reports hold only the baseline ({agg.baseline}): no method to compare."]
    for method in agg.methods:
        for eps in agg.table_eps:
            clauses: list[str] = []
            first_verb = ""
            for attack in agg.attacks:
                verb, amount = _change(_difference(agg, method, "adv_error", attack, eps))
                if not clauses:
                    first_verb = verb
                    clauses.append(f"{verb} {attack} adversarial error at eps {eps_text(eps)} {amount} "
                                   f"against the baseline ({agg.baseline})")
                else:
                    clauses.append(f"under {attack} {amount}" if verb == first_verb else f"under {attack} it {verb} it {amount}")
            sentences.append(f"Across {seeds_text} {method} " + "; ".join(clauses) + ".")
            verb, amount = _change(_difference(agg, method, "robust_error", ROBUST_ATTACK, eps))
            sentences.append(f"It {verb} robust error at eps {eps_text(eps)} (wrong on the clean image or under at "
                             f"least one attack) {amount}.")
        verb, amount = _change(_difference(agg, method, "clean_error", CLEAN_ATTACK, None))
        sentences.append(f"{method} {verb} clean error {amount}.")
    sentences.append(f"Differences are method minus baseline of the same seed, in percentage points of error over "
                     f"N = {agg.n} {agg.dataset} test images per seed; 95% CIs from a hierarchical bootstrap over seeds "
                     f"and test images ({agg.resamples:,} resamples, seed {agg.bootstrap_seed}); \"significant\" means "
                     "the CI excludes 0.")
    caveat = seed_caveat(n_seeds)
    if caveat:
        sentences.append(caveat)
    lines = [" ".join(sentences)]
    if agg.warnings:
        lines += ["", "Failure indicators that warned (from the seeds' results.json):", ""]
        lines += [f"- {w.describe(n_seeds)}" for w in agg.warnings]
    return "\n".join(lines)
