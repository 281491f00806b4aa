"""Smoke tests of the benchmark scripts at tiny sizes: they run, print their tables and pass
their own agreement check. No timing is asserted."""
from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from benchmarks import attack_throughput, common, defence_floor, scaling, train_floor, train_throughput
from winn_robust.errors import UserError


def table_rows(text: str, first_words: tuple[str, ...]) -> list[str]:
    return [line for line in text.splitlines() if line.split()[:1] and line.split()[0] in first_words]


def test_attack_throughput_smoke(capsys, tmp_path):
    bench = attack_throughput
    out_json = tmp_path / "attack.json"
    report = bench.main(["--attacks", "fgsm", "--n", "64", "--batch-size", "32", "--repeats", "1", "--device", "cpu",
                         "--archs", "vanilla,resnet20", "--data-dir", str(tmp_path / "no-data"), "--train-steps", "0",
                         "--torchattacks-min-agreement", "0.9", "--json", str(out_json)])
    text = capsys.readouterr().out
    rows = table_rows(text, bench.PIPELINES)
    assert [r.split()[:2] for r in rows if "vs harness" not in r and "adversarial images" not in r] == \
        [[p, "cpu"] for p in bench.PIPELINES]
    assert "fgsm agreement check: PASSED" in text and report["agreement_passed"]
    agree = report["results"][0]["attacks"]["fgsm"]["agreement"]["vs_harness"]
    assert agree["foolbox"]["predictions_equal"] == agree["foolbox"]["predictions"]
    assert agree["floor"]["predictions_equal"] == agree["floor"]["predictions"]
    saved = json.loads(out_json.read_text())
    assert list(saved["results"][0]["attacks"]) == ["fgsm"]
    pipelines = saved["results"][0]["attacks"]["fgsm"]["pipelines"]
    assert set(pipelines) == set(bench.PIPELINES)
    assert all(r["seconds_best"] > 0 for r in pipelines.values())


def test_attack_throughput_pgd_and_apgd_smoke(capsys, tmp_path):
    """PGD (harness, foolbox, torchattacks, floor) and APGD-CE (harness, pyautoattack called
    directly) at 32 images and 3 steps: both tables print and every agreement check passes, the
    APGD-CE pipelines giving identical predictions when seeded alike."""
    bench = attack_throughput
    out_json = tmp_path / "attack.json"
    report = bench.main(["--attacks", "pgd,apgd-ce", "--iterative-n", "32", "--batch-size", "16", "--repeats", "1",
                         "--device", "cpu", "--archs", "vanilla,resnet20", "--data-dir", str(tmp_path / "no-data"),
                         "--pgd-steps", "3", "--apgd-steps", "3", "--train-steps", "2", "--json", str(out_json)])
    text = capsys.readouterr().out
    pgd_table = text.split("\npgd:\n", 1)[1].split("\n\n", 1)[0]
    apgd_table = text.split("\napgd-ce:\n", 1)[1].split("\n\n", 1)[0]
    assert [r.split()[:2] for r in table_rows(pgd_table, bench.PGD_PIPELINES)] == [[p, "cpu"] for p in bench.PGD_PIPELINES]
    assert [r.split()[:2] for r in table_rows(apgd_table, bench.APGD_PIPELINES)] == \
        [[p, "cpu"] for p in bench.APGD_PIPELINES]
    assert "adv error (vanilla, resnet20)" in pgd_table and "overhead" in apgd_table
    assert "pgd agreement check: PASSED" in text and "apgd-ce agreement check: PASSED" in text
    assert "fgsm" not in report["results"][0]["attacks"] and report["agreement_passed"]
    assert text.count("requirement met (") + text.count("requirement NOT met (") == 2  # printed, whatever the timing

    attacks = json.loads(out_json.read_text())["results"][0]["attacks"]
    pgd, apgd = attacks["pgd"], attacks["apgd-ce"]
    assert pgd["n"] == apgd["n"] == 32
    assert pgd["agreement"]["superset"]["floor_fooled_harness_not"] == 0
    assert all(a["clean_fraction"] == 1.0 for a in pgd["agreement"]["vs_harness"].values())
    direct = apgd["agreement"]["vs_harness"]["direct"]
    assert direct["predictions_equal"] == direct["predictions"] == 32 * (2 + 2 * 2)
    for table in (pgd, apgd):
        for row in table["pipelines"].values():
            assert row["seconds_best"] > 0 and set(row["adversarial_error"]) == {"vanilla", "resnet20"}
    # the harness keeps each image's best iterate: never below the floor's last iterate
    harness_error, floor_error = (pgd["pipelines"][p]["adversarial_error"] for p in ("harness", "floor"))
    assert all(harness_error[m] >= floor_error[m] for m in floor_error)
    assert "floor_over_harness" in pgd["requirement"] and "overhead" in apgd["requirement"]


