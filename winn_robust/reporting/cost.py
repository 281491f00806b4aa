"""Robustness beside what it cost to train: the table a reader of a defence paper looks for
first (training time and image-passes next to clean, per-attack and robust error), and the plot
of robust error against training cost (one point per seed, the mean marked).

The cost of a model comes from its run's metrics.csv (recorded in the report's provenance as
`training_cost`): seconds of the training passes (validation and model selection excluded) and
forward / backward image-passes counted by hooks on the model (training/cost.py). Wall time
depends on the machine and on what else ran beside it; passes do not."""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from winn_robust.reporting.provenance import Provenance
from winn_robust.training.cost import TrainingCost

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


@dataclass(frozen=True)
class ModelCost:
    """One model's cost in each seed (None where a seed's report has no cost record) and its
    errors: metric label -> per-seed values (fractions)."""
    model: str
    select_by: str
    best_epochs: tuple[Any, ...]
    costs: tuple[TrainingCost | None, ...]
    errors: Mapping[str, tuple[float, ...]]

    def values(self, field: str) -> list[float]:
        """One TrainingCost field over the seeds that have a cost record."""
        return [float(getattr(c, field)) for c in self.costs if c is not None]

    def mean(self, field: str) -> float:
        values = self.values(field)
        return float(np.mean(values)) if values else math.nan

    def sd(self, field: str) -> float:
        values = self.values(field)
        return float(np.std(values, ddof=1)) if len(values) > 1 else math.nan

    @property
    def complete(self) -> bool:
        return all(c is not None for c in self.costs)


def model_costs(provenances: Sequence[Provenance], models: Sequence[str],
                errors: Mapping[str, Mapping[str, tuple[float, ...]]]) -> list[ModelCost]:
    """The cost records of every model across seeds, from the seeds' results.json provenance."""
    out = []
    for model in models:
        records = [p.model(model) for p in provenances]
        out.append(ModelCost(model, records[0].select_by or "clean", tuple(r.best_epoch for r in records),
                             tuple(r.training_cost for r in records), errors.get(model, {})))
    return out


def has_costs(costs: Sequence[ModelCost]) -> bool:
    return any(any(c is not None for c in m.costs) for m in costs)


def _fmt(value: float, spec: str) -> str:
    return "n/a" if not math.isfinite(value) else format(value, spec)


def cost_table(costs: Sequence[ModelCost], error_labels: Sequence[str], seconds: bool = True) -> list[str]:
    """Markdown: per model the selection rule and chosen epochs, training seconds (mean, sd over
    seeds), forward and backward image-passes (millions) and passes per training image and epoch,
    then the mean of each error. `seconds=False` leaves the wall time out (a seed's table.md: two
    runs of the same work then write the same bytes; the time is in results.json and summary.md)."""
    time_head = "train s (mean) | sd | " if seconds else ""
    lines = ["| model | selected by (epochs) | " + time_head + "forward passes | backward passes | "
             "passes / image / epoch | " + " | ".join(error_labels) + " |",
             "|---" * (5 + 2 * seconds + len(error_labels)) + "|"]
    for m in costs:
        first = next((c for c in m.costs if c), None)  # per image and epoch: by the first seed's epochs and images
        per_image = math.nan
        if first is not None and first.epochs and first.train_images:
            per_image = (m.mean("forward_passes") + m.mean("backward_passes")) / (first.epochs * first.train_images)
        chosen = ", ".join("-" if e is None else str(e) for e in m.best_epochs)
        errs = [_fmt(100 * float(np.mean(m.errors[label])), ".2f") + "%" if m.errors.get(label) else "n/a"
                for label in error_labels]
        time_cells = f"{_fmt(m.mean('train_seconds'), '.1f')} | {_fmt(m.sd('train_seconds'), '.1f')} | " if seconds else ""
        lines.append(f"| {m.model} | {m.select_by} ({chosen}) | {time_cells}{_fmt(m.mean('forward_passes'), ',.0f')} | "
                     f"{_fmt(m.mean('backward_passes'), ',.0f')} | {_fmt(per_image, '.1f')} | " + " | ".join(errs) + " |")
    return lines


def cost_records(costs: Sequence[ModelCost]) -> list[dict[str, Any]]:
    """results.json: every model's per-seed cost records and errors."""
    return [{"model": m.model, "select_by": m.select_by, "best_epochs": list(m.best_epochs),
             "per_seed": [c.to_dict() if c else None for c in m.costs],
             "mean": {k: m.mean(k) for k in ("train_seconds", "forward_passes", "backward_passes")},
             "errors": {k: list(v) for k, v in m.errors.items()}} for m in costs]


def plot_cost(costs: Sequence[ModelCost], error_label: str, path: Path, title: str) -> Path | None:
    """Robust error against training time and against image-passes: one faint point per seed,
    the mean marked large. None when no model has a cost record."""
    if not has_costs(costs):
        return None
    fig = Figure(figsize=(10, 4.2))
    for panel, (key, label) in enumerate((("train_seconds", "training time (s, log scale)"),
                                          ("passes", "forward + backward image-passes (log scale)"))):
        ax = fig.add_subplot(1, 2, panel + 1)
        for i, m in enumerate(costs):
            values = m.errors.get(error_label, ())
            xs = [c.passes if key == "passes" else c.train_seconds for c in m.costs if c]
            ys = [100 * v for c, v in zip(m.costs, values) if c]
            if not xs:
                continue
            colour, marker = f"C{i % 10}", MARKERS[i % len(MARKERS)]
            ax.scatter(xs, ys, color=colour, marker=marker, alpha=0.35, s=25)
            ax.scatter([np.mean(xs)], [np.mean(ys)], color=colour, marker=marker, s=110, edgecolors="black",
                       linewidths=0.8, label=f"{m.model} (mean of {len(xs)})")
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # decade labels only: minor labels overlap
        ax.set_xlabel(label)
        ax.set_ylabel(f"{error_label} error (%)")
        ax.grid(alpha=0.3, which="both")
        if panel == 0:
            ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=150, bbox_inches="tight")
    return path
