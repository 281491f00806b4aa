"""The aggregate over seeds: numbers recomputed by hand from tiny per_example.csv files, the
statistics (hierarchical bootstrap, probability of improvement, paired t-test) on cases with a
known answer, the old per_example schema, and the `report A B C --out AGG` command."""
from __future__ import annotations

import json
import statistics
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy.stats import ttest_rel

from tests.helpers import one_line_error
from winn_robust.cli import main
from winn_robust.evaluation.seeds import (
    DIFFERENCE_VALUES,
    hierarchical_bootstrap,
    paired_difference_counts,
    paired_ttest_pvalue,
    probability_of_improvement,
    summarize_seeds,
)
from winn_robust.reporting.aggregate import aggregate_seeds, read_seed_report, verdict

N = 20
LABELS = np.arange(N) % 10
EPS = (0.0625, 0.125)
# images each model gets wrong, per seed 0, 1, 2: a prefix of the test set for clean and fgsm,
# a suffix for pgd, so that the robust error (the union) differs from every single attack
CLEAN = {"baseline": [1, 2, 3], "winn": [2, 2, 2]}
OWN = {("fgsm", 0.125): {"baseline": [8, 10, 12], "winn": [4, 5, 6]},
       ("fgsm", 0.0625): {"baseline": [4, 5, 6], "winn": [2, 3, 4]},
       ("pgd", 0.125): {"baseline": [6, 7, 8], "winn": [5, 8, 6]},
       ("pgd", 0.0625): {"baseline": [3, 3, 3], "winn": [3, 4, 2]}}
TRANSFER = {("baseline", "winn"): 3, ("winn", "baseline"): 5}  # target wrong on a prefix of the source's examples


def wrong_preds(wrong: np.ndarray) -> np.ndarray:
    return np.where(wrong, (LABELS + 1) % 10, LABELS)


def prefix(k: int) -> np.ndarray:
    return np.arange(N) < k


def suffix(k: int) -> np.ndarray:
    return np.arange(N) >= N - k


def seed_columns(seed: int, schema: int = 2, n: int = N) -> dict[str, np.ndarray]:
    """One seed's per_example.csv columns; schema 1 has only the fgsm columns and no worst[...]."""
    wrong_clean = {m: prefix(k[seed]) for m, k in CLEAN.items()}
    columns: dict[str, np.ndarray] = {"index": np.arange(N), "label": LABELS}
    columns.update({f"clean:{m}": wrong_preds(w) for m, w in wrong_clean.items()})
    worst = {(e, m): wrong_clean[m].copy() for e in EPS for m in CLEAN}
    for (attack, eps), by_model in OWN.items():
        if schema == 1 and attack != "fgsm":
            continue
        for src in CLEAN:
            for tgt in CLEAN:
                if src == tgt:
                    k = by_model[src][seed]
                    wrong = prefix(k) if attack == "fgsm" else suffix(k)
                else:
                    wrong = prefix(TRANSFER[(src, tgt)])
                name = (f"adv[eps={eps!r},src={src}]:{tgt}" if schema == 1
                        else f"adv[attack={attack},eps={eps!r},src={src}]:{tgt}")
                columns[name] = wrong_preds(wrong)
                worst[(eps, tgt)] |= wrong
    if schema == 2:
        columns.update({f"worst[eps={e!r}]:{m}": w.astype(int) for (e, m), w in worst.items()})
    return {k: v[:n] for k, v in columns.items()}


