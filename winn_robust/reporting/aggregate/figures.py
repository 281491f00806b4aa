"""The aggregate's plots: error_vs_eps.png (a panel per attack run at several eps, points with
intervals for attacks run at one eps) and one figure per attack when there are several."""
from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from winn_robust.evaluation.seeds import (
    BOOTSTRAP_METHOD,
    BootstrapInterval,
)
from winn_robust.reporting.aggregate.statistics import ROBUST_ATTACK, Aggregate
from winn_robust.reporting.plots import MARKERS, save_figure
from winn_robust.units import PIXEL_UNITS, eps_text


def _shown_value(value: float, metric: str) -> float:
    return 100 * (1 - value) if metric == "accuracy" else 100 * value


def _shown_interval(interval: BootstrapInterval | None, metric: str) -> tuple[float, float]:
    if interval is None:
        return np.nan, np.nan
    if metric == "accuracy":
        return 100 * (1 - interval.high), 100 * (1 - interval.low)
    return 100 * interval.low, 100 * interval.high


def _attack_n(agg: Aggregate, attack: str, eps: Sequence[float]) -> str:
    sizes = sorted({agg.row(agg.baseline, "adv_error", attack, e).n_images or agg.n for e in eps})
    return ", ".join(map(str, sizes))


def _draw_attack(ax: Any, agg: Aggregate, attack: str, metric: str = "error") -> None:
    eps = sorted({row.eps for row in agg.rows if row.metric == "adv_error" and row.attack == attack and row.eps is not None})
    colors = [f"C{i % 10}" for i in range(len(agg.models))]
    for i, model in enumerate(agg.models):
        rows = [agg.row(model, "adv_error", attack, e) for e in eps]
        for s in range(len(agg.seeds)):
            ax.plot(eps, [_shown_value(r.per_seed[s], metric) for r in rows], color=colors[i], alpha=0.25, linewidth=0.8)
        ax.plot(eps, [_shown_value(r.summary.mean, metric) for r in rows], color=colors[i],
                marker=MARKERS[i % len(MARKERS)], linewidth=1.8, label=f"{model} (mean)")
        bands = [_shown_interval(r.mean_interval, metric) for r in rows]
        ax.fill_between(eps, [b[0] for b in bands], [b[1] for b in bands], color=colors[i], alpha=0.2, linewidth=0)
    ax.set_xlim(0, max(eps) * 1.05 if eps and max(eps) > 0 else 1)
    ax.set_ylim(0, 100)
    ax.set_xlabel(f"eps, {PIXEL_UNITS}")
    ax.set_ylabel(f"adversarial {metric} (%)")
    ax.set_title(f"{agg.dataset}, {attack}: N = {_attack_n(agg, attack, eps)}, {len(agg.seeds)} seeds", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def _draw_single(ax: Any, agg: Aggregate, eps: float, entries: Sequence[tuple[str, str, str]], metric: str = "error") -> None:
    """Attacks run at one eps: a column per attack (its N under its name), the seeds as faint
    dots and the mean over seeds with its 95% hierarchical-bootstrap interval as an error bar."""
    width = 0.7 / max(len(agg.models), 1)
    for i, model in enumerate(agg.models):
        colour = f"C{i % 10}"
        for column, (_, metric_name, attack) in enumerate(entries):
            row = agg.row(model, metric_name, attack, eps)
            x = column + (i - (len(agg.models) - 1) / 2) * width
            ax.plot([x] * len(row.per_seed), [_shown_value(v, metric) for v in row.per_seed], linestyle="none",
                    marker=".", color=colour, alpha=0.35)
            mean = _shown_value(row.summary.mean, metric)
            low, high = _shown_interval(row.mean_interval, metric)
            ax.errorbar([x], [mean], yerr=[[mean - low], [high - mean]], color=colour, marker=MARKERS[i % len(MARKERS)],
                        capsize=4, linestyle="none", label=f"{model} (mean)" if column == 0 else None)
            ax.annotate(f"{mean:.1f}", (x, mean), textcoords="offset points", xytext=(6, -3), fontsize=7, color=colour)
    ax.set_xticks(range(len(entries)), [label for label, _, _ in entries], fontsize=8)
    ax.set_xlim(-0.6, len(entries) - 0.4)
    ax.set_ylim(0, 100)
    ax.set_ylabel(f"{metric} (%)")
    ax.set_title(f"{agg.dataset}, attacks at eps {eps_text(eps)}: {len(agg.seeds)} seeds", fontsize=9)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)


