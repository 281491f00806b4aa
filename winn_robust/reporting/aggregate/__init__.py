"""The aggregate report over several seeds: one report folder per training seed (a baseline and
one or more methods evaluated on the same test images) -> table.md, summary.md, table.csv,
results.json and error-vs-eps plots, computed from each folder's per_example.csv alone.

The package: seed_reports (read and pair the folders) -> statistics (AggregateRow per model x
metric x attack x eps) -> verdicts (sentences) -> rendering (table.md, summary.md, table.csv,
results.json) and figures (plots); `write_aggregate` here runs them in that order.

One seed says little: the seed can move a robustness number by more than the method does. So
every method-vs-baseline difference is paired within its seed folder, averaged over seeds, and
given a 95% interval that covers seed variance and test-set sampling (the statistics live in
`winn_robust.evaluation.seeds`); the verdict paragraph says "significant" only when that
interval excludes 0.

per_example.csv columns read here (schema 2, and schema 1 of older reports):
    index, label, clean:<model>
    adv[attack=<attack>,eps=<eps>,src=<source>]:<target>    (schema 1: adv[eps=<eps>,src=<source>]:<target>)
    worst[eps=<eps>]:<model>   1 = wrong clean or on at least one adversarial example at eps
                               (schema 1 has none: computed from the clean and adv columns)
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from winn_robust.errors import SettingError
from winn_robust.evaluation.seeds import DEFAULT_BOOTSTRAP_SEED, DEFAULT_RESAMPLES
from winn_robust.reporting.aggregate.figures import plot_aggregate
from winn_robust.reporting.aggregate.rendering import aggregate_document, aggregate_frame, aggregate_markdown, summary_markdown
from winn_robust.reporting.aggregate.seed_reports import SeedReport, check_same_experiment, read_seed_report
from winn_robust.reporting.aggregate.statistics import Aggregate, AggregateRow, aggregate_costs, aggregate_seeds
from winn_robust.reporting.aggregate.verdicts import reference_verdict, verdict
from winn_robust.reporting.cost import plot_cost
from winn_robust.reporting.files import write_json
from winn_robust.reporting.per_example import format_eps
from winn_robust.storage import atomic_write_text


def write_aggregate(folders: Sequence[str | Path], out_dir: str | Path, baseline: str | None = None,
                    table_eps: Sequence[float] | None = None, resamples: int = DEFAULT_RESAMPLES,
                    bootstrap_seed: int = DEFAULT_BOOTSTRAP_SEED, reference: str | None = None,
                    metric: str = "error") -> dict[str, Path]:
    """Read the seed folders, check they pair up, and write table.md, summary.md, table.csv,
    results.json and the plots into out_dir (which must not be one of the seed folders)."""
    out_dir = Path(out_dir)
    seeds = [read_seed_report(folder) for folder in folders]
    for seed in seeds:
        if seed.folder.resolve() == out_dir.resolve():
            raise SettingError("out", f"{out_dir} is one of the seed folders; its table.md would be overwritten: "
                            "give a new folder for the aggregate")
    agg = aggregate_seeds(seeds, baseline=baseline, table_eps=table_eps, resamples=resamples, bootstrap_seed=bootstrap_seed,
                          reference=reference)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {name: out_dir / name for name in ("table.md", "summary.md", "table.csv", "results.json")}
    atomic_write_text(files["table.md"], aggregate_markdown(agg, metric))
    atomic_write_text(files["summary.md"], summary_markdown(agg))
    atomic_write_text(files["table.csv"], aggregate_frame(agg).to_csv(index=False))
    write_json(files["results.json"], aggregate_document(agg))
    files.update(plot_aggregate(agg, out_dir, metric))
    cost_plot = plot_cost(aggregate_costs(agg), "robust", out_dir / "cost.png",
                          f"{agg.dataset}: robust error at eps {format_eps(agg.table_eps[0])} against training cost "
                          f"({len(agg.seeds)} seeds; faint: one seed, large: the mean)")
    if cost_plot is not None:
        files["cost.png"] = cost_plot
    return files


__all__ = ["Aggregate", "AggregateRow", "SeedReport", "aggregate_costs", "aggregate_document", "aggregate_frame",
           "aggregate_markdown", "aggregate_seeds", "check_same_experiment", "plot_aggregate", "read_seed_report",
           "reference_verdict", "summary_markdown", "verdict", "write_aggregate"]
