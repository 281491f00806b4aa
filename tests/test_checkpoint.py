"""Checkpoints: one format, atomic writes, metadata to rebuild the model, no pickled code."""
from __future__ import annotations

import pickle

import pytest
import torch

import winn_robust
from winn_robust.checkpoint import read_checkpoint, save_checkpoint
from winn_robust.errors import UserError
from winn_robust.models import build_model

META = {"arch": "resnet20", "dataset": "digits", "image_shape": [1, 8, 8], "num_classes": 10, "method": "winn",
        "torch_version": torch.__version__}


def test_load_checkpoint_rebuilds_an_eval_model_returning_logits(tmp_path):
    torch.manual_seed(0)
    model = build_model("resnet20", (1, 8, 8), 10)
    save_checkpoint(tmp_path / "m.pt", model, META)
    loaded, meta = winn_robust.load_checkpoint(tmp_path / "m.pt")
    assert not loaded.training
    x = torch.rand(3, 1, 8, 8) * 2 - 1
    assert torch.equal(loaded(x), model.eval()(x))
    assert meta.arch == "resnet20" and meta.torch_version == str(torch.__version__) and meta.image_shape == (1, 8, 8)
    assert not list(tmp_path.glob("*.tmp"))


def test_truncated_checkpoint_is_one_clear_error(tmp_path):
    save_checkpoint(tmp_path / "m.pt", build_model("vanilla", (1, 8, 8), 10), META | {"arch": "vanilla"})
    data = (tmp_path / "m.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="unreadable"):
        read_checkpoint(tmp_path / "cut.pt")


def test_checkpoint_with_pickled_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (exec, ("raise SystemExit('pickled code ran')",))

    torch.save({"format": "winn-robust-checkpoint", "evil": Evil()}, tmp_path / "evil.pt", pickle_module=pickle)
    with pytest.raises(UserError, match="unreadable"):
        read_checkpoint(tmp_path / "evil.pt")


def test_missing_and_foreign_files_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        read_checkpoint(tmp_path / "nope.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(UserError, match="not a winn-robust checkpoint"):
        read_checkpoint(tmp_path / "other.pt")


@pytest.mark.parametrize("arch", ["vanilla", "resnet20", "resnet32", "resnet44", "resnet56"])
def test_every_architecture_gives_logits_and_critic(arch):
    model = build_model(arch, (3, 32, 32), 10)
    logits, f = model.score(torch.zeros(2, 3, 32, 32))
    assert logits.shape == (2, 10) and f.shape == (2,)


def test_resnet32_has_the_cifar_layout():
    model = build_model("resnet32", (3, 32, 32), 10)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 31  # stem + 3 stages x 5 blocks x 2 convs; shortcuts have no weights
    norms = [m for m in model.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert all(n.num_groups == 1 for n in norms)


def test_atomic_save_leaves_an_ordinary_file_and_no_temporary(tmp_path):
    """mkstemp's private 0600 mode is not kept: others on a shared machine can read a checkpoint
    as they can any file the user writes (the umask decides)."""
    import os
    import stat

    from winn_robust.checkpoint import atomic_save

    mask = os.umask(0o022)
    try:
        atomic_save({"x": 1}, tmp_path / "file.pt")
    finally:
        os.umask(mask)
    assert stat.S_IMODE((tmp_path / "file.pt").stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["file.pt"]