def _save_figure(fig: Figure, path: Path) -> Path:
    with warnings.catch_warnings():  # fill_between with NaN bands only warns
        warnings.simplefilter("ignore", RuntimeWarning)
        return save_figure(fig, path)


PANEL_COLUMNS = 3  # wider figures wrap into rows


def _panels(agg: Aggregate) -> list[tuple[str, Any]]:
    """('sweep', attack) for attacks run at several eps; ('single', (eps, entries)) for each eps
    at which attacks ran at that eps only (with the robust error there)."""
    panels: list[tuple[str, Any]] = []
    single: dict[float, list[tuple[str, str, str]]] = {}
    for attack in agg.attacks:
        eps = sorted({r.eps for r in agg.rows if r.metric == "adv_error" and r.attack == attack and r.eps is not None})
        if len(eps) > 1:
            panels.append(("sweep", attack))
        elif eps:
            single.setdefault(eps[0], []).append((f"{attack}\nN = {_attack_n(agg, attack, eps)}", "adv_error", attack))
    for at, entries in single.items():
        if len(agg.attacks) > 1:
            n = agg.row(agg.baseline, "robust_error", ROBUST_ATTACK, at).n_images or agg.n
            entries.append((f"robust\n(any attack)\nN = {n}", "robust_error", ROBUST_ATTACK))
        panels.append(("single", (at, entries)))
    return panels


def plot_aggregate(agg: Aggregate, out_dir: Path, metric: str = "error") -> dict[str, Path]:
    """error_vs_eps.png (a panel per attack run at several eps: faint lines per seed, the mean over
    seeds and its 95% hierarchical-bootstrap band; a panel of points with intervals for the attacks
    run at one eps; at most three panels a row) and, with several attacks, error_vs_eps_<attack>.png."""
    caption = (f"faint: one per seed; band / bars: 95% CI of the mean ({BOOTSTRAP_METHOD.split(':')[0]}, "
               f"{agg.resamples:,} resamples)")
    files: dict[str, Path] = {}
    panels = _panels(agg)
    columns = min(PANEL_COLUMNS, len(panels))
    rows = -(-len(panels) // columns)
    fig = Figure(figsize=(5.5 * columns, 4.2 * rows))
    for i, (kind, content) in enumerate(panels):
        ax = fig.add_subplot(rows, columns, i + 1)
        if kind == "sweep":
            _draw_attack(ax, agg, content, metric)
        else:
            _draw_single(ax, agg, content[0], content[1], metric)
    fig.suptitle(f"adversarial {metric} vs eps; " + caption, fontsize=8)
    files["error_vs_eps.png"] = _save_figure(fig, out_dir / "error_vs_eps.png")
    if len(agg.attacks) > 1:
        for kind, content in panels:
            for attack in [content] if kind == "sweep" else [e[2] for e in content[1] if e[1] == "adv_error"]:
                name = "error_vs_eps_" + re.sub(r"[^A-Za-z0-9._-]", "_", attack) + ".png"
                fig = Figure(figsize=(6, 4.2))
                if kind == "sweep":
                    _draw_attack(fig.add_subplot(), agg, attack, metric)
                else:
                    _draw_single(fig.add_subplot(), agg, content[0], [e for e in content[1] if e[2] == attack], metric)
                fig.suptitle(caption, fontsize=7)
                files[name] = _save_figure(fig, out_dir / name)
    return files
