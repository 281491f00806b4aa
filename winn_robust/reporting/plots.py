"""PNG figures of a report: adversarial error vs eps with 95% CI bands, adversarial-example grids.

Uses matplotlib's object API with the Agg canvas (never pyplot), so importing this module
never changes the process-wide backend or needs a display."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torchvision.utils import make_grid

from winn_robust.evaluation.harness import CrossEvalResult
from winn_robust.evaluation.metrics import Metrics, compute_metrics
from winn_robust.images import to_unit_range
from winn_robust.units import PIXEL_UNITS


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=150, bbox_inches="tight")
    return path


def plot_error_vs_eps(sweep_metrics: Metrics, path: str | Path, title: str | None = None) -> Path:
    """Adversarial error (percent) vs eps for every model, with its 95% CI as a band."""
    eps_values = sorted(sweep_metrics.by_eps)
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    for name in sweep_metrics.models:
        intervals = [(e, sweep_metrics.by_eps[e].models[name].adv_error.interval) for e in eps_values]
        defined = [(e, iv) for e, iv in intervals if iv is not None]
        if not defined:
            continue
        xs = [e for e, _ in defined]
        line, = ax.plot(xs, [100 * iv[0] for _, iv in defined], marker="o", label=name)
        ax.fill_between(xs, [100 * iv[1] for _, iv in defined], [100 * iv[2] for _, iv in defined],
                        color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_xlabel(f"eps, {PIXEL_UNITS}")
    ax.set_ylabel("adversarial error (%), 95% CI")
    ax.set_ylim(0, 100)
    ax.set_title(title or f"adversarial error vs eps (N = {sweep_metrics.n})")
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)


def plot_eps_sweep(result: CrossEvalResult, path: str | Path, baseline: str | None = None,
                   title: str | None = None) -> Path:
    """The eps-sweep plot straight from a cross-evaluation over several eps (for `reproduce`)."""
    baseline = baseline or result.model_names[0]
    metrics = compute_metrics(result.labels, result.clean_preds, result.adv_preds, baseline)
    return plot_error_vs_eps(metrics, path, title=title or f"{result.attack}: adversarial error vs eps (N = {result.n})")


def plot_adversarial_examples(images: torch.Tensor, adv_by_model: Mapping[str, torch.Tensor],
                              path: str | Path, n: int = 8) -> Path:
    """Grid of the first n images: a clean row, then per model its adversarial row and its
    perturbation row (adv - clean, scaled so the largest |change| is full contrast; grey = 0)."""
    clean = images[:n].detach().float().cpu()
    advs = {name: adv[:n].detach().float().cpu() for name, adv in adv_by_model.items()}
    max_change = max([float((a - clean).abs().max()) for a in advs.values()] + [1e-12])
    rows, labels = [to_unit_range(clean)], ["clean"]
    for name, adv in advs.items():
        rows += [to_unit_range(adv), (0.5 + (adv - clean) / (2 * max_change)).clamp(0, 1)]
        labels += [f"{name}: adversarial", f"{name}: perturbation"]
    count = clean.shape[0]
    grid = make_grid(torch.cat(rows), nrow=count, padding=2, pad_value=1.0)
    height = clean.shape[-2]
    fig = Figure(figsize=(max(4.0, 0.8 * count + 2), 0.8 * len(rows) + 0.6))
    ax = fig.add_subplot()
    ax.imshow(grid.permute(1, 2, 0).numpy(), interpolation="nearest")
    ax.set_yticks([2 + i * (height + 2) + height / 2 for i in range(len(rows))], labels)
    ax.set_xticks([])
    ax.set_title(f"perturbation rows: grey = unchanged, black/white = max |change| "
                 f"{max_change / 2:.3g} in {PIXEL_UNITS}", fontsize=8)
    return _save(fig, path)
