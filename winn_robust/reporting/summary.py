"""summary.md of a `reproduce` run: the command, the machine, stage timings, and our headline
numbers beside the paper's (Tables 2-4) where the paper has this dataset and architecture."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from winn_robust.evaluation.indicators import WARN, Indicator
from winn_robust.evaluation.metrics import Metrics, Rate
from winn_robust.paper import PAPER_NUMBERS


@dataclass(frozen=True)
class RunDescription:
    """What a summary says about the run that produced the report."""
    preset: str
    command: str
    machine: str
    data: str
    arch: str
    epochs: int
    eps: Sequence[float]
    sweep: Sequence[float]
    train_size: int = 0
    val_size: int = 0
    norm: str = "linf"          # the evaluation's threat model; the paper's numbers are L-inf


def paper_comparison(run: RunDescription, metrics: Metrics, names: list[str], methods: list[str]) -> list[str]:
    """Our headline numbers (FGSM, the paper's attack) beside the paper's, where the paper has
    this dataset and arch; then the same rows under every stronger attack that ran."""
    eps = run.eps[0]
    attack = "fgsm" if ("fgsm", eps) in metrics.by_run else next(a for a, e in metrics.by_run if e == eps)
    at_run = metrics.by_run[(attack, eps)]
    lines = [f"| model | ours: clean | paper: clean | ours: {attack} error (eps {eps:g}) | paper: FGSM error | "
             "ours: corr. by method | paper | ours: corr. by baseline | paper |", "|---" * 9 + "|"]

    def pct(rate: Rate | None) -> str:
        return "n/a" if rate is None or rate.value is None else f"{100 * rate.value:.2f}%"

    def paper(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}%"

    for name, method in zip(names, methods):
        row = at_run.models[name]
        ref = (PAPER_NUMBERS.get((run.data, run.arch, method)) if run.norm == "linf" else None) or (None, None, None, None)
        lines.append(f"| {name} | {pct(row.clean_error)} | {paper(ref[0])} | {pct(row.adv_error)} | {paper(ref[1])} | "
                     f"{pct(row.correction_by_method) if method != 'baseline' else '-'} | {paper(ref[2])} | "
                     f"{pct(row.correction_by_baseline) if method != 'baseline' else '-'} | {paper(ref[3])} |")
    if run.norm != "linf":
        lines += ["", "The paper's numbers are L-inf FGSM; this evaluation is L2, so its columns show '-'."]
    elif not any(PAPER_NUMBERS.get((run.data, run.arch, m)) for m in methods):
        lines.append("")
        lines.append(f"The paper reports no numbers for {run.data} / {run.arch}; its columns show '-'.")
    stronger = [(a, m) for (a, e), m in metrics.by_run.items() if e == eps and a != attack]
    if stronger:
        lines += ["", f"The same comparison under stronger attacks (eps {eps:g}; the paper used FGSM only):", "",
                  "| model | attack | N | adversarial error | robust error (all attacks) |", "|---|---|---|---|---|"]
        for name in names:
            for other, m in stronger:
                lines.append(f"| {name} | {other} | {m.n} | {pct(m.models[name].adv_error)} | "
                             f"{pct(metrics.robust[eps].error[name])} |")
    return lines


def write_summary(out: Path, run: RunDescription, timings: dict[str, float], metrics: Metrics,
                  names: list[str], methods: list[str], indicators: Sequence[Indicator] = ()) -> Path:
    warned = [i for i in indicators if i.status == WARN]
    trust = ["## Can these numbers be trusted?", "",
             *(f"- {name}: " + ("no warnings" if not [i for i in warned if i.model == name] else "; ".join(
                 sorted({i.title for i in warned if i.model == name}))) for name in names),
             "", "Details, values and thresholds: table.md.", ""]
    lines = [f"# winn-robust reproduce: preset `{run.preset}`", "",
             f"- command: `{run.command}`", f"- machine: {run.machine}",
             f"- data: {run.data}, arch {run.arch}, methods {', '.join(methods)}, "
             f"{run.epochs} epochs; test images N = {metrics.n}",
             f"- split: {run.train_size:,} training / {run.val_size:,} validation images (a seeded random split of the "
             f"dataset's training set; the test set is only evaluated)",
             ("- eps in [0, 1] pixel units (models see [-1, 1]; model-space step 2*eps)" if run.norm == "linf" else
              "- threat model L2: eps is the L2 norm of the perturbation in [0, 1] pixel units (models see [-1, 1]; "
              "model-space norm 2*eps)") + f"; tables at {list(run.eps)}, "
             f"sweep {list(run.sweep)}",
             "- wall time: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()), "",
             *trust, "## Ours beside the paper (Tables 2-4)", "", *paper_comparison(run, metrics, names, methods),
             "", "Full tables with 95% confidence intervals and McNemar tests: table.md; every number per image: per_example.csv.",
             ""]
    path = Path(out) / "summary.md"
    path.write_text("\n".join(lines))
    return path
