"""Faithfulness to the WINN paper and its official code: the random generator, the paper
presets' split, the pre-activation ResNet, small official details, a synthesis that goes
non-finite, resume safety, and a pool that writes only what each epoch adds."""
from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from winn_robust.checkpoint import read_checkpoint
from winn_robust.cli import main
from winn_robust.data import ImageDataset
from winn_robust.experiments.reproduce import resolve_settings
from winn_robust.models import build_model
from winn_robust.models.base import Classifier
from winn_robust.models.generator import RandomGenerator, stage_sizes
from winn_robust.models.layers import LAYER_NORM_EPS
from winn_robust.models.resnet import PreActBlock
from winn_robust.training import TrainConfig, TrainingDiverged, train
from winn_robust.training import trainer as trainer_module
from winn_robust.training.divergence import SynthesisDiverged
from winn_robust.training.inputs import make_train_data
from winn_robust.training.pool import load_pool
from winn_robust.training.synthesis import generator_for, synthesize

TINY = dict(arch="vanilla", data="digits", epochs=2, batch_size=20, negatives_per_class=4,
            initial_negatives_per_class=4, synthesis_max_steps=30, val_size=40)


# ----------------------------------------------------------------------------- 1. generator
def per_pixel_std(init: str, shape=(1, 28, 28)) -> float:
    generator = generator_for(TrainConfig(seed=0, generator_init=init), shape, torch.device("cpu"))
    images = generator.sample(100, torch.Generator().manual_seed(0))
    return images.std(dim=0).mean().item()


def test_official_generator_parameters_match_the_official_initialisation():
    torch.manual_seed(0)
    generator = RandomGenerator((1, 28, 28), init="official")
    bound = 0.1 * math.sqrt(3)
    for layer in [generator.project, *generator.convs]:
        weight = layer.weight
        assert weight.abs().max() <= bound and weight.std().item() == pytest.approx(0.1, rel=0.05)
        assert torch.count_nonzero(layer.bias) == 0
    for norm in generator.norms:
        assert torch.equal(norm.weight, torch.ones_like(norm.weight))
        assert torch.count_nonzero(norm.bias) == 0
    assert not any(p.requires_grad for p in generator.parameters())


def test_official_starts_are_diverse_and_legacy_starts_nearly_identical():
    official, legacy = per_pixel_std("official"), per_pixel_std("legacy")
    assert official > 0.6, official   # about 0.9
    assert legacy < 0.15, legacy      # about 0.09: nearly the same image every time
    legacy_gen = RandomGenerator((1, 28, 28), init="legacy")
    gains = torch.cat([n.weight for n in legacy_gen.norms])
    assert gains.abs().mean() < 0.2  # gains drawn from N(0, 0.1^2), not 1


def test_generator_resize_sizes_follow_the_official_code():
    assert stage_sizes(28) == [8, 16, 28, 28]
    assert stage_sizes(32) == [8, 16, 32, 32]
    assert stage_sizes(8) == [8, 8, 8, 8]
    sizes = []
    generator = RandomGenerator((1, 28, 28))
    for conv in generator.convs:
        conv.register_forward_hook(lambda m, i, o: sizes.append(o.shape[-1]))
    generator.sample(2)
    assert sizes == [4, 8, 16, 28]  # each conv sees the previous resize's output


# ----------------------------------------------------------------------------- 2. paper split
@pytest.mark.parametrize("preset", ["paper-mnist", "paper-mnist-resnet32"])
def test_paper_presets_train_on_45000_and_validate_on_5000(preset):
    settings = resolve_settings(preset, {})
    assert (settings.train.train_limit, settings.train.val_size) == (45000, 5000)
    n = 60000  # MNIST's training set, as tiny images
    fake = ImageDataset("mnist", torch.zeros(n, 1, 2, 2), torch.arange(n) % 10, torch.zeros(10, 1, 2, 2),
                        torch.arange(10), tuple(str(i) for i in range(10)))
    data = make_train_data(fake, settings.train.val_size, 0, settings.train.train_limit, torch.device("cpu"))
    assert (len(data.train_images), len(data.val_images)) == (45000, 5000)