def test_attack_throughput_pgd_l2_smoke(capsys, tmp_path):
    """PGD-L2 (harness at --norm l2, foolbox's L2PGD, torchattacks' PGDL2, floor) at 24 images and
    3 steps: the table prints, the libraries agree with the floor and the floor's iterates are the
    harness's (everything the floor fools, the harness fools)."""
    bench = attack_throughput
    report = bench.main(["--attacks", "pgd-l2", "--iterative-n", "24", "--batch-size", "12", "--repeats", "1",
                         "--device", "cpu", "--archs", "vanilla", "--data-dir", str(tmp_path / "no-data"),
                         "--pgd-steps", "3", "--l2-eps", "2.0", "--train-steps", "2"])
    text = capsys.readouterr().out
    table = text.split("\npgd-l2:\n", 1)[1].split("\n\n", 1)[0]
    assert [r.split()[:2] for r in table_rows(table, bench.PGD_PIPELINES)] == [[p, "cpu"] for p in bench.PGD_PIPELINES]
    assert "pgd-l2 agreement check: PASSED" in text and report["agreement_passed"]
    result = report["results"][0]["attacks"]["pgd-l2"]
    assert result["agreement"]["superset"]["floor_fooled_harness_not"] == 0
    assert result["requirement"]["floor_min"] == round(1 / 1.1, 4)


def test_attack_throughput_refuses_an_unknown_attack():
    with pytest.raises(UserError, match="--attacks 'fgsm,deepfool': choose from fgsm, pgd, apgd-ce"):
        attack_throughput.main(["--attacks", "fgsm,deepfool"])


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


def test_train_floor_smoke(capsys, monkeypatch):
    """The floor replays the trainer's own batches and synthesis schedule: from the same weights
    its classification pass gives the same weights and its synthesis the same images."""
    monkeypatch.setattr(train_floor, "VARIANTS", ("eager", "channels_last"))  # compiling takes minutes
    report = train_throughput.main(["--device", "cpu", "--data", "digits", "--floor-only", "--compile-check",
                                    "--floor-train-limit", "60", "--negatives-per-class", "2",
                                    "--synthesis-max-steps", "6", "--val-size", "50", "--floor-repeats", "1",
                                    "--compile-steps", "1"])
    text = capsys.readouterr().out
    floor = report["floor"][0]
    assert floor["agreement"]["max_abs_weight_diff"] <= 1e-6
    assert floor["agreement"]["max_abs_image_diff"] <= 1e-4 and floor["agreement"]["trainer_repeat_image_diff"] == 0
    assert floor["classification_x_floor"] > 0 and floor["synthesis_x_floor"] > 0
    assert "x floor speed" in text and "agreement: weights after one classification pass" in text
    cases = report["compile_check"][0]["cases"]
    assert set(cases) == {"winn classify", "CE classify", "synthesis"}
    assert all(cases[c]["channels_last"]["max_abs_grad_diff"] < 1e-3 for c in cases)


