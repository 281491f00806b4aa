"""Training: losses, pool, synthesis, model selection and exact resume on tiny CPU runs."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from winn_robust.checkpoint import read_checkpoint
from winn_robust.models import build_model
from winn_robust.models.base import Classifier
from winn_robust.training import TrainConfig, TrainingDiverged, train
from winn_robust.training import trainer as trainer_module
from winn_robust.training.losses import icn_loss, input_gradient_norm, winn_loss
from winn_robust.training.pool import NegativePool, load_pool
from winn_robust.training.synthesis import synthesize

TINY = dict(arch="vanilla", data="digits", epochs=2, batch_size=20, negatives_per_class=4,
            initial_negatives_per_class=4, synthesis_max_steps=30, val_size=40)


class LinearClassifier(Classifier):
    """logits = W x + b: its critic gradient is constant, so the WINN loss has a closed form."""

    def __init__(self, image_shape=(1, 2, 2), num_classes=3):
        super().__init__(image_shape, num_classes)
        self.linear = torch.nn.Linear(4, num_classes)

    def forward(self, x):
        return self.linear(x.flatten(1))


def test_gradient_penalty_norm_matches_finite_differences():
    torch.manual_seed(0)
    model = build_model("vanilla", (1, 4, 4), 3).double().eval()
    x = (torch.rand(3, 1, 4, 4, dtype=torch.float64) * 2 - 1).requires_grad_(True)
    norms = input_gradient_norm(model.score(x)[1], x)
    h = 1e-6
    for i in range(3):
        grad = torch.zeros(16, dtype=torch.float64)
        for j in range(16):
            up, down = x[i:i + 1].detach().clone(), x[i:i + 1].detach().clone()
            up.view(-1)[j] += h
            down.view(-1)[j] -= h
            grad[j] = (model.score(up)[1] - model.score(down)[1]).item() / (2 * h)
        assert norms[i].item() == pytest.approx(grad.norm().item(), rel=1e-5)


def test_winn_loss_matches_hand_computation():
    torch.manual_seed(0)
    model = LinearClassifier().double()
    pos = torch.tensor([[0.5, -0.5, 1.0, 0.0], [0.1, 0.2, -0.3, 0.4]], dtype=torch.float64).view(2, 1, 2, 2)
    neg = torch.tensor([[-1.0, 1.0, 0.0, 0.5], [0.3, -0.9, 0.2, 0.0]], dtype=torch.float64).view(2, 1, 2, 2)
    labels = torch.tensor([2, 0])
    W, b = model.linear.weight.detach(), model.linear.bias.detach()
    w, c = model.critic.weight.detach()[0], model.critic.bias.detach()[0]
    logits_pos = pos.flatten(1) @ W.T + b
    f_pos, f_neg = logits_pos @ w + c, (neg.flatten(1) @ W.T + b) @ w + c
    log_softmax = logits_pos - torch.logsumexp(logits_pos, dim=1, keepdim=True)
    ce = -(log_softmax[0, 2] + log_softmax[1, 0]) / 2
    grad_norm = (W.T @ w).norm()          # d f / d x is the same everywhere for a linear model
    expected = ce + 0.01 * (f_neg.mean() - f_pos.mean() + 10 * (grad_norm - 1) ** 2)
    terms = winn_loss(model, pos, neg, labels, alpha=0.01, gp_lambda=10.0, generator=torch.Generator().manual_seed(1))
    assert terms.loss.item() == pytest.approx(expected.item(), rel=1e-10)
    assert terms.penalty.item() == pytest.approx(((grad_norm - 1) ** 2).item(), rel=1e-10)
    assert terms.introspective.item() == pytest.approx((f_neg.mean() - f_pos.mean()).item(), rel=1e-10)
    icn = icn_loss(model, pos, neg, labels, alpha=0.01)
    logistic = F.softplus(-f_pos).mean() + F.softplus(f_neg).mean()
    assert icn.loss.item() == pytest.approx((ce + 0.01 * logistic).item(), rel=1e-10)


def scaled_critic(model: Classifier, std: float = 1.0) -> Classifier:
    """A critic on the scale a trained one reaches (it starts at N(0, 0.02^2), where the CE term of
    synthesis dominates and tau moves little): the synthesis mechanics are what these tests check."""
    torch.nn.init.normal_(model.critic.weight, 0.0, std)
    return model


def test_synthesis_raises_f_to_tau_within_tolerance_and_respects_clip():
    torch.manual_seed(0)
    model = scaled_critic(build_model("vanilla", (1, 8, 8), 4)).eval()
    start = torch.rand(4, 6, 1, 8, 8) * 2 - 1
    with torch.no_grad():
        f0 = model.score(start.view(-1, 1, 8, 8))[1].view(4, 6).mean(1)
    tau = f0 + 0.3
    result = synthesize(model, start, torch.arange(4), tau, max_steps=500, tolerance=1e-3)
    with torch.no_grad():
        f1 = model.score(result.images.view(-1, 1, 8, 8))[1].view(4, 6).mean(1)
    assert (f1 > f0).all()
    assert ((f1 - tau).abs() <= 1e-3 + 1e-6).all()
    assert (result.steps < 500).all() and (result.steps > 0).all()
    assert result.images.min() >= -1.0 and result.images.max() <= 1.0


def test_synthesis_takes_one_step_when_the_start_already_meets_the_tolerance():
    """The official loop steps first and tests after: a start that already meets the tolerance
    still takes exactly one step."""
    model = build_model("vanilla", (1, 8, 8), 2).eval()
    start = torch.rand(2, 3, 1, 8, 8) * 2 - 1
    with torch.no_grad():
        tau = model.score(start.view(-1, 1, 8, 8))[1].view(2, 3).mean(1)
    result = synthesize(model, start, torch.arange(2), tau, max_steps=50, tolerance=10.0)
    assert result.steps.tolist() == [1, 1]
    assert not torch.equal(result.images, start)
    assert (result.images - start).abs().max() <= 0.02 + 1e-6  # one Adam step moves a pixel by at most lr


def test_batched_synthesis_equals_one_class_at_a_time():
    """All classes in one batch, with finished groups dropped from the pass, must take exactly
    the steps that separate per-class runs take."""
    torch.manual_seed(1)
    model = scaled_critic(build_model("vanilla", (1, 8, 8), 3)).double().eval()
    start = torch.rand(3, 4, 1, 8, 8, dtype=torch.float64) * 2 - 1
    with torch.no_grad():
        f0 = model.score(start.view(-1, 1, 8, 8))[1].view(3, 4).mean(1)
    tau = f0 + torch.tensor([0.02, 0.05, 0.1], dtype=torch.float64)
    together = synthesize(model, start, torch.arange(3), tau, max_steps=300, check_every=7)
    assert len(set(together.steps.tolist())) == 3, "groups must stop at different steps"
    for g in range(3):
        alone = synthesize(model, start[g:g + 1], torch.tensor([g]), tau[g:g + 1], max_steps=300)
        assert alone.steps.item() == together.steps[g].item()
        assert torch.allclose(alone.images[0], together.images[g], atol=1e-9)


def test_pool_sampling_returns_negatives_of_the_positives_labels():
    images = torch.arange(5, dtype=torch.float32).view(5, 1, 1, 1, 1).expand(5, 7, 1, 2, 2).clone()
    pool = NegativePool(images)
    labels = torch.tensor([3, 0, 4, 4, 1, 2, 3])
    negatives = pool.sample(labels, torch.Generator().manual_seed(0))
    assert torch.equal(negatives[:, 0, 0, 0], labels.float())
    pool.append(torch.zeros(5, 3, 1, 2, 2))
    assert len(pool) == 5 * 10


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_winn_pool_grows_by_negatives_per_class_times_classes(tmp_path, tiny_data):
    config = TrainConfig(method="winn", **TINY)
    train(config, tiny_data, tmp_path, progress=False)
    rows = read_rows(tmp_path / "metrics.csv")
    sizes = [int(r["pool_size"]) for r in rows]
    assert sizes == [4 * 4 + 4 * 4, 4 * 4 + 2 * 4 * 4]
    assert (tmp_path / "negatives" / "epoch_002.png").is_file()
    records = read_checkpoint(tmp_path / "last.pt")["pool_files"]
    assert [r["file"] for r in records] == ["pool/epoch_000.pt", "pool/epoch_001.pt", "pool/epoch_002.pt"]
    assert load_pool(tmp_path, records, torch.device("cpu")).images.shape == (4, 12, 1, 8, 8)


def test_training_batches_pair_positives_with_same_label_negatives(tmp_path, tiny_data, monkeypatch):
    seen = []
    from winn_robust.training.methods import introspective

    original = introspective.winn_loss

    def spy(model, pos, neg, labels, *args, **kwargs):
        seen.append((labels.clone(), neg.clone()))
        return original(model, pos, neg, labels, *args, **kwargs)

    monkeypatch.setattr(introspective, "winn_loss", spy)
    config = TrainConfig(method="winn", **{**TINY, "epochs": 1})
    trainer = trainer_module.Trainer(config, tiny_data, tmp_path, torch.device("cpu"), progress=False)
    # mark every pool entry with its class so a negative's class can be read off its pixels
    trainer.pool = NegativePool(torch.arange(4, dtype=torch.float32).view(4, 1, 1, 1, 1).expand(4, 5, 1, 8, 8).clone())
    trainer.classification_pass()
    assert seen
    for labels, negatives in seen:
        assert torch.equal(negatives[:, 0, 0, 0], labels.float())


def test_baseline_never_synthesizes(tmp_path, tiny_data, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("baseline must not synthesize")

    monkeypatch.setattr(trainer_module, "synthesize_negatives", forbidden)
    monkeypatch.setattr(trainer_module.NegativePool, "from_generator", forbidden)
    train(TrainConfig(method="baseline", **TINY), tiny_data, tmp_path, progress=False)
    rows = read_rows(tmp_path / "metrics.csv")
    assert [int(r["pool_size"]) for r in rows] == [0, 0]
    assert read_checkpoint(tmp_path / "last.pt")["pool_files"] == [] and not (tmp_path / "pool").exists()


def test_validation_error_alone_picks_the_best_checkpoint(tmp_path, tiny_data):
    config = TrainConfig(method="baseline", **{**TINY, "epochs": 4})
    result = train(config, tiny_data, tmp_path, progress=False)
    rows = read_rows(tmp_path / "metrics.csv")
    errors = [float(r["val_error"]) for r in rows]
    best_epoch = len(errors) - errors[::-1].index(min(errors))  # equal minima: the later epoch
    best = read_checkpoint(tmp_path / "best.pt")["metadata"]
    assert best["epoch"] == best_epoch == result.best_epoch
    model = build_model("vanilla", (1, 8, 8), 4)
    model.load_state_dict(read_checkpoint(tmp_path / "best.pt")["model"])
    assert trainer_module.error_rate(model, tiny_data.val_images, tiny_data.val_labels) == pytest.approx(best["val_error"])
    # the trainer's inputs hold no test split at all
    assert not any("test" in name for name in vars(tiny_data))


def test_killed_and_resumed_run_matches_uninterrupted_run(tmp_path, tiny_data):
    config = TrainConfig(method="winn", **TINY)
    train(config, tiny_data, tmp_path / "straight", progress=False)

    def kill_after_first_epoch(epoch, row):
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config, tiny_data, tmp_path / "resumed", progress=False, on_epoch_end=kill_after_first_epoch)
    train(config, tiny_data, tmp_path / "resumed", resume=True, progress=False)
    straight = read_checkpoint(tmp_path / "straight" / "last.pt")
    resumed = read_checkpoint(tmp_path / "resumed" / "last.pt")
    for name, tensor in straight["model"].items():
        assert torch.equal(tensor, resumed["model"][name]), name
    cpu = torch.device("cpu")
    assert torch.equal(load_pool(tmp_path / "straight", straight["pool_files"], cpu).images,
                       load_pool(tmp_path / "resumed", resumed["pool_files"], cpu).images)
    assert len(read_rows(tmp_path / "resumed" / "metrics.csv")) == 2


def test_tiny_winn_run_beats_chance(tmp_path, tiny_data):
    config = TrainConfig(method="winn", **{**TINY, "epochs": 3})
    result = train(config, tiny_data, tmp_path, progress=False)
    assert result.best_val_error < 0.5  # chance is 0.75 with 4 classes


def test_divergence_names_epoch_step_and_term(tmp_path, tiny_data):
    config = TrainConfig(method="winn", **{**TINY, "lr": 1e30, "epochs": 3})
    with pytest.raises(TrainingDiverged, match=r"epoch \d+, step \d+: .*="):
        train(config, tiny_data, tmp_path, progress=False)
