"""The records that cross layers: the library names settings by field and only the CLI speaks
flags; checkpoint metadata is a typed record that round-trips old and new files; the aggregate
package's parts are one pipeline."""
from __future__ import annotations

import pytest
import torch

from winn_robust.checkpoint import CheckpointMeta, read_meta, save_checkpoint
from winn_robust.cli import cli_message, main
from winn_robust.distributed import ReportedError
from winn_robust.errors import SettingError
from winn_robust.evaluation.spec import EvalSpec
from winn_robust.models import build_model

OLD_META = {"arch": "vanilla", "dataset": "digits", "image_shape": [1, 8, 8], "num_classes": 10, "method": "baseline",
            "epoch": 3, "best_val_error": 0.25, "a_key_from_the_future": {"x": 1}}


def test_the_library_names_the_field_and_the_cli_the_flag(tmp_path, capsys):
    with pytest.raises(SettingError, match=r"^batch_size must be positive, got 0$") as caught:
        EvalSpec(eps=(0.1,), batch_size=0)
    assert cli_message(caught.value) == "--batch-size must be positive, got 0"
    # another rank's report of the same error keeps the field, after the rank prefix too
    agreed = ReportedError("rank 1 of 2: batch_size must be positive, got 0", "batch_size")
    assert cli_message(agreed, str(agreed)) == "rank 1 of 2: --batch-size must be positive, got 0"
    assert main(["attack", "--data", "digits", "--baseline", "b.pt", "--eps", "0.1", "--batch-size", "0",
                 "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "--batch-size must be positive" in err and "batch_size" not in err


def test_checkpoint_meta_reads_old_files_and_keeps_unknown_keys(tmp_path):
    meta = CheckpointMeta.from_dict(OLD_META)
    assert meta.image_shape == (1, 8, 8) and meta.epoch == 3 and meta.reported_val_error == 0.25
    assert meta.select_by == "clean" and meta.role is None and meta.data_signature == ("digits", (1, 8, 8), 10)
    assert meta.extra == {"a_key_from_the_future": {"x": 1}}
    written = meta.to_dict()
    assert written["a_key_from_the_future"] == {"x": 1} and "role" not in written and written["image_shape"] == [1, 8, 8]
    assert CheckpointMeta.from_dict(written) == meta
    save_checkpoint(tmp_path / "m.pt", build_model("vanilla", (1, 8, 8), 10), meta)
    assert read_meta(tmp_path / "m.pt") == meta
    with pytest.raises(Exception, match="lacks arch"):
        CheckpointMeta.from_dict({k: v for k, v in OLD_META.items() if k != "arch"})


def test_a_trained_run_writes_the_typed_record(tmp_path):
    from winn_robust.training import TrainConfig, train
    from winn_robust.training.inputs import load_train_data

    data = load_train_data("digits", None, False, 40, 0, 100, torch.device("cpu"))
    config = TrainConfig(method="baseline", arch="vanilla", data="digits", epochs=1, batch_size=20, val_size=40)
    result = train(config, data, tmp_path / "run", progress=False)
    best, last = read_meta(result.best_checkpoint), read_meta(tmp_path / "run" / "last.pt")
    assert (best.role, last.role) == ("best", "last") and best.best_epoch == last.epoch == 1
    assert TrainConfig.from_dict(last.hparams) == config and last.extra == {}
    assert last.data_fingerprint is not None and last.data_fingerprint["train_size"] == 100


def test_the_aggregate_package_keeps_its_public_names():
    import winn_robust.reporting.aggregate as aggregate
    from winn_robust.reporting.aggregate import figures, rendering, seed_reports, statistics, verdicts

    assert aggregate.write_aggregate and aggregate.aggregate_seeds is statistics.aggregate_seeds
    assert aggregate.verdict is verdicts.verdict and aggregate.read_seed_report is seed_reports.read_seed_report
    assert aggregate.aggregate_markdown is rendering.aggregate_markdown and aggregate.plot_aggregate is figures.plot_aggregate
