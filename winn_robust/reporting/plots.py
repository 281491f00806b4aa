"""PNG figures of a report: error vs eps with 95% CI bands (one panel per attack, and one for the
robust error), and the adversarial examples that were counted, each labelled with its true
class and the clean and adversarial predictions.

Uses matplotlib's object API with the Agg canvas (never pyplot), so importing this module never
changes the process-wide backend or needs a display."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from winn_robust.errors import UserError
from winn_robust.evaluation.metrics import Metrics, Rate
from winn_robust.images import to_unit_range
from winn_robust.reporting.provenance import Provenance
from winn_robust.storage import atomic_savefig
from winn_robust.units import DEFAULT_NORM, NORM_LABELS, PIXEL_UNITS, eps_text

# Okabe-Ito colours (distinguishable with colour-vision deficiencies) and one marker per model
COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Every figure of a report is saved alike: PNG, 150 dpi, tight."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    return atomic_savefig(fig, path, dpi=150, bbox_inches="tight")


MAX_COLUMNS = 3  # wider figures wrap into rows, so titles stay readable at print size
METRICS_SHOWN = ("error", "accuracy")


def _shown(rate_values: tuple[float, float, float], metric: str) -> tuple[float, float, float]:
    """(value, low, high) in percent of the metric shown: error as computed, or accuracy = 1 - error."""
    value, low, high = rate_values
    if metric == "accuracy":
        return 100 * (1 - value), 100 * (1 - high), 100 * (1 - low)
    return 100 * value, 100 * low, 100 * high


def _axes_grid(fig: Figure, count: int) -> list[Any]:
    columns = min(MAX_COLUMNS, max(count, 1))
    rows = -(-count // columns)
    return [fig.add_subplot(rows, columns, i + 1) for i in range(count)]


def _panel(ax: Any, title: str, series: Mapping[str, Sequence[tuple[float, Rate]]], models: Sequence[str],
           metric: str = "error", norm: str = DEFAULT_NORM) -> None:
    for index, name in enumerate(models):
        points = [(eps, _shown(rate.interval, metric)) for eps, rate in series.get(name, []) if rate.interval is not None]
        if not points:
            continue
        xs = [eps for eps, _ in points]
        values = [iv[0] for _, iv in points]
        colour, marker = COLOURS[index % len(COLOURS)], MARKERS[index % len(MARKERS)]
        ax.plot(xs, values, marker=marker, color=colour, label=name, linewidth=1.5, markersize=5)
        ax.fill_between(xs, [iv[1] for _, iv in points], [iv[2] for _, iv in points],
                        color=colour, alpha=0.15, linewidth=0)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(f"{NORM_LABELS.get(norm, norm)} eps ({PIXEL_UNITS})")
    ax.set_xlim(left=0)
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)


def _points_panel(ax: Any, title: str, entries: Sequence[tuple[str, Mapping[str, Rate]]], models: Sequence[str],
                  metric: str = "error", norm: str = DEFAULT_NORM) -> None:
    """Attacks run at a single eps: one column per attack (its N under its name), one marker per
    model with its 95% CI as an error bar, instead of a near-empty line plot."""
    width = 0.7 / max(len(models), 1)
    for index, name in enumerate(models):
        colour, marker = COLOURS[index % len(COLOURS)], MARKERS[index % len(MARKERS)]
        for column, (_, rates) in enumerate(entries):
            rate = rates.get(name)
            if rate is None or rate.interval is None:
                continue
            value, low, high = _shown(rate.interval, metric)
            x = column + (index - (len(models) - 1) / 2) * width
            ax.errorbar([x], [value], yerr=[[value - low], [high - value]], color=colour, marker=marker, capsize=4,
                        markersize=6, linestyle="none", label=name if column == 0 else None)
            ax.annotate(f"{value:.1f}", (x, value), textcoords="offset points", xytext=(6, -3), fontsize=7, color=colour)
    ax.set_xticks(range(len(entries)), [label for label, _ in entries], fontsize=8)
    ax.set_xlim(-0.6, len(entries) - 0.4)
    ax.set_title(title, fontsize=9)
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3, axis="y")


def plot_error_vs_eps(metrics: Metrics, path: str | Path, provenance: Provenance | None = None,
                      metric: str = "error") -> Path:
    """Adversarial error (or accuracy, `metric`) in percent vs eps per attack run at several eps,
    and the robust error, with 95% CI bands; attacks run at one eps share a panel of points with
    error bars. Every title gives that attack's own N; more than three panels wrap into rows."""
    provenance = provenance or Provenance()
    norm = provenance.threat_norm
    dataset = (provenance.dataset or "") + ("" if norm == DEFAULT_NORM else f" {NORM_LABELS.get(norm, norm)}")
    metric = provenance.metric or metric
    label = "accuracy" if metric == "accuracy" else "error"
    panels: list[tuple[str, Any]] = []
    single: dict[float, list[tuple[str, Mapping[str, Rate]]]] = {}
    for attack in metrics.attacks:
        runs = sorted(metrics.for_attack(attack).items())
        n = sorted({m.n for _, m in runs})
        if len(runs) == 1:
            eps, m = runs[0]
            single.setdefault(eps, []).append((f"{attack}\nN = {m.n}", {name: m.models[name].adv_error
                                                                         for name in metrics.models}))
            continue
        series = {name: [(eps, m.models[name].adv_error) for eps, m in runs] for name in metrics.models}
        panels.append((f"{dataset} {attack}: adversarial {label} (N = {', '.join(map(str, n))})".strip(), series))
    if len(metrics.attacks) > 1:
        robust = sorted(metrics.robust.items())
        if len(robust) > 1:
            n = sorted({m.n for _, m in robust})
            series = {name: [(eps, m.error[name]) for eps, m in robust] for name in metrics.models}
            panels.append((f"{dataset} robust {label}, worst of all attacks (N = {', '.join(map(str, n))})".strip(),
                           series))
        for eps in single:
            if eps in metrics.robust:
                single[eps].append((f"robust\n(any attack)\nN = {metrics.robust[eps].n}",
                                    dict(metrics.robust[eps].error)))
    for eps, entries in single.items():
        panels.append((f"{dataset} adversarial {label} at eps {eps_text(eps)}".strip(), entries))
    fig = Figure(figsize=(4.8 * min(MAX_COLUMNS, len(panels)), 3.9 * -(-len(panels) // MAX_COLUMNS)))
    axes = _axes_grid(fig, len(panels))
    for ax, (title, content) in zip(axes, panels):
        if isinstance(content, dict):
            _panel(ax, title, content, metrics.models, metric, norm)
        else:
            _points_panel(ax, title, content, metrics.models, metric, norm)
        ax.set_ylabel(f"{label} (%), 95% CI", fontsize=8)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_adversarial_examples(images: torch.Tensor, rows: Sequence[tuple[str, torch.Tensor, Sequence[int]]],
                              labels: Sequence[int], clean_preds: Mapping[str, Sequence[int]],
                              class_names: Sequence[str], path: str | Path, title: str = "") -> Path:
    """The first images, clean, then one row per (attack, model) with the adversarial example that
    was counted: each tile says its true class (y), and the clean and adversarial predictions."""
    count = images.shape[0]
    grid_rows = 1 + len(rows)
    fig = Figure(figsize=(1.25 * count + 1.6, 1.45 * grid_rows + 0.5))

    def name(k: int) -> str:
        return class_names[k] if 0 <= k < len(class_names) else str(k)

    def tile(row: int, col: int, image: torch.Tensor, caption: str, wrong: bool, row_label: str) -> None:
        ax = fig.add_subplot(grid_rows, count, row * count + col + 1)
        pixels = to_unit_range(image)
        ax.imshow(pixels.permute(1, 2, 0).squeeze(-1).numpy(), cmap="gray" if pixels.shape[0] == 1 else None,
                  vmin=0, vmax=1, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(caption, fontsize=6, color="#D55E00" if wrong else "black")
        if col == 0:
            ax.set_ylabel(row_label, fontsize=7, rotation=0, ha="right", va="center")

    first = next(iter(clean_preds.values()), [])
    for col in range(count):
        tile(0, col, images[col], f"y={name(labels[col])}" + (f"\nclean: {name(first[col])}" if len(first) > col else ""),
             False, "clean")
    for r, (label, adversarial, predictions) in enumerate(rows, start=1):
        model = label.split(" on ")[-1]
        for col in range(min(count, adversarial.shape[0])):
            clean = clean_preds.get(model, [])
            caption = (f"y={name(labels[col])}\n" + (f"clean {name(clean[col])} → " if len(clean) > col else "")
                       + f"adv {name(predictions[col])}")
            tile(r, col, adversarial[col], caption, predictions[col] != labels[col], label)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


TRAINING_PANELS = (
    ("losses", (("loss", "total loss"), ("ce", "cross-entropy"))),
    ("Wasserstein estimate and gradient penalty", (("wasserstein_estimate", "W estimate: mean f(pos) - mean f(neg)"),
                                                   ("gradient_penalty", "gradient penalty"))),
    ("synthesis steps per class batch", (("synthesis_steps_mean", "mean"), ("synthesis_steps_max", "max"))),
    ("error (%)", (("train_error", "training"), ("val_error", "validation"))),
)


def plot_training_metrics(metrics_csv: str | Path, path: str | Path) -> Path:
    """A run's metrics.csv, one panel per quantity against the epoch: the losses, the Wasserstein
    estimate and gradient penalty (WINN), the synthesis steps, and the training and validation error
    (the best validation epoch, the one best.pt holds, is marked)."""
    import pandas as pd

    try:
        frame = pd.read_csv(metrics_csv)
        if "epoch" not in frame or "method" not in frame:
            raise ValueError("no epoch and method columns")
        frame["epoch"] = pd.to_numeric(frame["epoch"], errors="raise")
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise UserError(f"{metrics_csv} is not a metrics.csv written by winn-robust ({' '.join(str(exc).split())[:100]}); "
                        "`train --resume` rewrites it from last.pt") from None
    method = str(frame["method"].iloc[0]) if len(frame) else ""
    fig = Figure(figsize=(13, 3.2))
    for index, (title, series) in enumerate(TRAINING_PANELS):
        ax = fig.add_subplot(1, len(TRAINING_PANELS), index + 1)
        drawn = 0
        for (column, label), colour, marker in zip(series, COLOURS, MARKERS):
            if column not in frame or frame[column].isna().all() or (title.startswith("synthesis") and method == "baseline"):
                continue
            values = frame[column] * (100 if title.startswith("error") else 1)
            ax.plot(frame["epoch"], values, marker=marker, color=colour, label=label, markersize=3)
            drawn += 1
        if title.startswith("error") and "val_error" in frame and len(frame):
            best = frame.loc[frame["val_error"].idxmin()]
            ax.axvline(best["epoch"], color="grey", linestyle=":", linewidth=1)
            ax.set_title(f"{title}; best.pt = epoch {int(best['epoch'])}", fontsize=9)
        else:
            ax.set_title(title if drawn else f"{title} (none for {method})", fontsize=9)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if drawn:
            ax.legend(fontsize=7)
    fig.suptitle(f"{method} training, {len(frame)} epochs", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


GENERATIVE_SKIP = ("epoch", "method", "cascade", "bytes_written")


def plot_generative_metrics(metrics_csv: str | Path, path: str | Path) -> Path:
    """A generative run's metrics.csv: one small panel per numeric column against the iteration
    (cascade boundaries dotted)."""
    import pandas as pd

    try:
        frame = pd.read_csv(metrics_csv)
        frame["epoch"] = pd.to_numeric(frame["epoch"], errors="raise")
    except (KeyError, ValueError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise UserError(f"{metrics_csv} is not a metrics.csv written by winn-robust ({' '.join(str(exc).split())[:100]}); "
                        "`train --resume` rewrites it from last.pt") from None
    columns = [c for c in frame.columns if c not in GENERATIVE_SKIP and pd.api.types.is_numeric_dtype(frame[c])
               and not frame[c].isna().all()]
    per_row = 4
    rows = max(1, -(-len(columns) // per_row))
    fig = Figure(figsize=(3.3 * per_row, 2.6 * rows))
    method = str(frame["method"].iloc[0]) if len(frame) and "method" in frame else ""
    for index, column in enumerate(columns):
        ax = fig.add_subplot(rows, per_row, index + 1)
        ax.plot(frame["epoch"], frame[column], marker="o", markersize=2, color=COLOURS[0])
        if "cascade" in frame:
            for boundary in frame["epoch"][frame["cascade"].diff().fillna(0) != 0]:
                ax.axvline(boundary - 0.5, color="grey", linestyle=":", linewidth=1)
        ax.set_title(column.replace("_", " "), fontsize=9)
        ax.set_xlabel("iteration", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle(f"{method} training metrics", fontsize=10)
    fig.tight_layout()
    return atomic_savefig(fig, path, dpi=110)
