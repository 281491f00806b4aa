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

from winn_robust.evaluation.metrics import Metrics, Rate
from winn_robust.images import to_unit_range
from winn_robust.units import DEFAULT_NORM, NORM_LABELS, PIXEL_UNITS

# Okabe-Ito colours (distinguishable with colour-vision deficiencies) and one marker per model
COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=150, bbox_inches="tight")
    return path


def _panel(ax: Any, title: str, series: Mapping[str, Sequence[tuple[float, Rate]]], models: Sequence[str],
           norm: str = DEFAULT_NORM) -> None:
    for index, name in enumerate(models):
        points = [(eps, rate.interval) for eps, rate in series.get(name, []) if rate.interval is not None]
        if not points:
            continue
        xs = [eps for eps, _ in points]
        values = [100 * iv[0] for _, iv in points]
        colour, marker = COLOURS[index % len(COLOURS)], MARKERS[index % len(MARKERS)]
        ax.plot(xs, values, marker=marker, color=colour, label=name, linewidth=1.5, markersize=5)
        ax.fill_between(xs, [100 * iv[1] for _, iv in points], [100 * iv[2] for _, iv in points],
                        color=colour, alpha=0.15, linewidth=0)
        if len(points) == 1:  # a single eps still shows its interval
            low, high = 100 * points[0][1][1], 100 * points[0][1][2]
            ax.errorbar(xs, values, yerr=[[values[0] - low], [high - values[0]]], color=colour, capsize=4)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(f"{NORM_LABELS.get(norm, norm)} eps ({PIXEL_UNITS})")
    ax.set_xlim(left=0)
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)


def plot_error_vs_eps(metrics: Metrics, path: str | Path, provenance: Mapping[str, Any] | None = None) -> Path:
    """Adversarial error (percent) vs eps per attack, and the robust error, with 95% CI bands."""
    provenance = provenance or {}
    norm = str(provenance.get("norm") or DEFAULT_NORM)
    dataset = f"{provenance.get('dataset', '')} {NORM_LABELS.get(norm, norm)}".strip()
    panels: list[tuple[str, dict[str, list[tuple[float, Rate]]]]] = []
    for attack in metrics.attacks:
        runs = sorted(metrics.for_attack(attack).items())
        n = sorted({m.n for _, m in runs})
        series = {name: [(eps, m.models[name].adv_error) for eps, m in runs] for name in metrics.models}
        panels.append((f"{dataset} {attack}: adversarial error (N = {', '.join(map(str, n))})".strip(), series))
    if len(metrics.attacks) > 1:
        robust = sorted(metrics.robust.items())
        n = sorted({m.n for _, m in robust})
        series = {name: [(eps, m.error[name]) for eps, m in robust] for name in metrics.models}
        panels.append((f"{dataset} robust error, worst of all attacks (N = {', '.join(map(str, n))})".strip(), series))
    fig = Figure(figsize=(4.6 * len(panels), 3.8))
    axes = [fig.add_subplot(1, len(panels), i + 1) for i in range(len(panels))]
    for ax, (title, series) in zip(axes, panels):
        _panel(ax, title, series, metrics.models, norm)
    axes[0].set_ylabel("error (%), 95% CI")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


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
    return _save(fig, path)


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

    frame = pd.read_csv(metrics_csv)
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
    return _save(fig, path)
