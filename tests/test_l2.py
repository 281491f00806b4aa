"""The L2 threat model end to end, and robust-error curves from one minimum-norm attack: every L2
attack stays in the L2 ball and the box, our L2 PGD agrees with foolbox's, the norm reaches every
report, an attack without the asked norm is one line, and L-inf records are unchanged."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from tests.helpers import fit_full_batch, untrained_pair
from winn_robust.attacks import attacks_for, make_attack
from winn_robust.attacks.pgd_l2 import l2_ascent, l2_norms, l2_project, random_l2_start
from winn_robust.cli import main
from winn_robust.errors import UserError
from winn_robust.evaluation import EvalSpec, cross_evaluate
from winn_robust.evaluation.curves import compute_curves
from winn_robust.evaluation.indicators import PASS, WARN
from winn_robust.evaluation.probes import probe_model
from winn_robust.experiments.evaluate import build_report
from winn_robust.experiments.presets import PRESETS
from winn_robust.experiments.reproduce import resolve_settings
from winn_robust.models.base import Classifier
from winn_robust.reporting.provenance import Provenance
from winn_robust.units import check_eps, eps_to_model, image_diagonal

FAST = {"pgd": {"steps": "10", "restarts": "2"}, "apgd-ce": {"steps": "10"}, "apgd-t": {"steps": "5", "target_classes": "2"},
        "fab-t": {"steps": "5", "target_classes": "2"}, "square": {"queries": "50"}, "foolbox-pgd": {"steps": "10"},
        "foolbox-bim": {"steps": "5"}, "foolbox-deepfool": {"steps": "5"}, "foolbox-fmn": {"steps": "20"},
        "foolbox-ddn": {"steps": "20"}}


class Linear(Classifier):
    def __init__(self):
        super().__init__((1, 8, 8), 10)
        self.linear = nn.Linear(64, 10)

    def forward(self, x):
        return self.linear(x.flatten(1))


@pytest.fixture(scope="module")
def trained(digits):
    train_x, train_y, _, _ = digits
    torch.manual_seed(0)  # Linear's initial weights
    return fit_full_batch(Linear(), train_x, train_y)


def error(model, adversarial, y):
    with torch.no_grad():
        return float((model(adversarial).argmax(1) != y).float().mean())


# ----------------------------------------------------------------------------- the pieces
def test_l2_projection_and_random_start_stay_in_the_ball():
    g = torch.Generator().manual_seed(0)
    delta = torch.randn(50, 1, 8, 8, generator=g) * torch.linspace(0.01, 3, 50).view(-1, 1, 1, 1)
    projected = l2_project(delta, 1.0)
    assert (l2_norms(projected) <= 1.0 + 1e-6).all()
    inside = l2_norms(delta) <= 1.0
    assert inside.any() and torch.equal(projected[inside], delta[inside])  # already inside: untouched
    assert torch.allclose(l2_norms(projected[~inside]), torch.ones(int((~inside).sum())))  # outside: onto the sphere
    x = torch.zeros(200, 1, 8, 8)
    start = random_l2_start(x, 0.5, g)
    norms = l2_norms(start - x)
    assert (norms <= 0.5 + 1e-6).all() and norms.min() > 0.4  # uniform in a 64-d ball: near its surface


def test_l2_ascent_is_a_plain_function_training_can_call(trained, digits):
    _, _, x, y = digits
    radius = eps_to_model(0.5)
    adversarial = l2_ascent(trained, x, y, radius, radius / 4, steps=10)
    assert (l2_norms(adversarial - x) <= radius + 1e-5).all()
    assert error(trained, adversarial, y) > error(trained, x, y) + 0.2


@pytest.mark.parametrize("name", attacks_for("l2"))
def test_every_l2_attack_stays_in_the_l2_ball_and_the_box(name, trained, digits):
    _, _, x, y = digits
    x, y = x[:12].clone(), y[:12]
    if name == "autoattack":
        x, y = x[:3], y[:3]
    before = x.clone()
    attack = make_attack(name, FAST.get(name, {}) if name != "autoattack" else {}, seed=1, norm="l2")
    assert attack.norm == "l2" and "l2" in attack.norms
    eps = 0.4
    adversarial = attack(trained, x, y, eps)
    assert torch.equal(x, before), "the attack changed its input tensor"
    assert (l2_norms(adversarial - x) <= eps_to_model(eps) + 1e-5).all()  # model space: 2 eps
    assert adversarial.min() >= -1 and adversarial.max() <= 1


def test_our_l2_pgd_agrees_with_foolbox_l2pgd(trained, digits):
    import foolbox

    _, _, x, y = digits
    eps, steps = 0.5, 20
    step = 2.5 * eps / steps
    ours = make_attack("pgd", {"steps": str(steps), "restarts": "1", "step_size": str(step)}, norm="l2")(trained, x, y, eps)
    torch.manual_seed(0)
    _, theirs, _ = foolbox.attacks.L2PGD(steps=steps, abs_stepsize=eps_to_model(step))(
        foolbox.PyTorchModel(trained, bounds=(-1, 1)), x, y, epsilons=eps_to_model(eps))
    clean, mine, foolbox_rate = error(trained, x, y), error(trained, ours, y), error(trained, theirs, y)
    assert mine > clean + 0.1, (clean, mine)  # the attack works
    assert abs(mine - foolbox_rate) <= 0.05, (mine, foolbox_rate)


def test_fgm_is_one_normalised_step_of_two_eps(trained, digits):
    _, _, x, y = digits
    adversarial = make_attack("fgm", norm="l2")(trained, x[:5], y[:5], 0.25)
    moved = l2_norms(adversarial - x[:5])
    assert (moved <= 0.5 + 1e-5).all() and moved.max() > 0.3  # up to 2 eps in model space (less where clipped)


# ----------------------------------------------------------------------------- the norm as a setting
def test_an_attack_without_the_asked_norm_is_one_user_error():
    with pytest.raises(UserError, match=r"fgsm has no L2 version.*fgm"):
        make_attack("fgsm", norm="l2")
    with pytest.raises(UserError, match="fgm has no L-inf version"):
        make_attack("fgm")
    with pytest.raises(UserError, match="not a threat model"):
        make_attack("pgd", norm="l1")
    assert type(make_attack("pgd", norm="l2")).__name__ == "PGDL2" and type(make_attack("pgd")).__name__ == "PGD"
    with pytest.raises(UserError, match="another norm"):
        EvalSpec(eps=(0.5,), attacks=(make_attack("pgd"),), norm="l2")


def test_l2_eps_may_exceed_one_and_linf_records_are_unchanged():
    assert check_eps(2.0, "l2") == 2.0
    with pytest.raises(UserError, match="outside"):
        check_eps(2.0)
    linf = EvalSpec.build((0.1,), ["fgsm", "pgd"])
    assert "norm" not in linf.describe() and all("norm" not in a for a in linf.describe()["attacks"])
    l2 = EvalSpec.build((1.5,), ["fgm", "pgd"], norm="l2", curve="fmn")
    assert l2.describe()["norm"] == "l2" and l2.describe()["curve"]["attack"] == "foolbox-fmn"
    assert EvalSpec(eps=(0.5,), norm="l2").attack_names == ("fgm",)


def test_the_unbounded_probe_at_l2_uses_the_image_diagonal(trained, digits):
    _, _, x, y = digits
    probe = probe_model(trained, x[:40], y[:40], seed=0, norm="l2")
    assert image_diagonal((1, 8, 8)) == 8.0
    assert probe.unbounded_wrong / probe.n >= 0.98


@pytest.mark.parametrize("preset", [p for p in PRESETS if PRESETS[p].get("kind") != "generative"])
def test_reproduce_norm_l2_works_with_every_preset(preset, tmp_path):
    settings = resolve_settings(preset, {"norm": "l2", "curve": "fmn"}, out=tmp_path)
    spec = settings.eval_spec
    assert spec.norm == "l2" and "fgm" in spec.attack_names and "fgsm" not in spec.attack_names
    assert all(a.norm == "l2" for a in spec.attacks) and spec.curve is not None
    assert spec.table_eps >= 0.5  # the L2 defaults, not the preset's L-inf eps
    with pytest.raises(UserError, match="fgsm has no L2 version"):
        resolve_settings(preset, {"norm": "l2", "attack": "fgsm,pgd"}, out=tmp_path)


# ----------------------------------------------------------------------------- curves and reports
def test_the_curve_is_checked_against_the_fixed_eps_attacks(trained, digits):
    _, _, x, y = digits
    x, y = x[:60], y[:60]
    weak = make_attack("pgd", {"steps": "1", "restarts": "1", "random_start": "false", "step_size": "0.01"}, norm="l2")
    spec = EvalSpec(eps=(0.5, 1.0), attacks=(weak,), norm="l2",
                    curve=make_attack("foolbox-fmn", {"steps": "30"}, norm="l2"), batch_size=30)
    result = cross_evaluate({"lin": trained}, x, y, spec, progress=False)
    norms = result.min_norms["lin"]
    assert norms.shape == (60,) and (norms >= 0).all()
    curve = compute_curves(result.min_norms, result.eps_values)["lin"]
    values = [r.value for r in curve.error]
    assert values == sorted(values) and values[-1] >= 0.9  # monotone, and the unbounded attack fools nearly all
    report = build_report(result, ["lin"], Provenance(table_eps=0.5, norm="l2"), spec, [str(i) for i in range(10)])
    checks = {i.eps: i for i in report.indicators if i.indicator == "curve-beats-fixed-eps"}
    assert checks[1.0].status == WARN and checks[1.0].value > 0.01  # one tiny PGD step misses what FMN finds
    strong = EvalSpec(eps=(0.5,), attacks=(make_attack("pgd", FAST["pgd"], norm="l2"),), norm="l2",
                      curve=spec.curve, batch_size=30)
    result = cross_evaluate({"lin": trained}, x, y, strong, progress=False)
    report = build_report(result, ["lin"], Provenance(table_eps=0.5, norm="l2"), strong, [str(i) for i in range(10)])
    assert [i.status for i in report.indicators if i.indicator == "curve-beats-fixed-eps"] == [PASS]


def test_attack_norm_l2_with_a_curve_end_to_end_and_rebuilt_byte_identical(tmp_path, capsys):
    paths = untrained_pair(tmp_path)
    out = tmp_path / "l2"
    argv = ["attack", "--baseline", paths[0], "--model", paths[1], "--norm", "l2", "--eps", "0.5,1.5",
            "--attack", "fgm,pgd", "--attack-option", "pgd.steps=3", "--attack-option", "pgd.restarts=1",
            "--curve", "fmn", "--attack-option", "foolbox-fmn.steps=10", "--limit", "30", "--no-progress",
            "--device", "cpu", "--out", str(out)]
    assert main(argv) == 0
    table = (out / "table.md").read_text()
    assert "Threat model: L2." in table and "## Table 3/4: pgd, L2 eps = 0.5 (table eps)" in table
    assert "## Robust error over every eps: foolbox-fmn" in table and "median minimal perturbation" in table
    frame = pd.read_csv(out / "table.csv")
    assert set(frame["norm"]) == {"l2"} and frame["eps_unit"].str.startswith("L2 norm").all()
    curve = pd.read_csv(out / "curve.csv")
    assert set(curve["model"]) == {"baseline", "winn"} and (curve["robust_error_ci_low"] <= curve["robust_error"]).all()
    assert (out / "curve.png").is_file()
    results = json.loads((out / "results.json").read_text())
    assert results["provenance"]["norm"] == "l2" and results["curve"]["attack"]["attack"] == "foolbox-fmn"
    per_example = pd.read_csv(out / "per_example.csv")
    assert np.isfinite(per_example["minnorm[attack=foolbox-fmn]:baseline"]).any()
    capsys.readouterr()
    assert main(["report", str(out), "--out", str(tmp_path / "rebuilt")]) == 0
    for name in ("table.md", "table.csv", "curve.csv"):
        assert (tmp_path / "rebuilt" / name).read_bytes() == (out / name).read_bytes(), name
    # an L-inf-only attack at --norm l2: one line, exit 2
    capsys.readouterr()
    assert main([*argv[:-1], str(tmp_path / "bad"), "--attack", "fgsm,pgd"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "fgsm has no L2 version" in err


def test_reproduce_hands_the_norm_and_curve_to_its_attack_job(tmp_path):
    """The evaluation job's spec (JSON) carries the norm, the curve and every attack setting."""
    from winn_robust.evaluation.spec import EvalSpec

    settings = resolve_settings("quick", {"norm": "l2", "curve": "fmn", "strong_limit": 50},
                                out=tmp_path, attack_options={"pgd": {"steps": "7"}})
    spec = settings.eval_spec
    rebuilt = EvalSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert rebuilt.norm == "l2" and rebuilt.curve is not None and rebuilt.curve.name == "foolbox-fmn"
    assert rebuilt.describe() == spec.describe()  # the job evaluates exactly what reproduce planned
