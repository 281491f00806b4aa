"""Several seeds as jobs: `reproduce --seeds`, skipping finished work, --jobs, restarts."""
from __future__ import annotations

import pytest

from winn_robust.cli import main
from winn_robust.errors import UserError
from winn_robust.experiments import reproduce as reproduce_module
from winn_robust.experiments.reproduce import parse_seeds

TINY = ["--epochs", "1", "--train-limit", "150", "--val-size", "60", "--negatives-per-class", "2",
        "--initial-negatives-per-class", "2", "--synthesis-max-steps", "5", "--test-limit", "40", "--sweep", "0.25",
        "--attack", "fgsm", "--no-progress", "--device", "cpu", "--seeds", "0,1"]
REPORT_FILES = ("table.md", "table.csv", "results.json", "summary.md", "seed-0/per_example.csv",
                "seed-1/per_example.csv", "seed-1/table.csv")


def snapshot(folder) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in REPORT_FILES}


@pytest.fixture(scope="module")
def one_job(tmp_path_factory):
    out = tmp_path_factory.mktemp("seeds") / "jobs1"
    assert main(["reproduce", *TINY, "--jobs", "1", "--threads", "1", "--out", str(out)]) == 0
    return out


def test_multi_seed_layout_and_aggregate(one_job):
    for name in REPORT_FILES:
        assert (one_job / name).is_file(), name
    for seed in (0, 1):
        for method in ("baseline", "winn"):
            assert (one_job / f"seed-{seed}" / "models" / method / "best.pt").is_file()
    text = (one_job / "table.md").read_text()
    assert text.startswith("# Aggregate robustness report: 2 seeds")
    assert "Across 2 seeds winn" in text and "hierarchical" in text
    assert (one_job / "summary.md").read_text().splitlines()[2].startswith("Across 2 seeds")


def test_a_second_identical_call_trains_nothing(one_job, capsys):
    before = snapshot(one_job)
    checkpoints = {p: p.stat().st_mtime_ns for p in one_job.glob("seed-*/models/*/last.pt")}
    capsys.readouterr()
    assert main(["reproduce", *TINY, "--jobs", "1", "--threads", "1", "--out", str(one_job)]) == 0
    err = capsys.readouterr().err
    assert "training: 0 run(s) to do, 4 already finished" in err and "evaluating 0 seed(s)" in err
    assert {p: p.stat().st_mtime_ns for p in checkpoints} == checkpoints
    assert snapshot(one_job) == before


def without_paths(data: bytes) -> str:
    """table.csv names each checkpoint by its path, which differs between two output folders."""
    import io

    import pandas as pd

    return pd.read_csv(io.BytesIO(data)).drop(columns=["checkpoint"], errors="ignore").to_csv(index=False)


def test_two_jobs_at_once_killed_and_restarted_give_the_same_report(one_job, tmp_path, monkeypatch):
    """--jobs 2 (one thread each) against --jobs 1 --threads 1, with a kill during the evaluation
    and a restart of the same command in between."""
    out = tmp_path / "jobs2"
    real, calls = reproduce_module.run_jobs, []

    def killed_during_evaluation(jobs, launch):
        calls.append(len(jobs))
        if len(calls) == 2:  # the training jobs ran; the evaluation is killed
            raise KeyboardInterrupt
        return real(jobs, launch)

    monkeypatch.setattr(reproduce_module, "run_jobs", killed_during_evaluation)
    argv = ["reproduce", *TINY, "--jobs", "2", "--threads", "2", "--out", str(out)]
    assert main(argv) == 130
    monkeypatch.setattr(reproduce_module, "run_jobs", real)
    assert main(argv) == 0
    mine, theirs = snapshot(one_job), snapshot(out)
    for name in ("seed-0/per_example.csv", "seed-1/per_example.csv"):
        assert mine[name] == theirs[name], name
    for name in ("seed-1/table.csv", "table.csv"):
        assert without_paths(mine[name]) == without_paths(theirs[name]), name
    assert (out / "jobs" / "train-winn-seed1" / "log.txt").is_file()
    assert (out / "jobs" / "evaluate-seed0" / "spec.json").is_file()


def test_a_run_folder_of_other_settings_is_refused_not_overwritten(one_job, capsys):
    code = main(["reproduce", *[a if a != "5" else "6" for a in TINY], "--jobs", "1", "--threads", "1",
                 "--out", str(one_job)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "--synthesis-max-steps" in err and len(err.splitlines()) <= 3, err


@pytest.mark.parametrize("text, expected", [("0,1,2", (0, 1, 2)), ("3", (0, 1, 2)), ("5,2", (5, 2)), ("1", (0,))])
def test_seeds_parse(text, expected):
    assert parse_seeds(text) == expected


@pytest.mark.parametrize("text, message", [("", "empty"), ("0,,1", "empty"), ("-1,2", "negative"),
                                           ("1,1", "repeats"), ("0", "at least 1"), ("a", "whole numbers")])
def test_bad_seeds_are_user_errors(text, message):
    with pytest.raises(UserError, match=message):
        parse_seeds(text)


def test_bad_seeds_on_the_command_line_are_one_line(capsys, tmp_path):
    assert main(["reproduce", "--seeds", "1,1", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "repeats" in err
