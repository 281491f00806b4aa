"""The seed folders an aggregate reads: each one's per_example.csv (reporting/per_example.py
owns the schema) and results.json, and the checks that the folders can be paired (the same
dataset, test images, models, baseline, attacks, eps and attack sizes)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from winn_robust.errors import UserError
from winn_robust.evaluation.indicators import Indicator
from winn_robust.reporting.files import report_files
from winn_robust.reporting.per_example import read_per_example
from winn_robust.reporting.provenance import Provenance
from winn_robust.units import eps_text


@dataclass
class SeedReport:
    """One seed's report folder, parsed: predictions, and what its results.json says."""

    folder: Path
    schema: int
    index: np.ndarray
    labels: np.ndarray
    clean: dict[str, np.ndarray]
    adv: dict[tuple[str, float, str, str], np.ndarray]  # (attack, eps, source, target) -> predictions
    worst: dict[tuple[float, str], np.ndarray]  # (eps, model) -> 1 = robust error (from the file or computed)
    provenance: Provenance = field(default_factory=Provenance)
    indicators: list[Indicator] = field(default_factory=list)
    has_results_json: bool = False
    label: str = ""

    @property
    def n(self) -> int:
        return int(self.labels.shape[0])

    @property
    def models(self) -> list[str]:
        return list(self.clean)

    @property
    def attacks(self) -> list[str]:
        return list(dict.fromkeys(key[0] for key in self.adv))

    @property
    def eps(self) -> list[float]:
        return sorted({key[1] for key in self.adv} | {key[0] for key in self.worst})

    @property
    def seed(self) -> int | None:
        """The training seed (Provenance.report_seed)."""
        return self.provenance.report_seed

    @property
    def runs(self) -> list[tuple[str, float]]:
        """(attack, eps) pairs that ran, in file order."""
        return list(dict.fromkeys((key[0], key[1]) for key in self.adv))


def read_seed_report(path: str | Path) -> SeedReport:
    """Parse a report folder (or its per_example.csv) of either schema (reporting/per_example.py
    owns the format); results.json beside it is optional (provenance, baseline, dataset, seed,
    failure indicators)."""
    csv_path, document = report_files(path, give="report folders")
    provenance = Provenance.from_dict(document.get("provenance"))
    parsed = read_per_example(csv_path, attack=provenance.attack or "unknown")
    indicators = [Indicator.from_dict(r) for r in document.get("indicators") or [] if isinstance(r, Mapping)]
    return SeedReport(folder=csv_path.parent, schema=parsed.schema, index=parsed.index, labels=parsed.labels,
                      clean=parsed.clean, adv=parsed.adv, worst=parsed.worst, provenance=provenance,
                      indicators=indicators, has_results_json=bool(document))


def names_text(values: Sequence[Any]) -> str:
    return ", ".join(str(v) for v in values) or "none"


def eps_list(values: Sequence[float]) -> str:
    return ", ".join(eps_text(e) for e in values) or "none"


def test_set_difference(first: SeedReport, other: SeedReport) -> str:
    """How two folders' test images differ (their number, index or label columns); "" when they
    are the same images."""
    a, b = first.folder, other.folder
    if first.n != other.n:
        return f"{a} has N = {first.n} test images, {b} has N = {other.n}"
    for column, ours, theirs in (("index", first.index, other.index), ("label", first.labels, other.labels)):
        if not np.array_equal(ours, theirs):
            return f"the {column} columns of {a} and {b} differ"
    return ""


def check_same_experiment(seeds: Sequence[SeedReport]) -> None:
    """Refuse folders that cannot be paired: the same folder twice, or another dataset, test
    set, model set, baseline, attack set or eps set than the first folder's."""
    seen: dict[Path, Path] = {}
    for seed in seeds:
        key = seed.folder.resolve()
        if key in seen:
            raise UserError(f"report folder {seed.folder} is given twice (also as {seen[key]}); give each seed's report folder once")
        seen[key] = seed.folder
    first = seeds[0]
    for other in seeds[1:]:
        a, b = first.folder, other.folder
        data_a, data_b = first.provenance.dataset, other.provenance.dataset
        if data_a is not None and data_b is not None and data_a != data_b:
            raise UserError(f"report folders hold different datasets: {a} is {data_a}, {b} is {data_b}; "
                            "aggregate only seeds of one experiment")
        test_sets = test_set_difference(first, other)
        if test_sets:
            raise UserError(f"report folders use different test sets: {test_sets}; evaluate every seed on the same test "
                            "images (same --data and --limit)")
        if set(first.models) != set(other.models):
            raise UserError(f"report folders hold different models: {a} has {names_text(first.models)}, {b} has "
                            f"{names_text(other.models)}; give folders that evaluate the same models (same names)")
        base_a, base_b = first.provenance.baseline, other.provenance.baseline
        if base_a is not None and base_b is not None and base_a != base_b:
            raise UserError(f"report folders name different baselines: {a} has {base_a}, {b} has {base_b}; "
                            "give folders with the same baseline, or name it with --baseline")
        if first.eps != other.eps:
            raise UserError(f"report folders hold different eps: {a} has {eps_list(first.eps)}, {b} has "
                            f"{eps_list(other.eps)}; attack every seed at the same eps")
        if set(first.attacks) != set(other.attacks):
            raise UserError(f"report folders hold different attacks: {a} has {names_text(first.attacks)}, {b} has "
                            f"{names_text(other.attacks)}; attack every seed with the same attacks")
        sizes_a = {(k[0], k[1]): len(v) for k, v in first.adv.items()}
        sizes_b = {(k[0], k[1]): len(v) for k, v in other.adv.items()}
        if sizes_a != sizes_b:
            run = next(r for r in sorted(set(sizes_a) | set(sizes_b), key=str) if sizes_a.get(r) != sizes_b.get(r))
            raise UserError(f"report folders ran {run[0]} at eps {eps_text(run[1])} on different images: {a} on "
                            f"{sizes_a.get(run, 0)}, {b} on {sizes_b.get(run, 0)}; use the same --attack-limit for every seed")


def seed_labels(seeds: Sequence[SeedReport]) -> list[str]:
    """Short unique names for table columns: 'seed <s>' from results.json, else the folder names,
    else 'run 1', 'run 2', ... (results.json lists each label's folder)."""
    from_provenance = [f"seed {s.seed}" for s in seeds if s.seed is not None]
    if len(from_provenance) == len(seeds) and len(set(from_provenance)) == len(seeds):
        return from_provenance
    names = [s.folder.resolve().name for s in seeds]
    if len(set(names)) == len(names) and all(names):
        return names
    return [f"run {i + 1}" for i in range(len(seeds))]