def write_seed(folder: Path, seed: int, schema: int = 2, dataset: str = "digits", n: int = N,
               indicators: list | None = None, results: bool = True, drop_eps: float | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    columns = seed_columns(seed, schema, n)
    if drop_eps is not None:
        columns = {k: v for k, v in columns.items() if f"eps={drop_eps!r}" not in k}
    pd.DataFrame(columns).to_csv(folder / "per_example.csv", index=False)
    if results:
        provenance = {"dataset": dataset, "n": n, "seed": seed, "baseline": "baseline"}
        if schema == 1:
            provenance["attack"] = "fgsm"
        (folder / "results.json").write_text(json.dumps({"provenance": provenance, "indicators": indicators or []}))
    return folder


WARN = {"model": "winn", "eps": 0.125, "attack": "pgd", "indicator": "gradient_masking", "value": 0.4,
        "threshold": 0.2, "status": "WARN", "advice": "Check the attack with more steps."}


@pytest.fixture()
def seeds(tmp_path) -> list[Path]:
    return [write_seed(tmp_path / f"s{s}", s, indicators=[WARN if s != 1 else {**WARN, "status": "PASS"}])
            for s in range(3)]


# ----------------------------------------------------------------------------- numbers by hand
def test_per_seed_mean_sd_and_difference_by_hand(seeds):
    agg = aggregate_seeds([read_seed_report(s) for s in seeds], resamples=1000)
    assert agg.labels == ["seed 0", "seed 1", "seed 2"] and agg.baseline == "baseline" and agg.n == N
    assert agg.attacks == ("fgsm", "pgd") and agg.eps == EPS and agg.table_eps == (0.125,)

    fgsm_base = agg.row("baseline", "adv_error", "fgsm", 0.125)
    assert fgsm_base.per_seed == pytest.approx([0.40, 0.50, 0.60])
    assert fgsm_base.summary.mean == pytest.approx(0.50) and fgsm_base.summary.sd == pytest.approx(0.10)
    assert (fgsm_base.summary.min, fgsm_base.summary.max) == pytest.approx((0.40, 0.60))
    assert fgsm_base.difference is None and fgsm_base.ttest_p is None

    fgsm = agg.row("winn", "adv_error", "fgsm", 0.125)
    assert fgsm.per_seed == pytest.approx([0.20, 0.25, 0.30])
    assert fgsm.summary.sd == pytest.approx(0.05)
    assert fgsm.per_seed_diff == pytest.approx([-0.20, -0.25, -0.30])
    assert fgsm.difference is not None and fgsm.difference.mean == pytest.approx(-0.25)
    assert fgsm.difference.high < 0  # winn is never worse than the baseline on any image: significant
    assert fgsm.prob_improvement == 1.0  # every winn seed is below every baseline seed

    pgd = agg.row("winn", "adv_error", "pgd", 0.125)  # 5, 8, 6 vs 6, 7, 8 wrong: the sign flips
    assert pgd.per_seed_diff == pytest.approx([-0.05, 0.05, -0.10])
    assert pgd.difference is not None and pgd.difference.low < 0 < pgd.difference.high
    assert pgd.ttest_p == pytest.approx(ttest_rel([0.25, 0.40, 0.30], [0.30, 0.35, 0.40]).pvalue)
    # winn 0.25 < all 3; 0.40 ties 0.40 (half); 0.30 < 0.35, < 0.40 and ties 0.30 (half): 6 of 9 pairs
    assert pgd.prob_improvement == pytest.approx(6 / 9)

    # robust error: the union of clean, fgsm and pgd mistakes (prefix + suffix), attack-independent
    robust_base = agg.row("baseline", "robust_error", "any", 0.125)
    assert robust_base.per_seed == pytest.approx([14 / 20, 17 / 20, 20 / 20])
    robust = agg.row("winn", "robust_error", "any", 0.125)
    assert robust.per_seed == pytest.approx([9 / 20, 13 / 20, 12 / 20])
    assert robust.difference is not None and robust.difference.mean == pytest.approx(np.mean([-5, -4, -8]) / 20)
    assert agg.row("winn", "robust_error", "any", 0.0625).per_seed == pytest.approx([6 / 20, 7 / 20, 6 / 20])

    clean = agg.row("winn", "clean_error", "none", None)
    assert clean.per_seed_diff == pytest.approx([0.05, 0.0, -0.05]) and clean.summary.sd == 0.0

    corr = agg.row("winn", "correction_by_method", "fgsm", 0.125)  # 1 - 3 / N_base
    assert corr.per_seed == pytest.approx([5 / 8, 7 / 10, 9 / 12]) and corr.difference is None
    by_base = agg.row("winn", "correction_by_baseline", "fgsm", 0.0625)  # 1 - min(N_winn, 5) / N_winn
    assert by_base.per_seed == pytest.approx([0.0, 0.0, 0.0])


def test_verdict_states_effects_significance_and_warnings(seeds):
    agg = aggregate_seeds([read_seed_report(s) for s in seeds], resamples=2000)
    text = verdict(agg)
    assert text.startswith("Across 3 seeds winn lowers fgsm adversarial error at eps 0.125 by 25.0 points (95% CI ")
    assert ", significant) against the baseline (baseline); under pgd by 3.3 points (95% CI " in text
    pgd_clause = text.split("under pgd")[1].split(")")[0]
    assert pgd_clause.endswith("not significant")
    assert "robust error at eps 0.125" in text and "2,000 resamples, seed 0" in text
    assert "0.0625" not in text.split("\n")[0]  # the table eps only
    assert "WARN gradient_masking for winn at eps 0.125 under pgd on 2 of 3 seeds (seed 0, seed 2" in text
    assert "Check the attack with more steps." in text
    both = aggregate_seeds([read_seed_report(s) for s in seeds], table_eps=[0.0625, 0.125], resamples=200)
    assert "fgsm adversarial error at eps 0.0625 by 10.0 points" in verdict(both)


# ----------------------------------------------------------------------------- statistics
def test_bootstrap_is_reproducible_and_seeded():
    counts = np.array([[3, 15, 2], [5, 14, 1], [1, 16, 3]])
    first = hierarchical_bootstrap(counts, DIFFERENCE_VALUES, resamples=2000, seed=7)
    assert first == hierarchical_bootstrap(counts, DIFFERENCE_VALUES, resamples=2000, seed=7)
    other = hierarchical_bootstrap(counts, DIFFERENCE_VALUES, resamples=2000, seed=8)
    assert (other.low, other.high) != (first.low, first.high)
    assert first.mean == other.mean == pytest.approx(np.mean([-1 / 20, -4 / 20, 2 / 20]))
    assert (first.resamples, first.seed) == (2000, 7)


def test_bootstrap_covers_a_known_effect_and_widens_when_it_flips():
    method_better = np.array([[10, 90, 0]] * 20)  # 20 seeds, N = 100, method exactly 10 points better
    ci = hierarchical_bootstrap(method_better, DIFFERENCE_VALUES)
    assert ci.mean == pytest.approx(-0.10) and ci.low < -0.10 < ci.high < 0 and ci.excludes_zero
    flips = np.array([[10, 90, 0], [0, 90, 10]] * 3)  # -10 and +10 points on alternate seeds
    wide = hierarchical_bootstrap(flips, DIFFERENCE_VALUES)
    assert wide.low < 0 < wide.high and not wide.excludes_zero and wide.high - wide.low > 0.10
    one_seed = hierarchical_bootstrap(method_better[:1], DIFFERENCE_VALUES)  # test-set sampling only
    assert one_seed.low < -0.10 < one_seed.high and one_seed.high - one_seed.low > ci.high - ci.low


def test_paired_difference_counts():
    method = np.array([1, 0, 0, 1, 0], bool)
    base = np.array([0, 1, 1, 1, 0], bool)
    assert paired_difference_counts(method, base).tolist() == [2, 2, 1]  # -1, 0, +1


def test_probability_of_improvement_by_hand_and_ttest_is_scipys():
    method, base = [0.1, 0.2, 0.3], [0.2, 0.4]
    # pairs (method < baseline): 0.1<0.2, 0.1<0.4, 0.2=0.2 (half), 0.2<0.4, 0.3>0.2, 0.3<0.4 -> 4.5 of 6
    assert probability_of_improvement(method, base) == pytest.approx(4.5 / 6)
    assert probability_of_improvement([0.5], [0.5]) == 0.5
    a, b = [0.31, 0.28, 0.35, 0.30], [0.40, 0.33, 0.37, 0.41]
    assert paired_ttest_pvalue(a, b) == ttest_rel(a, b).pvalue
    assert np.isnan(paired_ttest_pvalue([0.1], [0.2]))
    summary = summarize_seeds([0.1, np.nan, 0.3])
    assert (summary.n, summary.mean, summary.sd) == (2, pytest.approx(0.2), pytest.approx(statistics.stdev([0.1, 0.3])))


# ----------------------------------------------------------------------------- schema 1
def test_schema_1_per_example_is_read(tmp_path):
    folders = [write_seed(tmp_path / f"old{s}", s, schema=1) for s in range(2)]
    report = read_seed_report(folders[0])
    assert report.schema == 1 and report.attacks == ["fgsm"] and report.eps == list(EPS)
    # robust error computed: clean or any adv column at that eps (baseline: own fgsm prefix 8 covers the
    # transfer prefix 5; winn: own prefix 4 covers the transfer prefix 3)
    assert report.worst[(0.125, "baseline")].sum() == 8 and report.worst[(0.125, "winn")].sum() == 4
    agg = aggregate_seeds([read_seed_report(f) for f in folders], resamples=200)
    assert agg.row("winn", "adv_error", "fgsm", 0.125).per_seed == pytest.approx([0.20, 0.25])
    no_json = write_seed(tmp_path / "bare", 0, schema=1, results=False)
    assert read_seed_report(no_json).attacks == ["unknown"]


# ----------------------------------------------------------------------------- the command

def test_report_several_folders_writes_the_aggregate(tmp_path, seeds, capsys):
    out = tmp_path / "agg"
    assert main(["report", *map(str, seeds), "--out", str(out), "--bootstrap-resamples", "1000"]) == 0
    for name in ("table.md", "summary.md", "table.csv", "results.json", "error_vs_eps.png",
                 "error_vs_eps_fgsm.png", "error_vs_eps_pgd.png"):
        assert (out / name).is_file(), name
    assert Image.open(out / "error_vs_eps.png").format == "PNG"
    table = pd.read_csv(out / "table.csv")
    row = table[(table.model == "winn") & (table.metric == "adv_error") & (table.attack == "fgsm") & (table.eps == 0.125)]
    assert len(row) == 1
    row = row.iloc[0]
    assert row["value:seed 1"] == pytest.approx(0.25) and row["diff_mean"] == pytest.approx(-0.25)
    assert (row.n_seeds, row.n_images, row.bootstrap_resamples, row.bootstrap_seed) == (3, N, 1000, 0)
    assert row.ci_method.startswith("95% hierarchical percentile bootstrap")
    assert len(table) == 2 + 2 * 2 * 2 + 2 * 2 + 2 * 2 * 2  # clean, adv, robust, corrections
    doc = json.loads((out / "results.json").read_text())
    assert doc["schema_version"] == 1 and [s["folder"] for s in doc["seed_folders"]] == [str(s) for s in seeds]
    assert doc["statistics"]["bootstrap_resamples"] == 1000
    base_row = next(r for r in doc["rows"] if r["model"] == "baseline" and r["metric"] == "clean_error")
    assert base_row["difference"] is None
    md = (out / "table.md").read_text()
    summary = (out / "summary.md").read_text()
    first_paragraph = md.split("\n\n")[1]
    assert first_paragraph.startswith("Across 3 seeds winn lowers") and summary.split("\n\n")[1] == first_paragraph
    assert "| winn | 20.00% (-20.00) | 25.00% (-25.00) | 30.00% (-30.00) | 25.00% | 5.00 | 20.00% | 30.00% |" in md
    assert "hierarchical" in summary and "1,000 resamples" in summary and str(seeds[2]) in summary


def test_report_one_folder_still_rebuilds_it(tmp_path):
    folder = write_seed(tmp_path / "old", 0, schema=1)
    assert main(["report", str(folder), "--out", str(tmp_path / "rebuilt")]) == 0
    assert "Table 3/4: fgsm, eps = 0.125" in (tmp_path / "rebuilt" / "table.md").read_text()


@pytest.mark.parametrize("case, expected", [
    ("dataset", ["different datasets", "digits", "mnist"]),
    ("n", ["different test sets", "N = 20", "N = 15"]),
    ("labels", ["different test sets", "label"]),
    ("eps", ["different eps", "0.0625, 0.125", "same eps"]),
    ("twice", ["given twice"]),
    ("no-out", ["needs --out"]),
    ("out-is-input", ["one of the seed folders"]),
])
def test_report_refuses_folders_that_do_not_pair(tmp_path, capsys, case, expected):
    a = write_seed(tmp_path / "a", 0)
    b = tmp_path / "b"
    if case == "dataset":
        write_seed(b, 1, dataset="mnist")
    elif case == "n":
        write_seed(b, 1, n=15)
    elif case == "eps":
        write_seed(b, 1, drop_eps=0.0625)
    else:
        write_seed(b, 1)
    if case == "labels":
        frame = pd.read_csv(b / "per_example.csv")
        frame.loc[0, "label"] = 9
        frame.to_csv(b / "per_example.csv", index=False)
    folders = [str(a), str(b)] + ([str(a)] if case == "twice" else [])
    out = [] if case == "no-out" else ["--out", str(a if case == "out-is-input" else tmp_path / "agg")]
    err = one_line_error(capsys, ["report", *folders, *out], *expected)
    if case not in ("no-out", "out-is-input"):
        assert str(a) in err


def test_one_seed_has_no_t_test_and_says_what_its_interval_covers(tmp_path):
    agg = aggregate_seeds([read_seed_report(write_seed(tmp_path / "only", 0))], resamples=500)
    row = agg.row("winn", "adv_error", "fgsm", 0.125)
    assert row.ttest_p is not None and np.isnan(row.ttest_p) and np.isnan(row.summary.sd)
    assert row.prob_improvement == 1.0 and row.difference is not None and row.difference.high < 0
    assert verdict(agg).startswith("Across 1 seed winn lowers") and "test-set sampling only" in verdict(agg)


def test_an_attack_on_a_subset_reports_its_own_image_count(tmp_path):
    """pgd ran on the first 10 of 20 images (empty cells beyond, as `--attack-limit pgd=10` writes):
    its rows and the robust error say N = 10, fgsm's say N = 20."""
    folders = []
    for s in range(2):
        folder = write_seed(tmp_path / f"s{s}", s)
        frame = pd.read_csv(folder / "per_example.csv")
        for column in frame.columns:
            if column.startswith("adv[attack=pgd") or column.startswith("worst["):
                frame[column] = frame[column].astype(float).where(frame.index < 10)
        frame.to_csv(folder / "per_example.csv", index=False)
        folders.append(folder)
    agg = aggregate_seeds([read_seed_report(f) for f in folders], resamples=200)
    assert agg.row("winn", "adv_error", "pgd", 0.125).n_images == 10
    assert agg.row("winn", "adv_error", "fgsm", 0.125).n_images == 20
    assert main(["report", *map(str, folders), "--out", str(tmp_path / "agg")]) == 0
    text = (tmp_path / "agg" / "table.md").read_text()
    assert "## Adversarial error: pgd, eps = 0.125 ([0, 1] pixel units), N = 10 per seed" in text
    assert "## Adversarial error: fgsm, eps = 0.125 ([0, 1] pixel units)\n" in text
    table = pd.read_csv(tmp_path / "agg" / "table.csv")
    assert set(table.loc[table["attack"] == "pgd", "n_images"]) == {10}
