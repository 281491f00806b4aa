"""The cross-evaluation harness and the checkpoints-to-reports runner, on tiny CPU models."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from winn_robust.attacks import get_attack
from winn_robust.checkpoint import save_checkpoint
from winn_robust.errors import UserError
from winn_robust.evaluation import EvalSpec, compute_metrics, cross_evaluate
from winn_robust.experiments.evaluate import evaluate_models, model_names
from winn_robust.models import build_model

SHAPE = (1, 8, 8)
N = 24
FGSM01 = ("fgsm", 0.1)


def tiny_model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model("vanilla", SHAPE, 10).eval()


@pytest.fixture(scope="module")
def models():
    return {"base": tiny_model(0), "winn": tiny_model(1)}


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    return torch.rand(N, *SHAPE, generator=g) * 2 - 1, torch.randint(0, 10, (N,), generator=g)


@pytest.fixture(scope="module")
def result(models, data):
    return cross_evaluate(models, *data, EvalSpec(eps=(0.0, 0.1), batch_size=10), progress=False)


def test_shapes_and_dtypes(result):
    assert result.model_names == ["base", "winn"] and result.eps_values == [0.0, 0.1]
    assert result.runs == [("fgsm", 0.0), ("fgsm", 0.1)]
    assert result.labels.dtype == np.int64 and result.labels.shape == (N,)
    for run in result.runs:
        for s in result.model_names:
            for t in result.model_names:
                assert result.adv_preds[run][s][t].shape == (N,)
                assert result.adv_preds[run][s][t].dtype == np.int64


def test_clean_preds_are_argmax_of_the_model(models, data, result):
    images, _ = data
    with torch.no_grad():
        for name, model in models.items():
            np.testing.assert_array_equal(result.clean_preds[name], model(images).argmax(1).numpy())


def test_adversarial_predictions_match_the_attack_called_directly(models, data, result):
    images, labels = data
    for source, model in models.items():
        adv = get_attack("fgsm")(model, images, labels, 0.1)
        with torch.no_grad():
            for target, other in models.items():
                np.testing.assert_array_equal(result.adv_preds[FGSM01][source][target], other(adv).argmax(1).numpy())
    # the attack did something: FGSM raises the model's own error on random data
    assert (result.adv_preds[FGSM01]["base"]["base"] != result.labels).sum() > (result.clean_preds["base"] != result.labels).sum()


def test_eps_zero_adversarial_error_equals_clean_error(result):
    metrics = compute_metrics(result.labels, result.clean_preds, result.adv_preds, "base")
    for name in result.model_names:
        assert metrics.by_run[("fgsm", 0.0)].models[name].adv_error == metrics.clean_error[name]
        for source in result.model_names:
            np.testing.assert_array_equal(result.adv_preds[("fgsm", 0.0)][source][name], result.clean_preds[name])
    assert result.unchanged_images[("fgsm", 0.0)] == {"base": N, "winn": N}
    assert result.unchanged_images[FGSM01]["base"] < N


def test_batch_size_does_not_change_results(models, data, result):
    other = cross_evaluate(models, *data, EvalSpec(eps=(0.0, 0.1), batch_size=N), progress=False)
    assert other.adv_preds[FGSM01]["winn"]["base"].tolist() == result.adv_preds[FGSM01]["winn"]["base"].tolist()
    assert other.clean_preds["winn"].tolist() == result.clean_preds["winn"].tolist()


def test_flags_restored_and_no_weight_gradients(data):
    model = tiny_model(2).train()
    frozen = next(model.parameters())
    frozen.requires_grad_(False)
    cross_evaluate({"m": model}, *data, EvalSpec(eps=(0.1,), batch_size=N), progress=False)
    assert model.training
    params = list(model.parameters())
    assert not params[0].requires_grad and all(p.requires_grad for p in params[1:])
    assert all(p.grad is None for p in params)


@pytest.mark.parametrize("eps", [-0.01, 1.5])
def test_bad_eps_is_a_user_error(eps):
    with pytest.raises(UserError, match="pixel units"):
        EvalSpec(eps=(eps,))


def test_unknown_attack_is_a_user_error():
    with pytest.raises(UserError, match="unknown attack"):
        EvalSpec.build((0.1,), ["nope"])


def test_foolbox_fgsm_gives_the_same_table(models, data, result):
    fool = cross_evaluate(models, *data, EvalSpec.build((0.0, 0.1), ["foolbox-fgsm"], batch_size=10), progress=False)
    np.testing.assert_array_equal(fool.clean_preds["base"], result.clean_preds["base"])
    for eps in result.eps_values:
        for s in result.model_names:
            for t in result.model_names:
                np.testing.assert_array_equal(fool.adv_preds[("foolbox-fgsm", eps)][s][t], result.adv_preds[("fgsm", eps)][s][t])


def test_several_attacks_each_at_every_eps_with_subsets(models, data):
    spec = EvalSpec.build((0.1, 0.0), ["fgsm", "pgd"], options={"pgd": {"steps": "5", "restarts": "1"}},
                          batch_size=10, attack_limits={"pgd": 15})
    both = cross_evaluate(models, *data, spec, progress=False)
    assert both.runs == [("fgsm", 0.1), ("fgsm", 0.0), ("pgd", 0.1), ("pgd", 0.0)]
    assert both.run_sizes[("pgd", 0.1)] == 15 and both.run_sizes[("fgsm", 0.1)] == N
    metrics = compute_metrics(both.labels, both.clean_preds, both.adv_preds, "base")
    robust = metrics.robust[0.1]
    assert robust.n == 15 and robust.attacks == ("fgsm", "pgd")
    for name in both.model_names:  # the worst case is at least as bad as every attack on the same images
        fgsm_wrong = both.adv_preds[FGSM01][name][name][:15] != both.labels[:15]
        pgd_wrong = both.adv_preds[("pgd", 0.1)][name][name] != both.labels[:15]
        assert robust.error[name].k >= max(fgsm_wrong.sum(), pgd_wrong.sum())
    assert both.loss_traces[("pgd", 0.1)]["base"][0]  # PGD reports its loss trace
    assert set(both.probes) == {"base", "winn"} and both.probes["base"].n == 10


# ----------------------------------------------------------------------------- checkpoints -> reports
def save(path: Path, seed: int, method: str, dataset: str = "digits") -> Path:
    save_checkpoint(path, tiny_model(seed), {"arch": "vanilla", "dataset": dataset, "image_shape": list(SHAPE),
                                             "num_classes": 10, "method": method, "epoch": 3, "seed": seed})
    return path


def test_evaluate_models_end_to_end(tmp_path):
    base, winn = save(tmp_path / "base.pt", 0, "baseline"), save(tmp_path / "winn.pt", 1, "winn")
    with pytest.raises(UserError, match="given twice"):
        evaluate_models([str(base), str(winn), str(base)], EvalSpec(eps=(0.1,)), None, device="cpu", progress=False)
    run = tmp_path / "run"  # a run folder is its best.pt: the same model given twice
    run.mkdir()
    save(run / "best.pt", 0, "baseline")
    with pytest.raises(UserError, match="given twice"):
        evaluate_models([str(run), f"again={run / 'best.pt'}"], EvalSpec(eps=(0.1,)), None, device="cpu", progress=False)
    report = evaluate_models([str(base), str(winn)], EvalSpec(eps=(0.05, 0.125), limit=20, batch_size=8),
                             tmp_path / "report", device="cpu", progress=False)
    out = {"names": report.names, "files": report.files, "metrics": report.metrics, "result": report.result}
    assert out["names"] == ["baseline", "winn"]
    for name in ("table.md", "table.csv", "results.json", "per_example.csv", "error_vs_eps.png", "adversarial_examples.png"):
        assert out["files"][name].is_file() and out["files"][name].stat().st_size > 0
    assert out["files"]["error_vs_eps.png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    doc = json.loads(out["files"]["results.json"].read_text())
    prov = doc["provenance"]
    assert prov["dataset"] == "digits" and prov["split"] == "test" and prov["n"] == 20
    assert prov["eps"] == [0.05, 0.125] and "pixel units" in prov["eps_unit"]
    assert prov["models"]["winn"]["epoch"] == 3 and prov["models"]["winn"]["seed"] == 1
    assert len(prov["models"]["baseline"]["sha256"]) == 64
    assert prov["device"]["type"] == "cpu"
    assert {"winn_robust", "torch", "torchvision", "foolbox", "numpy", "python"} <= set(prov["versions"])
    assert out["metrics"].n == 20 and out["result"].labels.shape == (20,)


def test_mismatched_datasets_are_a_user_error(tmp_path):
    base, other = save(tmp_path / "base.pt", 0, "baseline"), save(tmp_path / "other.pt", 1, "winn", dataset="mnist")
    with pytest.raises(UserError) as err:
        evaluate_models([str(base), str(other)], EvalSpec(eps=(0.1,)), tmp_path / "r", progress=False, plots=False)
    message = str(err.value)
    assert "base.pt" in message and "other.pt" in message and "digits" in message and "mnist" in message
    assert not (tmp_path / "r").exists()


def test_data_other_than_the_checkpoints_is_a_user_error(tmp_path):
    base = save(tmp_path / "base.pt", 0, "baseline")
    with pytest.raises(UserError, match="mnist"):
        evaluate_models([str(base)], EvalSpec(eps=(0.1,)), tmp_path / "r", data="mnist", progress=False)


def test_model_names_are_unique_and_readable():
    paths = [Path("a/base.pt"), Path("a/seed1.pt"), Path("b/seed2.pt")]
    same = [("baseline", "vanilla"), ("winn", "vanilla"), ("winn", "vanilla")]
    assert model_names(same, paths) == ["baseline", "winn-seed1", "winn-seed2"]
    mixed = [("baseline", "vanilla"), ("winn", "resnet32")]
    assert model_names(mixed, paths[:2]) == ["baseline-vanilla", "winn-resnet32"]
    clash = [("winn:x", "v")] * 2
    assert model_names(clash, [Path("a/m.pt"), Path("b/m.pt")]) == ["winn_x-m", "winn_x-m-2"]
