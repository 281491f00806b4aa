"""summary.md of a `reproduce` run: the command, the machine, stage timings, and our headline
numbers beside the paper's (Tables 2-4) where the paper has this dataset and architecture."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from winn_robust.evaluation.indicators import WARN, Indicator
from winn_robust.evaluation.metrics import McNemar, Metrics, Rate
from winn_robust.evaluation.seeds import seed_caveat
from winn_robust.paper import PAPER_NUMBERS
from winn_robust.storage import atomic_write_text
from winn_robust.units import eps_list_text, eps_text


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
    lines = [f"| model | ours: clean | paper: clean | ours: {attack} error (eps {eps_text(eps)}) | paper: FGSM error | "
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
        lines += ["", f"The same comparison under stronger attacks (eps {eps_text(eps)}; the paper used FGSM only):", "",
                  "| model | attack | N | adversarial error | robust error (all attacks) |", "|---|---|---|---|---|"]
        for name in names:
            for other, m in stronger:
                lines.append(f"| {name} | {other} | {m.n} | {pct(m.models[name].adv_error)} | "
                             f"{pct(metrics.robust[eps].error[name])} |")
    return lines


SIGNIFICANCE = 0.05  # McNemar p below this is called significant in the one-seed verdict


def _change(diff: float, test: McNemar, interval: tuple[float, float] | None = None) -> tuple[str, str]:
    """('lowers', 'by 5.0 points (95% CI 1.7 to 8.3 over the test images; McNemar p 0.031, b=.., c=.., significant)'),
    worded like the multi-seed verdict."""
    significance = "significant" if test.pvalue < SIGNIFICANCE else "not significant"
    test_text = f"exact McNemar p {test.pvalue:.3g} (b={test.b}, c={test.c}), {significance} at {SIGNIFICANCE:g}"
    ci = ""
    if interval is not None:
        low, high = (-interval[1], -interval[0]) if diff < 0 else interval
        ci = f"95% CI {100 * low:.1f} to {100 * high:.1f} over the test images; "
    if diff == 0:
        return "leaves", f"unchanged (0.0 points; {ci}{test_text})"
    return ("lowers" if diff < 0 else "raises"), f"by {100 * abs(diff):.1f} points ({ci}{test_text})"


def one_seed_verdict(metrics: Metrics, eps: float) -> str:
    """The verdict sentence of a one-seed report, as the multi-seed reports state theirs, with the
    per-image exact McNemar test in place of the seed bootstrap, and the one-seed caveat."""
    sentences = []
    base = metrics.baseline
    for method in metrics.models[1:]:
        clauses = []
        for attack in metrics.attacks:
            at_run = metrics.by_run.get((attack, eps))
            if at_run is None:
                continue
            row, base_row = at_run.models[method], at_run.models[base]
            diff = row.adv_difference
            assert row.mcnemar_adv is not None and row.adv_error.value is not None and base_row.adv_error.value is not None
            value = row.adv_error.value - base_row.adv_error.value
            verb, amount = _change(value, row.mcnemar_adv, None if diff is None else (diff.low, diff.high))
            clauses.append(f"{verb} {attack} adversarial error at eps {eps_text(eps)} (N = {at_run.n}) {amount}")
        if clauses:
            sentences.append(f"On 1 seed {method} " + "; ".join(clauses) + f", against the baseline ({base}).")
        robust = metrics.robust.get(eps)
        mine, theirs = (robust.error[method].value, robust.error[base].value) if robust is not None else (None, None)
        if robust is not None and mine is not None and theirs is not None:
            verb, amount = _change(mine - theirs, robust.mcnemar[method])
            sentences.append(f"It {verb} robust error at eps {eps_text(eps)} (N = {robust.n}) {amount}.")
        clean, clean_base = metrics.clean_error[method].value, metrics.clean_error[base].value
        if clean is not None and clean_base is not None:
            verb, amount = _change(clean - clean_base, metrics.mcnemar_clean[method])
            sentences.append(f"{method} {verb} clean error {amount}.")
    sentences.append(seed_caveat(1))
    return " ".join(sentences)


def wall_time_line(timings: Mapping[str, float | None], this_run: float | None = None) -> str:
    """The time of the work behind the numbers (each job's own, kept in its folder), then, apart,
    the time of the run that wrote this summary (which may have skipped finished jobs)."""
    known = [v for v in timings.values() if v is not None]
    parts = [f"{k} {'not recorded' if v is None else f'{v:.0f} s'}" for k, v in timings.items()]
    text = "- wall time of the work behind these numbers: " + ", ".join(parts)
    if known and len(timings) > 1:
        text += f" (sum {sum(known):.0f} s)"
    if this_run is not None:
        text += f"; this summary was written by a run of {this_run:.0f} s (finished jobs are skipped, not redone)"
    return text


def write_summary(out: Path, run: RunDescription, timings: Mapping[str, float | None], metrics: Metrics,
                  names: list[str], methods: list[str], indicators: Sequence[Indicator] = (),
                  this_run: float | None = None) -> Path:
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
              "model-space norm 2*eps)") + f"; tables at {eps_list_text(run.eps)}, "
             f"sweep {eps_list_text(run.sweep) or 'none'}",
             wall_time_line(timings, this_run), "",
             "## Verdict", "", one_seed_verdict(metrics, run.eps[0]), "",
             *trust, "## Ours beside the paper (Tables 2-4)", "", *paper_comparison(run, metrics, names, methods),
             "", "Full tables with 95% confidence intervals and McNemar tests: table.md; every number per image: per_example.csv.",
             ""]
    path = Path(out) / "summary.md"
    atomic_write_text(path, "\n".join(lines))
    return path
