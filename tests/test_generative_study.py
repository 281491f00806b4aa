"""`reproduce --preset generative-*`: trains, samples, scores and writes one table, and a second run of the
same command keeps what is done."""
from __future__ import annotations

import json

import pandas as pd

from tests.helpers import one_line_error
from winn_robust.cli import main
from winn_robust.experiments import presets

TINY_WINN = {"iterations": 2, "positives": 40, "negatives": 40, "last_negatives": 40, "initial_negatives": 40,
             "ascent_max_steps": 10, "critic_passes": 1}


def test_a_tiny_generative_study_writes_its_table_and_resumes(tmp_path, monkeypatch, capsys):
    tiny = {**presets.PRESETS["generative-digits"], "samples": 30, "train_limit": 300, "val_size": 50,
            "classifier": {"epochs": 1},
            "runs": [{"name": "winn-single", "method": "winn-gen", "options": {**TINY_WINN, "cascades": 1}},
                     {"name": "winn-2", "method": "winn-gen", "options": {**TINY_WINN, "cascades": 2}}]}
    monkeypatch.setitem(presets.PRESETS, "generative-digits", tiny)
    out = tmp_path / "study"
    assert main(["reproduce", "--preset", "generative-digits", "--out", str(out), "--no-progress"]) == 0
    table = pd.read_csv(out / "table.csv")
    assert list(table["model"]) == ["winn-single", "winn-2"]
    assert (table["n"] == 30).all() and (table["score"] >= 1.0).all() and (table["forward_passes"] > 0).all()
    results = json.loads((out / "results.json").read_text())
    assert results["scores"][0]["real_score_mean"] > 1.0
    text = (out / "table.md").read_text()
    assert "real digits test images" in text and "N = 30" in text
    for name in ("samples.png", "samples/winn-single.npz", "samples/winn-2.png", "models/winn-2/cascade-2.pt"):
        assert (out / name).is_file(), name
    before = (out / "models" / "winn-2" / "last.pt").stat().st_mtime_ns
    capsys.readouterr()
    assert main(["reproduce", "--preset", "generative-digits", "--out", str(out), "--no-progress"]) == 0
    assert "already trained, kept" in capsys.readouterr().err
    assert (out / "models" / "winn-2" / "last.pt").stat().st_mtime_ns == before
    assert pd.read_csv(out / "table.csv")["score"].tolist() == table["score"].tolist()  # same seed, same samples


def test_flags_a_generative_study_would_ignore_are_refused_in_one_line(tmp_path, capsys):
    for argv, flag in ((["--nproc-per-node", "2"], "--nproc-per-node"), (["--cascade", "3"], "--cascade"),
                       (["--epochs", "3"], "--epochs"), (["--launcher", "slurm"], "--launcher")):
        one_line_error(capsys, ["reproduce", "--preset", "generative-digits", "--out", str(tmp_path / "s"), *argv],
                       flag, "not used by the generative preset")
    assert not (tmp_path / "s").exists()