# ----------------------------------------------------------------------------- 3. ResNet layout
def test_resnet_blocks_are_pre_activation_with_a_final_norm():
    torch.manual_seed(0)
    model = build_model("resnet32", (1, 16, 16), 10).eval()
    blocks = [m for m in model.modules() if isinstance(m, PreActBlock)]
    assert len(blocks) == 15
    assert blocks[0].norm0 is None and all(b.norm0 is not None for b in blocks[1:])
    block, x = blocks[5], torch.randn(2, 16, 16, 16)  # the first block of stage 2: stride 2, 16 -> 32
    h = F.silu(block.norm1(block.conv1(F.silu(block.norm0(x)))))
    shortcut = F.pad(F.avg_pool2d(x, 2), (0, 0, 0, 0, 8, 8))  # zero channels half before, half after
    torch.testing.assert_close(block(x), block.conv2(h) + shortcut)  # no activation after the sum
    order = []
    for name, module in model.named_modules():
        if isinstance(module, (torch.nn.GroupNorm, torch.nn.Conv2d, torch.nn.Linear)):
            module.register_forward_hook(lambda m, i, o, name=name: order.append(name))
    model(torch.randn(1, 1, 16, 16))
    assert order[-3:] == ["stages.14.conv2", "final_norm", "classifier"]


def test_small_official_details():
    model = build_model("vanilla", (1, 28, 28), 10)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert norms and all(n.eps == LAYER_NORM_EPS == 1e-12 for n in norms)
    torch.manual_seed(0)
    critic = torch.cat([build_model("vanilla", (1, 8, 8), 10).critic.weight for _ in range(20)])
    assert critic.std().item() == pytest.approx(0.02, rel=0.15)
    assert torch.count_nonzero(build_model("vanilla", (1, 8, 8), 10).critic.bias) == 0


# ----------------------------------------------------------------------------- 5. NaN synthesis
class NaNAfter(Classifier):
    """A linear classifier whose outputs turn NaN after `after` forward passes."""

    def __init__(self, after: int):
        super().__init__((1, 4, 4), 3)
        self.linear, self.after, self.calls = torch.nn.Linear(16, 3), after, 0

    def forward(self, x):
        self.calls += 1
        logits = self.linear(x.flatten(1))
        return logits * float("nan") if self.calls > self.after else logits


def test_nonfinite_synthesis_is_an_error_not_convergence():
    model = NaNAfter(after=4)
    start = torch.rand(3, 2, 1, 4, 4) * 2 - 1
    with pytest.raises(SynthesisDiverged) as err:
        synthesize(model, start, torch.arange(3), torch.full((3,), 5.0), max_steps=100, check_every=10)
    assert err.value.step == 4 and sorted(err.value.classes) == [0, 1, 2]


def test_nonfinite_synthesis_stops_training_naming_epoch_and_step(tmp_path, tiny_data, monkeypatch):
    real, calls = trainer_module.synthesize_negatives, []

    def diverge_in_epoch_two(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise SynthesisDiverged(7, [2])
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer_module, "synthesize_negatives", diverge_in_epoch_two)
    with pytest.raises(TrainingDiverged, match=r"epoch 2, synthesis step 7: .*class\(es\) 2 = nan"):
        train(TrainConfig(method="winn", **{**TINY, "epochs": 3}), tiny_data, tmp_path, progress=False)
    assert read_checkpoint(tmp_path / "last.pt")["metadata"]["epoch"] == 1  # the last good checkpoint stays


# ----------------------------------------------------------------------------- 6. resume safety
TINY_TRAIN = ["--arch", "vanilla", "--data", "digits", "--train-limit", "200", "--val-size", "100",
              "--negatives-per-class", "3", "--initial-negatives-per-class", "3", "--synthesis-max-steps", "10",
              "--no-progress", "--device", "cpu"]