def test_floor_schedule_steps_only_the_live_groups():
    assert [(n, live.tolist()) for n, live in train_floor.live_schedule([3, 1, 3, 0])] == [(1, [0, 1, 2]), (2, [0, 2])]


def test_scaling_commands_and_table(tmp_path):
    """The torchrun command lines and the table, from made-up metrics (no launch here;
    tests/test_distributed.py runs torchrun)."""
    args = scaling.parse_args(["--device", "cpu", "--data", "digits", "--epochs", "3", "--train-limit", "400",
                               "--negatives-per-class", "5"])
    command = scaling.train_command(args, 2, tmp_path / "two")
    assert command[1:7] == ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m"]
    assert command[7:9] == ["winn_robust", "train"] and "--batch-size" in command
    runs = scaling.planned_runs(args)  # the CPU: 1 process of 2 threads, 2 of 1, and 1 of 1 (per-core reference)
    assert [(r.ranks, r.threads) for r in runs] == [(1, 2), (2, 1), (1, 1)]
    assert scaling.run_env(1)["OMP_NUM_THREADS"] == "1" and str(scaling.REPO) in scaling.run_env(1)["PYTHONPATH"]

    def frame(classify: float, synth: float) -> pd.DataFrame:
        return pd.DataFrame({"epoch": [1, 2, 3], "seconds_classification": [9.0, classify, classify],
                             "seconds_synthesis": [9.0, synth, synth], "synthesis_steps_mean": [20.0] * 3})

    frames = dict(zip(runs, [frame(4.0, 2.0), frame(2.5, 1.0), frame(6.0, 3.0)]))
    summary = scaling.summarize(args, frames, classes=10)
    one, two, core = summary["runs"]
    assert core["classification_speedup_vs_one_core"] == pytest.approx(1.0)
    assert one["classification_images_per_second"] == pytest.approx(100.0)  # 400 images in 4 s
    assert two["classification_speedup"] == pytest.approx(1.6) and two["synthesis_speedup"] == pytest.approx(2.0)
    assert two["synthesis_efficiency"] == pytest.approx(2.0)  # the CPU: the same cores either way
    assert two["classification_efficiency_vs_one_core"] == pytest.approx(6.0 / 2.5 / 2)
    table = scaling.format_table(args, summary)
    assert table.splitlines()[2].split()[:5] == ["1", "rank", "x", "2", "threads"] and "1.60" in table.splitlines()[3]
    assert "against one process on one core" in table
    with pytest.raises(UserError, match="multiple of --ranks 3"):
        scaling.parse_args(["--device", "cpu", "--ranks", "3"])


def test_scaling_evaluation_commands_and_table(tmp_path):
    """The evaluation half: the torchrun `attack` command and its table, from made-up timings."""
    args = scaling.parse_args(["--device", "cpu", "--data", "digits", "--eval-n", "400", "--eval-attacks", "fgsm"])
    command = scaling.eval_command(args, 2, [tmp_path / "a.pt", tmp_path / "b.pt"], tmp_path / "out")
    assert command[5:10] == ["2", "-m", "winn_robust", "attack", "--baseline"]
    assert command[command.index("--limit") + 1] == "400" and command[command.index("--attack") + 1] == "fgsm"
    rows = [{"run": r.label, "ranks": r.ranks, "threads_per_rank": r.threads, "seconds": s, "images_per_second": 400 / s}
            for r, s in zip(scaling.planned_runs(args), (4.0, 2.5, 6.0))]
    scaling.summarize_eval(args, rows)
    assert rows[1]["speedup"] == pytest.approx(1.6) and rows[2]["speedup_vs_one_core"] == pytest.approx(1.0)
    table = scaling.format_eval_table(args, rows)
    assert "1.60" in table.splitlines()[3] and "attacked img/s" in table.splitlines()[0]


