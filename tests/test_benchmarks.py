"""Smoke tests of the benchmark scripts at tiny sizes: they run, print their tables and pass
their own agreement check. No timing is asserted."""
from __future__ import annotations

import json

import pytest

from benchmarks import attack_throughput, train_throughput


def table_rows(text: str, first_words: tuple[str, ...]) -> list[str]:
    return [line for line in text.splitlines() if line.split()[:1] and line.split()[0] in first_words]


def test_attack_throughput_smoke(capsys, tmp_path):
    bench = attack_throughput
    out_json = tmp_path / "attack.json"
    report = bench.main(["--n", "64", "--batch-size", "32", "--repeats", "1", "--device", "cpu",
                         "--archs", "vanilla,resnet20", "--data-dir", str(tmp_path / "no-data"),
                         "--torchattacks-min-agreement", "0.9", "--json", str(out_json)])
    text = capsys.readouterr().out
    rows = table_rows(text, bench.PIPELINES)
    assert [r.split()[:2] for r in rows if "vs harness" not in r and "adversarial images" not in r] == \
        [[p, "cpu"] for p in bench.PIPELINES]
    assert "agreement check: PASSED" in text and report["agreement_passed"]
    agree = report["results"][0]["agreement"]
    assert agree["foolbox"]["predictions_equal"] == agree["foolbox"]["predictions"]
    assert agree["floor"]["predictions_equal"] == agree["floor"]["predictions"]
    saved = json.loads(out_json.read_text())
    assert set(saved["results"][0]["pipelines"]) == set(bench.PIPELINES)
    assert all(r["seconds_best"] > 0 for r in saved["results"][0]["pipelines"].values())


def test_train_throughput_smoke(capsys, tmp_path):
    bench = train_throughput
    report = bench.main(["--device", "cpu", "--data", "digits", "--train-limit", "100", "--epochs", "1",
                         "--negatives-per-class", "2", "--synthesis-max-steps", "5", "--val-size", "50",
                         "--amp-check", "--json", str(tmp_path / "train.json")])
    text = capsys.readouterr().out
    epoch_rows = [r for r in table_rows(text, ("baseline", "winn")) if r.split()[1] == "cpu"]
    assert [r.split()[:3] for r in epoch_rows] == [["baseline", "cpu", "1"], ["winn", "cpu", "1"]]
    summary = report["summary"][0]
    assert summary["ratio_total"] > 0 and summary["ratio_classification"] > 0
    assert summary["winn"]["pool_size"] == 10 * 2 * 2  # initial pool + one epoch of negatives
    assert summary["baseline"]["seconds_synthesis"] == pytest.approx(0.0, abs=1e-3)
    check = report["amp_check"][0]
    assert check["fp32"]["steps_max"] <= 5 and check["bf16"]["steps_max"] <= 5
    assert "autocast check on cpu" in text and "verdict:" in text
