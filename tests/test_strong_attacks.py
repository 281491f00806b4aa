"""Strong attacks, failure indicators, bring-your-own models and resumable evaluations: small
real models, real attacks (ours, foolbox, torchattacks, AutoAttack's pyautoattack)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from tests.helpers import fit_full_batch, untrained_pair
from winn_robust.attacks import ATTACKS, make_attack
from winn_robust.cli import main
from winn_robust.errors import UserError
from winn_robust.evaluation import EvalSpec, cross_evaluate
from winn_robust.evaluation.indicators import PASS, WARN
from winn_robust.experiments.evaluate import build_report, evaluate
from winn_robust.models.base import Classifier
from winn_robust.reporting.provenance import Provenance
from winn_robust.units import eps_to_model, to_model_range, to_pixel_range

FAST = {"pgd": {"steps": "10", "restarts": "2"}, "apgd-ce": {"steps": "10"}, "apgd-t": {"steps": "5", "target_classes": "2"},
        "fab-t": {"steps": "5", "target_classes": "2"}, "square": {"queries": "50"}, "foolbox-pgd": {"steps": "10"},
        "foolbox-bim": {"steps": "5"}, "foolbox-deepfool": {"steps": "5"}}


class Linear(Classifier):
    """A linear classifier on 8x8 digits: trained in a second, attacked in milliseconds."""

    def __init__(self, quantize: bool = False):
        super().__init__((1, 8, 8), 10)
        self.linear = nn.Linear(64, 10)
        self.quantize = quantize

    def forward(self, x):
        if self.quantize:  # gradient masking: rounding has a zero gradient almost everywhere
            x = torch.round(x * 2) / 2
        return self.linear(x.flatten(1))


@pytest.fixture(scope="module")
def trained(digits):
    train_x, train_y, _, _ = digits
    torch.manual_seed(0)  # Linear's initial weights
    return fit_full_batch(Linear(), train_x, train_y)


@pytest.fixture(scope="module")
def masked(trained):
    model = Linear(quantize=True)
    model.load_state_dict(trained.state_dict())
    return model.eval()


# ----------------------------------------------------------------------------- every attack's contract
@pytest.mark.parametrize("name", list(ATTACKS))
def test_every_attack_stays_in_budget_and_box_and_leaves_its_input(name, trained, digits):
    _, _, x, y = digits
    x, y = x[:12].clone(), y[:12]
    before = x.clone()
    attack = make_attack(name, FAST.get(name, {}) if name != "autoattack" else {}, seed=1)
    if name == "autoattack":  # the full ensemble is slow even here: a few images
        x, y, before = x[:3], y[:3], before[:3]
    eps = 0.1
    adversarial = attack(trained, x, y, eps)
    assert torch.equal(x, before), "the attack changed its input tensor"
    assert adversarial.shape == x.shape
    assert (adversarial - x).abs().max() <= eps_to_model(eps) + 1e-6
    assert adversarial.min() >= -1 and adversarial.max() <= 1


@pytest.mark.parametrize("name, options", [("fgsm", {}), ("pgd", {"random_start": "false", "steps": "10", "restarts": "1"}),
                                           ("foolbox-fgsm", {}), ("foolbox-bim", {"steps": "5"})])
def test_deterministic_attacks_give_the_same_result_batched_and_alone(name, options, trained, digits):
    _, _, x, y = digits
    attack = make_attack(name, options)
    assert attack.deterministic
    batched = attack(trained, x[:10], y[:10], 0.08)
    alone = torch.cat([attack(trained, x[i:i + 1], y[i:i + 1], 0.08) for i in range(10)])
    torch.testing.assert_close(batched, alone, atol=1e-6, rtol=0)


def test_unknown_attack_and_option_are_user_errors():
    with pytest.raises(UserError, match="unknown attack"):
        make_attack("deepfool-9000")
    with pytest.raises(UserError, match=r"unknown option 'stepz'.*steps"):
        make_attack("pgd", {"stepz": "3"})
    with pytest.raises(UserError, match="not a valid int"):
        make_attack("pgd", {"steps": "many"})
    with pytest.raises(UserError, match="restarts >= 1"):
        make_attack("pgd", {"restarts": "0"})


# ----------------------------------------------------------------------------- PGD against the libraries
def test_our_pgd_agrees_with_foolbox_and_torchattacks(trained, digits):
    import foolbox
    import torchattacks

    _, _, x, y = digits
    eps, steps = 0.06, 20
    step = 2.5 * eps / steps
    ours = make_attack("pgd", {"steps": str(steps), "restarts": "1", "step_size": str(step)}, seed=0)(trained, x, y, eps)
    fmodel = foolbox.PyTorchModel(trained, bounds=(-1, 1))
    torch.manual_seed(0)
    _, theirs_fb, _ = foolbox.attacks.LinfPGD(steps=steps, abs_stepsize=eps_to_model(step))(fmodel, x, y,
                                                                                          epsilons=eps_to_model(eps))

    class PixelModel(nn.Module):
        def forward(self, u):
            return trained(to_model_range(u))

    torch.manual_seed(0)
    theirs_ta = to_model_range(torchattacks.PGD(PixelModel().eval(), eps=eps, alpha=step, steps=steps,
                                                random_start=True)(to_pixel_range(x), y))
    rates = [float((trained(a).argmax(1) != y).float().mean()) for a in (ours, theirs_fb, theirs_ta)]
    clean = float((trained(x).argmax(1) != y).float().mean())
    assert rates[0] > clean + 0.1, rates  # the attack works
    assert abs(rates[0] - rates[1]) <= 0.05 and abs(rates[0] - rates[2]) <= 0.05, rates


# ----------------------------------------------------------------------------- failure indicators
def indicator_status(report, model: str, name: str, eps: float | None = None) -> str:
    matches = [i for i in report.indicators if i.model == model and i.indicator == name and (eps is None or i.eps == eps)]
    assert matches, (model, name)
    return WARN if any(i.status == WARN for i in matches) else matches[0].status


def test_a_gradient_masked_model_raises_the_indicators_an_ordinary_one_passes(trained, masked, digits):
    _, _, x, y = digits
    spec = EvalSpec.build((0.15,), ["fgsm", "pgd", "square"], options={"pgd": {"steps": "20", "restarts": "1"},
                                                                       "square": {"queries": "300"}}, batch_size=60)
    result = cross_evaluate({"ordinary": trained, "masked": masked}, x, y, spec, progress=False)
    report = build_report(result, ["ordinary", "masked"], Provenance(table_eps=0.15), spec, ())
    for name in ("zero-gradients", "gradient-free-beats-gradient", "transfer-beats-white-box"):
        assert indicator_status(report, "masked", name) == WARN, name
        assert indicator_status(report, "ordinary", name) == PASS, name
    assert indicator_status(report, "masked", "unbounded-attack") == WARN
    assert indicator_status(report, "ordinary", "unbounded-attack") == PASS
    assert indicator_status(report, "ordinary", "probability-outputs") == PASS
    assert indicator_status(report, "ordinary", "randomness") == PASS


def test_probabilities_and_randomness_are_flagged(trained, digits):
    _, _, x, y = digits

    class Softmaxed(Classifier):
        def __init__(self):
            super().__init__((1, 8, 8), 10)

        def forward(self, inputs):
            return trained(inputs).softmax(1)

    class Noisy(Classifier):
        def __init__(self):
            super().__init__((1, 8, 8), 10)

        def forward(self, inputs):
            return trained(inputs) + torch.randn(len(inputs), 10)

    spec = EvalSpec.build((0.1,), ["fgsm"], batch_size=60)
    result = cross_evaluate({"soft": Softmaxed(), "noisy": Noisy()}, x[:60], y[:60], spec, progress=False)
    report = build_report(result, ["soft", "noisy"], Provenance(table_eps=0.1), spec, ())
    assert indicator_status(report, "soft", "probability-outputs") == WARN
    assert indicator_status(report, "noisy", "randomness") == WARN


# ----------------------------------------------------------------------------- bring your own model
def write_python_model(path: Path, trained: nn.Module) -> Path:
    torch.save(trained.linear.state_dict(), path.with_suffix(".weights"))
    path.write_text(f'''import torch
from torch import nn

def build():
    """images in [0, 1] -> logits (the ecosystem's convention)."""
    linear = nn.Linear(64, 10)
    linear.load_state_dict(torch.load({str(path.with_suffix(".weights"))!r}, weights_only=True))
    class M(nn.Module):
        def forward(self, u):
            return linear((2 * u - 1).flatten(1))
    return M()

def build_masked():
    """The same model behind a rounding of its input: zero gradient almost everywhere."""
    model = build()
    class Masked(nn.Module):
        def forward(self, u):
            return model(torch.round(u * 4) / 4)
    return Masked()

def not_a_model():
    return 42

def wrong_shape():
    return nn.Flatten()
''')
    return path


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit.trace is deprecated, but users still send such files
def test_external_models_through_the_cli_match_each_other(tmp_path, trained, capsys):
    source = write_python_model(tmp_path / "zoo.py", trained)

    class PixelModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = trained.linear

        def forward(self, u):
            return self.linear((2 * u - 1).flatten(1))

    scripted = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.trace(PixelModel().eval(), torch.rand(2, 1, 8, 8)), str(scripted))
    out = tmp_path / "report"
    code = main(["attack", "--model", f"py={source}:build", "--model", f"ts={scripted}", "--data", "digits",
                 "--eps", "0.1", "--limit", "40", "--no-progress", "--device", "cpu", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "trust py:" in printed and "fgsm at eps 0.1 (N = 40)" in printed and "report written to" in printed
    frame = __import__("pandas").read_csv(out / "per_example.csv")
    # the same weights in two wrappings: identical predictions everywhere
    assert (frame["clean:py"] == frame["clean:ts"]).all()
    assert (frame["adv[attack=fgsm,eps=0.1,src=py]:py"] == frame["adv[attack=fgsm,eps=0.1,src=ts]:ts"]).all()
    results = json.loads((out / "results.json").read_text())
    assert results["provenance"]["models"]["py"]["kind"] == "python" and results["provenance"]["dataset"] == "digits"


@pytest.mark.filterwarnings("ignore::FutureWarning")
@pytest.mark.parametrize("spec, expected", [
    ("{src}", "FILE.py:FUNCTION"), ("{src}:missing", "no function 'missing'"),
    ("{src}:not_a_model", "returned a int"), ("{src}:wrong_shape", "must return logits of shape (N, 10)"),
    ("{bad_ts}", "bad.pt"), ("{nothing}", "does not exist")])
def test_bad_external_models_are_one_line(tmp_path, trained, capsys, spec, expected):
    source = write_python_model(tmp_path / "zoo.py", trained)
    bad_ts = tmp_path / "bad.pt"
    torch.jit.save(torch.jit.script(nn.Linear(2, 2)), str(bad_ts))
    data = bad_ts.read_bytes()
    bad_ts.write_bytes(data[: len(data) // 2] + b"\0" * 10 + data[len(data) // 2 + 10:])
    model = spec.format(src=source, bad_ts=bad_ts, nothing=tmp_path / "none.pt")
    code = main(["attack", "--model", model, "--data", "digits", "--eps", "0.1", "--limit", "10", "--no-progress",
                 "--device", "cpu", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert expected in err, err


def test_python_api_evaluates_ecosystem_models(trained, digits, tmp_path):
    _, _, x, y = digits

    class PixelModel(nn.Module):
        def forward(self, u):
            return trained(2 * u - 1)

    report = evaluate({"mine": PixelModel(), "ours": trained}, to_pixel_range(x[:30]), y[:30], eps=[0.1, 0.05],
                      attacks="fgsm,pgd", options={"pgd": {"steps": "5", "restarts": "1"}}, device="cpu",
                      class_names=[str(i) for i in range(10)])
    assert report.names == ["mine", "ours"]
    run = report.metrics.by_run[("fgsm", 0.1)]
    assert run.models["mine"].adv_error == run.models["ours"].adv_error  # same model, two conventions
    files = report.write(tmp_path / "api")
    assert {"table.md", "table.csv", "results.json", "per_example.csv"} <= {p.name for p in files.values()}
    assert (tmp_path / "api" / "table.md").read_text().startswith("# Adversarial robustness report")
    with pytest.raises(UserError, match=r"\[0, 1\]"):
        evaluate({"mine": PixelModel()}, x[:5], y[:5], eps=0.1)  # [-1, 1] images are refused


# ----------------------------------------------------------------------------- reproducible, resumable
def test_a_killed_and_resumed_evaluation_ends_byte_identical(tmp_path, monkeypatch):
    paths = untrained_pair(tmp_path)
    argv = ["attack", "--baseline", paths[0], "--model", paths[1], "--eps", "0.1,0.2", "--attack", "fgsm,pgd",
            "--attack-option", "pgd.steps=3", "--attack-option", "pgd.restarts=2", "--batch-size", "20", "--limit", "60",
            "--seed", "7", "--no-progress", "--device", "cpu"]
    assert main([*argv, "--out", str(tmp_path / "straight")]) == 0
    from winn_robust.evaluation import harness

    real, calls = harness.run_item, []

    def killed_after_five(*args, **kwargs):
        calls.append(1)
        if len(calls) > 5:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(harness, "run_item", killed_after_five)
    assert main([*argv, "--out", str(tmp_path / "resumed")]) == 130
    assert (tmp_path / "resumed" / ".evaluation-state").is_dir()
    monkeypatch.setattr(harness, "run_item", real)
    assert main([*argv, "--out", str(tmp_path / "resumed")]) == 2  # without --resume: refused, nothing lost
    assert main([*argv, "--resume", "--out", str(tmp_path / "resumed")]) == 0
    for name in ("per_example.csv", "table.csv", "table.md"):
        assert (tmp_path / "straight" / name).read_bytes() == (tmp_path / "resumed" / name).read_bytes(), name
    volatile = ("command", "command_timestamp", "wall_time_s", "attack_time_s")
    docs = [json.loads((tmp_path / d / "results.json").read_text()) for d in ("straight", "resumed")]
    for doc in docs:
        for key in volatile:
            doc["provenance"].pop(key)
    assert docs[0] == docs[1]
    assert not (tmp_path / "resumed" / ".evaluation-state").exists()
    assert sorted(p.name for p in (tmp_path / "straight").iterdir()) == sorted(p.name for p in (tmp_path / "resumed").iterdir())


def test_seeded_random_attacks_repeat_and_settings_are_recorded(tmp_path, trained):
    source = write_python_model(tmp_path / "zoo.py", trained)
    argv = ["attack", "--model", f"{source}:build", "--data", "digits", "--eps", "0.1", "--attack", "foolbox-pgd,pgd",
            "--limit", "50",
            "--attack-option", "pgd.steps=5", "--no-progress", "--device", "cpu"]
    for out in ("a", "b"):
        assert main([*argv, "--out", str(tmp_path / out)]) == 0
    assert (tmp_path / "a" / "per_example.csv").read_bytes() == (tmp_path / "b" / "per_example.csv").read_bytes()
    doc = json.loads((tmp_path / "a" / "results.json").read_text())
    assert doc["attacks"]["pgd"] == {"attack": "pgd", "seed": 0, "steps": 5, "step_size": 0.0, "restarts": 3,
                                     "random_start": True}
    assert "steps=5" in (tmp_path / "a" / "table.md").read_text()


def test_fail_on_warn_exits_3_and_an_existing_report_is_kept(tmp_path, trained, capsys):
    source = write_python_model(tmp_path / "zoo.py", trained)
    out = tmp_path / "r"
    argv = ["attack", "--model", f"masked={source}:build_masked", "--data", "digits", "--eps", "0.1", "--limit", "30",
            "--no-progress", "--device", "cpu", "--out", str(out)]
    assert main(argv) == 0  # warnings alone never fail a run
    assert "warning(s)" in capsys.readouterr().out
    assert main(argv) == 2  # a second run into the same folder is refused ...
    assert "--force" in capsys.readouterr().err
    assert main([*argv, "--force", "--fail-on-warn"]) == 3  # ... unless forced; --fail-on-warn: status 3