def test_round_robin_runner_warms_up_once_and_interleaves():
    """Every pipeline is warmed up once (with its stand-in when given), then the repeats run
    round-robin; one timing entry per pipeline, best <= median, the ratio columns from best times."""
    calls: list[str] = []

    def job(name: str):
        def run():
            calls.append(name)
            return name
        return run

    pipelines = [common.Pipeline("a", job("a"), warm_up=job("a warm-up")), common.Pipeline("b", job("b")),
                 common.Pipeline("c", job("c"))]
    timings = common.time_pipelines(pipelines, torch.device("cpu"), repeats=3)
    assert calls == ["a warm-up", "b", "c"] + ["a", "b", "c"] * 3
    assert list(timings.seconds) == ["a", "b", "c"] and all(len(t) == 3 for t in timings.seconds.values())
    assert all(timings.best[p] <= timings.median[p] for p in timings.seconds)
    assert timings.outputs == {"a": "a", "b": "b", "c": "c"}
    timings = common.Timings({"harness": [2.0, 1.0, 4.0], "floor": [0.5, 0.8, 0.6], "lib": [3.0]})
    rows = timings.rows(items=10, ratios={"x_harness": "harness", "x_floor": "floor", "skipped": None})
    assert set(rows) == {"harness", "floor", "lib"}
    assert rows["harness"]["seconds_best"] == 1.0 and rows["harness"]["seconds_median"] == 2.0
    assert rows["lib"]["x_harness"] == 3.0 and rows["harness"]["x_floor"] == 2.0 and "skipped" not in rows["lib"]
    assert rows["floor"]["images_per_second"] == 20.0 and timings.ratio("floor", "harness") == 0.5
    with pytest.raises(ValueError, match="unique"):
        common.time_pipelines([common.Pipeline("a", job("a")), common.Pipeline("a", job("a"))], torch.device("cpu"), 1)


def test_column_table():
    columns = [common.Column("name", 6, align="<"), common.Column("s", 6, ".2f"), common.Column("ratio", fmt="+.1%")]
    lines = common.table(columns, [["x", 1.234, 0.05], ["longer", 10.0, "-"], ["short", "n/a"]], indent="  ").splitlines()
    assert lines == ["  name        s ratio", "  " + "-" * 19, "  x        1.23 +5.0%", "  longer  10.00     -",
                     "  short     n/a"]


def test_attack_registry():
    """Every attack's pipelines start with the harness, its ratio references are pipelines of
    its own, and the L-inf and L2 PGD entries share one structure."""
    for name, suite in attack_throughput.SUITES.items():
        assert suite.pipelines[0] == "harness", name
        assert suite.floor is None or suite.floor in suite.pipelines
        assert set(suite.libraries) <= set(suite.pipelines) and (suite.overhead_of or "harness") in suite.pipelines
    assert attack_throughput.SUITES["pgd"].pipelines == attack_throughput.SUITES["pgd-l2"].pipelines
    assert attack_throughput.ATTACKS[:3] == ("fgsm", "pgd", "apgd-ce")


def test_defence_floor_smoke(capsys, tmp_path):
    """PGD-AT, TRADES and Fast-AT against their floor at 100 digits and 2 inner steps: the table
    prints, TRADES and Fast-AT compute the trainer's weights, the report is written."""
    report = defence_floor.main(["--device", "cpu", "--train-limit", "100", "--steps", "2", "--repeats", "1",
                                 "--data-dir", str(tmp_path / "no-data"), "--json", str(tmp_path / "defences.json")])
    text = capsys.readouterr().out
    assert "x floor speed" in text and "passes/image" in text
    results = {r["method"]: r for r in report["results"]}
    assert list(results) == list(defence_floor.METHODS)
    assert results["trades"]["weight_diff"] <= 1e-6 and results["fast-at"]["weight_diff"] <= 1e-6
    assert all(r["x_floor"] > 0 for r in results.values())
    assert json.loads((tmp_path / "defences.json").read_text())["results"][0]["method"] == "pgd-at"
