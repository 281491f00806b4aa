"""The minimum-norm curve in a report: curve.csv (robust error at every grid eps per model, with
95% Clopper-Pearson CIs), curve.png, and the table.md section (median minimal perturbation per
model, the curve beside the fixed-eps attacks' robust error at each evaluated eps). Written only
when the evaluation ran a curve attack (`attack --curve fmn`)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from winn_robust.evaluation.curves import Curve
from winn_robust.evaluation.metrics import Metrics
from winn_robust.reporting.plots import COLOURS, MARKERS
from winn_robust.reporting.provenance import Provenance
from winn_robust.reporting.tables import eps_label, format_rate
from winn_robust.units import NORM_LABELS, PIXEL_UNITS, eps_unit


def curve_frame(curves: Mapping[str, Curve], attack: str, norm: str) -> pd.DataFrame:
    """One row per model and grid eps."""
    rows = []
    for model, curve in curves.items():
        for eps, rate in zip(curve.eps, curve.error):
            rows.append({"model": model, "attack": attack, "norm": norm, "eps": eps, "eps_unit": eps_unit(norm),
                         "robust_error": rate.value, "robust_error_ci_low": rate.low,
                         "robust_error_ci_high": rate.high, "robust_error_k": rate.k, "robust_error_n": rate.n,
                         "median_min_norm": curve.median, "found": curve.found})
    return pd.DataFrame(rows)


def _norm_text(value: float) -> str:
    return "none found" if value == float("inf") else f"{value:.4g}"


def curve_lines(curves: Mapping[str, Curve], metrics: Metrics, attack: str, norm: str,
                eps_values: Sequence[float]) -> list[str]:
    """The table.md section: per model the median minimal perturbation, then the curve's error
    beside the fixed-eps attacks' robust error at each evaluated eps."""
    if not curves:
        return []
    n = next(iter(curves.values())).n
    label = eps_label(norm)
    head = " | ".join(f"curve at {label} {e:g} | fixed-eps robust error at {e:g}"
                      + (f" (N = {metrics.robust[e].n})" if e in metrics.robust else "") for e in eps_values)
    lines = ["", f"## Robust error over every eps: {attack} ({NORM_LABELS[norm]} minimum-norm attack), N = {n}", "",
             f"Each image's smallest adversarial perturbation found by {attack} (its {NORM_LABELS[norm]} norm in "
             f"{PIXEL_UNITS}; 0 when the clean image is already wrong): the curve at eps is the fraction of images "
             "with a perturbation at most eps, a lower bound on the robust error at every eps from one attack "
             "(curve.csv, curve.png). It can only be at or below the fixed-eps attacks' worst case; where it is "
             "above, the failure indicator 'minimum-norm curve above the fixed-eps attacks' warns (it compares "
             "both on the images both cover; the fixed-eps column gives the robust error on its own N).", "",
             f"| model | median minimal perturbation | images fooled at any eps | {head} |",
             "|---|---|---|" + "---|---|" * len(eps_values)]
    for model, curve in curves.items():
        cells = []
        for eps in eps_values:
            point = dict(zip(curve.eps, curve.error)).get(eps)
            robust = metrics.robust.get(eps)
            cells += [format_rate(point), format_rate(robust.error[model]) if robust else "-"]
        lines.append(f"| {model} | {_norm_text(curve.median)} | {curve.found} of {curve.n} | {' | '.join(cells)} |")
    return lines


def plot_curves(curves: Mapping[str, Curve], metrics: Metrics, path: str | Path, attack: str, norm: str,
                provenance: Provenance | None = None) -> Path:
    """Robust error vs eps from the minimum-norm attack (line and 95% CI band per model), with the
    fixed-eps attacks' robust error at the evaluated eps as points with CI bars."""
    dataset = (provenance.dataset if provenance is not None else None) or ""
    fig = Figure(figsize=(5.6, 4.0))
    ax = fig.add_subplot(1, 1, 1)
    for index, (model, curve) in enumerate(curves.items()):
        colour, marker = COLOURS[index % len(COLOURS)], MARKERS[index % len(MARKERS)]
        points = [(e, r.interval) for e, r in zip(curve.eps, curve.error) if r.interval is not None]
        xs = [e for e, _ in points]
        ax.plot(xs, [100 * iv[0] for _, iv in points], color=colour, linewidth=1.5,
                label=f"{model} ({attack}; median {_norm_text(curve.median)})")
        ax.fill_between(xs, [100 * iv[1] for _, iv in points], [100 * iv[2] for _, iv in points], color=colour,
                        alpha=0.15, linewidth=0)
        fixed = [(eps, iv) for eps, r in sorted(metrics.robust.items()) if (iv := r.error[model].interval) is not None]
        if fixed:
            values = [100 * iv[0] for _, iv in fixed]
            below = [v - 100 * iv[1] for v, (_, iv) in zip(values, fixed)]
            above = [100 * iv[2] - v for v, (_, iv) in zip(values, fixed)]
            ax.errorbar([e for e, _ in fixed], values, yerr=[below, above], fmt=marker, color=colour, capsize=3,
                        label=f"{model}: fixed-eps attacks' robust error")
    ax.set_title(f"{dataset} {NORM_LABELS[norm]}: robust error vs eps from {attack} (N = "
                 f"{next(iter(curves.values())).n if curves else 0})".strip(), fontsize=9)
    ax.set_xlabel(f"{NORM_LABELS[norm]} eps ({PIXEL_UNITS})")
    ax.set_ylabel("robust error (%), 95% CI")
    ax.set_xlim(left=0)
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=150, bbox_inches="tight")
    return path
