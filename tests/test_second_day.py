"""Issue 20, a newcomer's second day: junk model files, changed budgets in reproduce, honest
few-seed statistics, the wrong input range, report lines that say what they mean."""

from __future__ import annotations

import pytest

from winn_robust.errors import UserError
from winn_robust.model_sources import load_model


@pytest.mark.parametrize("content", [b"junk\n", b"PK\x03\x04junk", bytes(range(256)) * 2])
def test_a_junk_model_file_is_one_user_error(tmp_path, content):
    path = tmp_path / "junk.ts"
    path.write_bytes(content)
    with pytest.raises(UserError, match="TorchScript|checkpoint"):
        load_model(str(path))


def _finished_study(tmp_path, epochs: int):
    """A reproduce --out whose runs finished `epochs` epochs (checkpoints only, no training)."""
    from winn_robust.checkpoint import save_checkpoint
    from winn_robust.experiments.reproduce import resolve_settings
    from winn_robust.models import build_model
    from winn_robust.training.trainer import LAST_NAME

    settings = resolve_settings("quick", {"epochs": epochs, "seeds": "2"}, out=tmp_path / "R")
    for seed in settings.seeds:
        for method in settings.methods:
            config = settings.config(seed, method)
            save_checkpoint(settings.run_dir(seed, method) / LAST_NAME, build_model("vanilla", (1, 8, 8), 10),
                            {"arch": "vanilla", "dataset": "digits", "image_shape": [1, 8, 8], "num_classes": 10,
                             "method": method, "epoch": epochs, "seed": seed, "hparams": config.to_dict()})
    return settings


def test_reproduce_refuses_a_changed_budget_unless_told_to_extend(tmp_path):
    from winn_robust.experiments.reproduce import check_budget, resolve_settings

    _finished_study(tmp_path, 5)
    assert check_budget(resolve_settings("quick", {"epochs": 5, "seeds": "2"}, out=tmp_path / "R")) == []
    with pytest.raises(UserError, match=r"--epochs 5, this run asks for --epochs 6; pass --extend to continue 4 run"):
        check_budget(resolve_settings("quick", {"epochs": 6, "seeds": "2"}, out=tmp_path / "R"))
    lines = check_budget(resolve_settings("quick", {"epochs": 6, "seeds": "2"}, out=tmp_path / "R", extend=True))
    assert lines and "from epoch 5 to 6" in lines[0] and "winn seed 1" in lines[0]


def test_job_times_are_kept_in_their_folders_and_added_when_a_job_continues(tmp_path):
    from winn_robust.experiments.jobs import record_time, recorded_time
    from winn_robust.reporting.summary import wall_time_line

    path = tmp_path / "run" / "wall_time.json"
    assert recorded_time(path) is None
    record_time(path, 10.0)
    assert record_time(path, 5.0, add=True) == 15.0 and recorded_time(path) == 15.0
    assert record_time(path, 3.0) == 3.0  # a fresh job (--force) replaces the time
    line = wall_time_line({"training baseline": 12.0, "evaluation": None}, this_run=0.4)
    assert "training baseline 12 s, evaluation not recorded" in line and "a run of 0 s" in line
