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
from winn_robust.reporting.provenance import ModelRecord, Provenance
from winn_robust.training.cost import TrainingCost

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
    assert CheckpointMeta.from_dict({**OLD_META, "select_by": None, "cost": None}).select_by == "clean"  # null: the default


@pytest.mark.parametrize(("key", "value", "said"), [("image_shape", 5, "a list of integers"), ("num_classes", "ten", "an integer"),
                                                    ("hparams", [1], "an object of named values"), ("seed", 1.5, "an integer or null")])
def test_checkpoint_metadata_of_the_wrong_type_is_one_line_naming_file_and_field(tmp_path, key, value, said, capsys):
    path = tmp_path / "m.pt"
    save_checkpoint(path, build_model("vanilla", (1, 8, 8), 10), CheckpointMeta.from_dict(OLD_META))
    payload = torch.load(path, weights_only=True)
    payload["metadata"][key] = value
    torch.save(payload, path)
    assert main(["attack", "--baseline", str(path), "--eps", "0.1", "--limit", "5", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"{path}: checkpoint metadata field {key} holds" in err and f"not {said};" in err


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


OLD_PROVENANCE = {"dataset": "digits", "n": 20, "seed": 3, "attack": "fgsm", "table_eps": 0.125, "baseline": "base",
                  "models": {"base": {"source": "b.pt", "kind": "checkpoint", "select_by": "pgd", "best_epoch": 2,
                                      "training_cost": {"epochs": 2, "train_seconds": 1.5, "forward_passes": 10,
                                                        "backward_passes": 8}}},
                  "a_key_from_the_future": [1]}


def test_provenance_reads_older_shapes_and_hand_edited_files():
    old = Provenance.from_dict(OLD_PROVENANCE)
    # before `evaluation` was recorded, `seed` was the training seed; before L2 every report was L-inf
    assert old.report_seed == 3 and old.threat_norm == "linf" and old.shown_metric == "error"
    assert old.model("base").select_by == "pgd" and old.model("base").training_cost == TrainingCost(2, 1.5, 10, 8)
    assert Provenance.from_dict({"models": {"m": {"training_cost": {"epochs": 2}}}}).model("m").training_cost is None
    assert old.model("absent") == ModelRecord() and old.extra == {"a_key_from_the_future": [1]}
    newer = Provenance.from_dict({**OLD_PROVENANCE, "evaluation": {"attacks": []}, "training_seed": 7})
    assert newer.report_seed == 7
    assert Provenance.from_dict({**OLD_PROVENANCE, "evaluation": {"attacks": []}}).report_seed is None
    odd = Provenance.from_dict({"models": ["not", "a", "mapping"], "eps": "0.1", "n": "many", "table_eps": True})
    assert odd.models == {} and odd.eps == () and odd.n is None and odd.table_eps is None
    assert Provenance.from_dict(None) == Provenance() == Provenance.from_dict([1, 2])


def test_a_report_writes_the_typed_provenance_and_reads_it_back_unchanged(tmp_path):
    """results.json's provenance is Provenance.to_dict(): reading it back gives the same object,
    key for key and in the same order, for a checkpoint with a training cost and an external model."""
    import json

    from winn_robust.training import TrainConfig, train
    from winn_robust.training.inputs import load_train_data

    data = load_train_data("digits", None, False, 40, 0, 100, torch.device("cpu"))
    config = TrainConfig(method="baseline", arch="vanilla", data="digits", epochs=1, batch_size=20, val_size=40)
    best = train(config, data, tmp_path / "run", progress=False).best_checkpoint
    (tmp_path / "zoo.py").write_text("import torch\n\ndef build():\n    torch.manual_seed(0)\n"
                                     "    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))\n")
    assert main(["attack", "--baseline", str(best), "--model", f"lin={tmp_path / 'zoo.py'}:build", "--eps", "1/8",
                 "--limit", "20", "--no-progress", "--device", "cpu", "--out", str(tmp_path / "r")]) == 0
    written = json.loads((tmp_path / "r" / "results.json").read_text())["provenance"]
    provenance = Provenance.from_dict(written)
    assert provenance.to_dict() == written and list(provenance.to_dict()) == list(written)
    base, lin = provenance.model("baseline"), provenance.model("lin")
    assert base.kind == "checkpoint" and base.method == "baseline" and base.training_cost is not None
    assert base.metadata is not None and base.metadata["arch"] == "vanilla" and base.sha256 and len(base.sha256) == 64
    assert lin.method == "external" and lin.checkpoint and lin.convention and lin.training_cost is None
    assert provenance.baseline == "baseline" and provenance.eps == (0.125,) and provenance.threat_norm == "linf"
    assert provenance.wall_time_s is not None and provenance.attack_time_s is not None and provenance.extra == {}


def test_indicator_records_read_back_and_older_ones_lacking_fields_still_read():
    from winn_robust.evaluation.indicators import Indicator

    record = Indicator("zero-gradients", "Zero gradients", "m", None, "fgsm", 0.5, 0.1, "WARN", "look", "3 of 6")
    assert Indicator.from_dict(record.to_dict()) == record
    older = Indicator.from_dict({k: v for k, v in record.to_dict().items() if k not in ("detail", "title")})
    assert older.detail == "" and older.title == "" and older.status == "WARN" and older.value == 0.5


def test_advice_names_settings_by_field_in_the_library_and_by_flag_on_the_command_line(tmp_path, capsys):
    from winn_robust.errors import UserError
    from winn_robust.model_sources import parse_normalisation

    with pytest.raises(UserError) as caught:
        parse_normalisation("0.5", None)
    assert "give `input_mean` and `input_std` together" in str(caught.value) and "--" not in str(caught.value)
    assert cli_message(caught.value).startswith("give --input-mean and --input-std together")
    with pytest.raises(SettingError, match=r"^options given for attack\(s\) fgsm that are not run; add them to `attacks`$") \
            as unused:
        EvalSpec.build((0.1,), ["pgd"], options={"fgsm": {"seed": 1}})
    assert cli_message(unused.value) == "--attack-option given for attack(s) fgsm that are not run; add them to --attack"
    # a training method's eps is --train-eps on the command line; the evaluation's is --eps
    method = SettingError("eps", "must be in [0, 1] pixel units, got 2.0", method_setting=True)
    assert cli_message(method).startswith("--train-eps must") and str(method).startswith("eps must")
    assert main(["attack", "--data", "digits", "--baseline", "b.pt", "--eps", "abc", "--out", str(tmp_path / "r")]) == 2
    assert "error: --eps 'abc' is not a number" in capsys.readouterr().err
