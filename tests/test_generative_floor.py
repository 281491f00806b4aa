"""Smoke test of benchmarks/generative_floor.py at a tiny size: it runs, prints its table, and the
bare loop replays the trainer's iteration exactly (same passes, same weights, same images). No
timing is asserted."""
from __future__ import annotations

import json

import pytest

from benchmarks import generative_floor
from winn_robust.errors import UserError

TINY = ["--device", "cpu", "--threads", "1", "--data", "digits", "--train-limit", "120", "--batch-size", "20",
        "--positives", "20", "--negatives", "20", "--initial-negatives", "20", "--critic-passes", "2",
        "--ascent-max-steps", "6", "--warm-iterations", "1", "--repeats", "1"]


def test_generative_floor_smoke(capsys, tmp_path):
    out_json = tmp_path / "generative.json"
    report = generative_floor.main([*TINY, "--methods", "winn-gen", "--json", str(out_json)])
    text = capsys.readouterr().out
    rows = [line.split()[:3] for line in text.splitlines() if line.split()[:1] == ["winn-gen"]]
    assert rows == [["winn-gen", side, clock] for clock in ("wall", "cpu") for side in ("trainer", "floor")]
    assert "x floor speed" in text and "passes AGREE" in text
    (result,) = report["results"]
    # iteration 2 sees min(2, 5) x 20 positives and as many negatives, 2 passes, 10 of each per batch
    assert result["timed_iteration"] == 2 and result["critic_batches"] == 2 * 40 // 10
    assert result["passes"]["trainer"] == result["passes"]["floor"]
    steps = result["synthesis_steps"]
    assert len(steps) == 1 and 0 <= steps[0] <= 6
    critic = result["critic_batches"] * 3 * 10          # positives + negatives, then the interpolates
    synthesis = (steps[0] + 1) * 20                     # every Adam step and the final stop test
    assert result["passes"]["floor"] == {"forward": critic + synthesis, "backward": critic + steps[0] * 20}
    agree = result["agreement"]
    assert agree["max_abs_weight_diff"] <= 1e-6 and agree["max_abs_image_diff"] <= 1e-5
    assert agree["timed_repeats_same_work"]
    assert all(result["seconds"][side][clock][part] > 0 for side in ("trainer", "floor") for clock in generative_floor.CLOCKS
               for part in generative_floor.PARTS)
    saved = json.loads(out_json.read_text())
    assert saved["results"][0]["passes"] == result["passes"] and saved["config"]["threads"] == 1


def test_generative_floor_wgan_gp_smoke(capsys):
    """WGAN-GP's row (2 generator iterations of 5 critic steps on batches of 16) replayed bare:
    the same passes (counted by rule below), weights and threshold range."""
    pytest.importorskip("winn_robust.training.generative.wgan_gp")
    report = generative_floor.main([*TINY, "--methods", "wgan-gp", "--log-every", "2", "--gan-batch", "16"])
    text = capsys.readouterr().out
    assert "passes AGREE" in text and "2 generator iterations of 5 critic steps, batch 16" in text
    (result,) = report["results"]
    assert result["method"] == "wgan-gp" and result["timed_iteration"] == 2
    # per generator iteration: 5 critic steps (G's forward on the codes, the critic's 3 x 16 forward and
    # backward) and a generator step (16 through G and the critic, both ways); then the threshold range's
    # real batches: 7 whole batches of 16 in the 120 training images
    forward, backward = 2 * (5 * 4 * 16 + 2 * 16) + 7 * 16, 2 * (5 * 3 * 16 + 2 * 16)
    assert result["passes"]["floor"] == result["passes"]["trainer"] == {"forward": forward, "backward": backward}
    agree = result["agreement"]
    assert agree["max_abs_weight_diff"] <= 1e-6 and agree["max_abs_threshold_diff"] <= 1e-6
    assert agree["timed_repeats_same_work"] and result["x_floor_speed_median"]["cpu"]["total"] > 0


def test_generative_floor_refuses_bad_options():
    with pytest.raises(UserError, match="--methods 'gan': choose from"):
        generative_floor.main(["--methods", "gan"])
    with pytest.raises(UserError, match="--repeats must be at least 1"):
        generative_floor.main(["--repeats", "0"])