def test_resume_refuses_an_explicitly_changed_setting_and_restores_the_rest(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert main(["train", "--method", "winn", *TINY_TRAIN, "--epochs", "1", "--seed", "3", "--out", out]) == 0
    for flag, value in (("--seed", "4"), ("--val-size", "50"), ("--lr", "0.01"), ("--negatives-per-class", "9")):
        capsys.readouterr()
        assert main(["train", "--resume", "--epochs", "2", flag, value, "--out", out]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and flag in err and "cannot resume" in err, err
    # only --epochs given: every other setting comes back from the run itself
    assert main(["train", "--resume", "--epochs", "2", "--no-progress", "--out", out]) == 0
    hparams = read_checkpoint(tmp_path / "run" / "last.pt")["metadata"]["hparams"]
    assert (hparams["seed"], hparams["negatives_per_class"], hparams["synthesis_max_steps"]) == (3, 3, 10)
    assert list(pd.read_csv(tmp_path / "run" / "metrics.csv")["pool_size"]) == [60, 90]


def test_resume_refuses_other_training_data(tmp_path, tiny_data):
    config = TrainConfig(method="baseline", **{**TINY, "epochs": 1})
    train(config, tiny_data, tmp_path, progress=False)
    other = type(tiny_data)(tiny_data.train_images.flip(0), tiny_data.train_labels.flip(0), tiny_data.val_images,
                            tiny_data.val_labels, tiny_data.dataset, tiny_data.class_names)
    with pytest.raises(Exception, match="training data differs"):
        train(TrainConfig(method="baseline", **{**TINY, "epochs": 2}), other, tmp_path, resume=True, progress=False)


# ----------------------------------------------------------------------------- 7. pool files
def test_bytes_written_per_epoch_do_not_grow_with_the_pool(tmp_path, tiny_data):
    config = TrainConfig(method="winn", **{**TINY, "epochs": 5})
    sizes: dict[int, int] = {}
    train(config, tiny_data, tmp_path, progress=False,
          on_epoch_end=lambda epoch, row: sizes.setdefault(epoch, (tmp_path / "last.pt").stat().st_size))
    rows = pd.read_csv(tmp_path / "metrics.csv")
    assert list(rows["pool_size"]) == [16 * (e + 1) for e in range(1, 6)]  # the pool grows ...
    parts = sorted((tmp_path / "pool").glob("epoch_*.pt"))
    assert [p.name for p in parts] == [f"epoch_{e:03d}.pt" for e in range(6)]
    assert len({p.stat().st_size for p in parts[1:]}) == 1  # ... but each epoch's pool file is the same size
    # ... and last.pt no longer holds the pool: it grows only by its metrics row (under 2 KB an epoch)
    growth = [b - a for a, b in zip(list(sizes.values()), list(sizes.values())[1:])]
    assert max(growth) < 2048
    best_sizes = (tmp_path / "best.pt").stat().st_size
    improved = rows["val_error"] <= rows["val_error"].cummin().shift(fill_value=float("inf"))  # ties: the later epoch
    without_best = (rows["bytes_written"] - improved * best_sizes).iloc[1:]
    assert without_best.diff().dropna().abs().max() < 2048


def test_a_kill_in_the_middle_of_saving_resumes_exactly(tmp_path, tiny_data, monkeypatch):
    config = TrainConfig(method="winn", **{**TINY, "epochs": 3})
    train(config, tiny_data, tmp_path / "straight", progress=False)
    real = trainer_module.save_checkpoint

    def killed_while_writing_last(path, *args, **kwargs):
        if path.name == "last.pt" and args[1].epoch == 2:
            raise KeyboardInterrupt  # the pool file of epoch 2 is on disk, last.pt still says epoch 1
        return real(path, *args, **kwargs)

    monkeypatch.setattr(trainer_module, "save_checkpoint", killed_while_writing_last)
    with pytest.raises(KeyboardInterrupt):
        train(config, tiny_data, tmp_path / "resumed", progress=False)
    monkeypatch.setattr(trainer_module, "save_checkpoint", real)
    assert read_checkpoint(tmp_path / "resumed" / "last.pt")["metadata"]["epoch"] == 1
    train(config, tiny_data, tmp_path / "resumed", resume=True, progress=False)
    a, b = read_checkpoint(tmp_path / "straight" / "last.pt"), read_checkpoint(tmp_path / "resumed" / "last.pt")
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    cpu = torch.device("cpu")
    assert torch.equal(load_pool(tmp_path / "straight", a["pool_files"], cpu).images,
                       load_pool(tmp_path / "resumed", b["pool_files"], cpu).images)
