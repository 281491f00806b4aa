"""iWGAN: the objective's parts against their formulas, the toy mixtures, the duality gap, resume,
seeded sampling and quality scores, and the one-line refusals of the CLI."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from winn_robust.cli import main
from winn_robust.data import TOY_MIXTURES, load_dataset
from winn_robust.errors import SettingError
from winn_robust.training import TrainConfig
from winn_robust.training.generative.critic import gradient_penalty
from winn_robust.training.generative.iwgan import imq_kernel, mmd, primal_value, quality_from_errors
from winn_robust.training.generative.trainer import train_generative
from winn_robust.training.inputs import make_train_data

TINY = {"iterations": 3, "steps_per_iteration": 4, "n_critic": 2, "gap_steps": 3, "gap_batch": 64}


def tiny_config(**options):
    return TrainConfig(method="iwgan", arch="mlp", data="ring8", batch_size=32, val_size=500, seed=3,
                       method_options={**TINY, **options})


def ring8_data(config):
    return make_train_data(load_dataset("ring8"), config.val_size, config.seed, 4000, torch.device("cpu"))


# ---- formulas ---------------------------------------------------------------------------------
def test_primal_value_is_its_formula():
    g = torch.Generator().manual_seed(0)
    x, rec = torch.randn(5, 2, generator=g), torch.randn(5, 2, generator=g)
    f_rec, f_gen = torch.randn(5, generator=g), torch.randn(5, generator=g)
    expected = sum(math.sqrt(float(((x[i] - rec[i]) ** 2).sum())) for i in range(5)) / 5 \
        + float(f_rec.mean()) - float(f_gen.mean())
    assert float(primal_value(x, rec, f_rec, f_gen)) == pytest.approx(expected, rel=1e-5)
    assert float(quality_from_errors(torch.tensor([0.0, 1.0]))[1]) == pytest.approx(math.exp(-1))


def test_mmd_is_algorithm_1s_u_statistic():
    g = torch.Generator().manual_seed(1)
    q, z = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    c = 6.0

    def k(a, b):
        return c / (c + float(((a - b) ** 2).sum()))
    n = 4
    same = sum(k(z[i], z[j]) + k(q[i], q[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    cross = sum(k(z[i], q[j]) for i in range(n) for j in range(n)) * 2 / n ** 2
    assert float(mmd(q, z, c)) == pytest.approx(same - cross, rel=1e-5)
    assert float(imq_kernel(q[:1], q[:1], c)) == pytest.approx(1.0)
    # the same distribution's samples are closer than a shifted one's
    assert float(mmd(torch.randn(200, 3, generator=g), torch.randn(200, 3, generator=g), c)) < \
        float(mmd(torch.randn(200, 3, generator=g) + 2, torch.randn(200, 3, generator=g), c))


def test_gradient_penalty_is_its_formula():
    w = torch.tensor([3.0, -4.0])  # f(x) = w.x + |x_0|^2: grad = w + (2 x_0, 0)

    def f(x):
        return x @ w + x[:, 0] ** 2
    pos, neg = torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([[0.0, 0.0], [2.0, 1.0]])
    a = torch.tensor([[0.5], [0.25]])
    x_hat = a * pos + (1 - a) * neg
    grads = w + torch.stack([2 * x_hat[:, 0], torch.zeros(2)], dim=1)
    expected = float(((grads.norm(dim=1) - 1) ** 2).mean())
    assert float(gradient_penalty(f, pos, neg, a).detach()) == pytest.approx(expected, rel=1e-6)


# ---- toy data ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(TOY_MIXTURES))
def test_toy_mixtures_are_seeded_and_covered_by_their_own_points(name):
    a, b = load_dataset(name), load_dataset(name)
    assert torch.equal(a.train_images, b.train_images) and a.train_images.shape[1:] == (2,)
    report = TOY_MIXTURES[name].coverage(a.test_images[:2000])
    assert report["modes_covered"] == report["modes"]
    assert report["high_quality_share"] > 0.98
    uniform = torch.rand(2000, 2) * 8 - 4
    assert TOY_MIXTURES[name].coverage(uniform)["high_quality_share"] < 0.2


def test_toy_radius_and_grid_are_the_papers():
    ring = TOY_MIXTURES["ring8"].centres()
    assert torch.allclose(ring.norm(dim=1), torch.full((8,), 2.0)) and TOY_MIXTURES["ring8"].sd == 0.02
    assert sorted({float(v) for v in TOY_MIXTURES["grid25"].centres()[:, 0]}) == [-4, -2, 0, 2, 4]


# ---- training ----------------------------------------------------------------------------------
class Interrupt(Exception):
    pass


def test_a_toy_run_records_the_gap_and_resumes_bit_identically(tmp_path):
    from winn_robust.checkpoint import read_checkpoint

    config = tiny_config()
    data = ring8_data(config)
    full = train_generative(config, data, tmp_path / "full", progress=False)
    assert len(full.metrics) == 3
    for row in full.metrics:
        assert row["duality_gap"] >= 0 and row["gap_sup"] >= row["primal"] >= row["gap_inf"]
        assert math.isfinite(row["reconstruction"]) and math.isfinite(row["mmd"])

    def stop_after_two(iteration, row):
        if iteration == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        train_generative(config, data, tmp_path / "cut", progress=False, on_epoch_end=stop_after_two)
    resumed = train_generative(config, data, tmp_path / "cut", resume=True, progress=False)
    a, b = (read_checkpoint(tmp_path / name / "last.pt") for name in ("full", "cut"))
    assert a["model"].keys() == b["model"].keys() and all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    timing = ("seconds_train", "seconds_gap", "seconds_total", "bytes_written")
    assert [{k: v for k, v in r.items() if k not in timing} for r in resumed.metrics] == \
        [{k: v for k, v in r.items() if k not in timing} for r in full.metrics]
    # the toys' linear decay: the last of 3 x 4 loops ran at (1 - 11/12) of the rates
    for name, rate in (("critic", 3e-4), ("autoencoder", 3e-4)):
        for saved in (a, b):
            assert saved["optimizers"][name]["param_groups"][0]["lr"] == pytest.approx(rate / 12)


def test_defaults_are_per_dataset_and_the_toys_alone_decay():
    from winn_robust.training.generative.iwgan import IWGAN

    toy, digits = IWGAN().resolved_for("ring8"), IWGAN().resolved_for("digits")
    assert (toy.latent_dim, toy.iterations, toy.steps_per_iteration, toy.gp_lambda) == (5, 10, 55, 0.1)
    assert (toy.critic_lr, toy.generator_lr, toy.lr_decay) == (3e-4, 3e-4, True)
    assert (digits.critic_lr, digits.generator_lr, digits.lr_decay, digits.gp_lambda) == (1e-4, 1e-4, False, 10.0)
    assert IWGAN(critic_lr=1e-3, lr_decay=False).resolved_for("grid25").critic_lr == 1e-3
    assert IWGAN(lr_decay=False).resolved_for("grid25").lr_decay is False


def test_the_gap_shrinks_on_a_toy_run(tmp_path):
    config = tiny_config(iterations=6, steps_per_iteration=25, n_critic=2, gap_steps=5, critic_lr=5e-4,
                         generator_lr=5e-4)
    result = train_generative(config, ring8_data(config), tmp_path / "run", progress=False)
    gaps = [row["duality_gap"] for row in result.metrics]
    assert min(gaps[-2:]) < gaps[0]


def test_stop_gap_stops_early_and_resume_says_so(tmp_path):
    config = tiny_config(iterations=5, stop_gap=1e6, stop_patience=2)
    result = train_generative(config, ring8_data(config), tmp_path / "run", progress=False)
    assert result.last_epoch == 2
    with pytest.raises(Exception, match="stopped by its own rule"):
        train_generative(config, ring8_data(config), tmp_path / "run", resume=True, progress=False)


# ---- sampling and quality --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("iwgan") / "run"
    config = tiny_config(iterations=1)
    train_generative(config, ring8_data(config), out, progress=False)
    return out


def test_sampling_and_quality_are_seeded_and_deterministic(toy_run, tmp_path):
    for name in ("a", "b", "c"):
        seed = "2" if name != "c" else "3"
        assert main(["sample", "--checkpoint", str(toy_run), "--count", "50", "--seed", seed,
                     "--out", str(tmp_path / f"{name}.npz"), "--threads", "1"]) == 0
    a, b, c = (np.load(tmp_path / f"{n}.npz")["points"] for n in "abc")
    assert a.shape == (50, 2) and np.array_equal(a, b) and not np.array_equal(a, c)
    for name in ("s1", "s2"):
        assert main(["quality", "--checkpoint", str(toy_run), "--input", str(tmp_path / "a.npz"),
                     "--out", str(tmp_path / f"{name}.csv"), "--threads", "1"]) == 0
    assert (tmp_path / "s1.csv").read_text() == (tmp_path / "s2.csv").read_text()
    assert (tmp_path / "s1.png").is_file()
    rows = (tmp_path / "s1.csv").read_text().splitlines()
    assert rows[0] == "index,quality,reconstruction_error" and len(rows) == 51
    q, e = (float(v) for v in rows[1].split(",")[1:])
    assert q == pytest.approx(math.exp(-e), rel=1e-4)
    assert main(["sample", "--checkpoint", str(toy_run), "--count", "50", "--out", str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").stat().st_size > 1000


def test_bad_input_is_one_line_and_exit_2(toy_run, tmp_path, capsys):
    np.savez(tmp_path / "none.npz", other=np.zeros(3))
    cases = [
        ["quality", "--checkpoint", str(toy_run), "--input", str(tmp_path / "none.npz"), "--out", str(tmp_path / "q.csv")],
        ["train", "--method", "iwgan", "--data", "ring8", "--arch", "vanilla", "--out", str(tmp_path / "t1")],
        ["train", "--method", "iwgan", "--data", "ring8", "--stop-gap", "-1", "--out", str(tmp_path / "t2")],
        ["train", "--method", "iwgan", "--data", "ring8", "--stop-gap", "nan", "--out", str(tmp_path / "t3")],
        ["train", "--method", "baseline", "--data", "ring8", "--out", str(tmp_path / "t4")],
        ["train", "--method", "iwgan", "--data", "digits", "--arch", "mlp", "--out", str(tmp_path / "t5")],
    ]
    expected = ["neither `images`", "--arch 'vanilla' is an image architecture", "--stop-gap must be >= 0",
                "--stop-gap must be a finite number", "--data ring8 is a 2-D toy", "--arch 'mlp' is for 2-D points"]
    for argv, words in zip(cases, expected, strict=True):
        capsys.readouterr()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and words in err, err


def test_quality_refuses_a_run_that_is_not_iwgan(tmp_path, capsys):
    out = tmp_path / "base"
    assert main(["train", "--method", "baseline", "--data", "digits", "--epochs", "1", "--val-size", "100",
                 "--train-limit", "64", "--out", str(out), "--threads", "1", "--no-progress"]) == 0
    np.savez(tmp_path / "x.npz", images=np.zeros((2, 1, 8, 8), dtype=np.float32))
    capsys.readouterr()
    assert main(["quality", "--checkpoint", str(out), "--input", str(tmp_path / "x.npz"),
                 "--out", str(tmp_path / "q.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "iwgan" in err


def test_settings_are_refused_where_they_are_built():
    with pytest.raises(SettingError, match="stop_gap must be >= 0"):
        tiny_config(stop_gap=-0.5)
