"""Nothing lost, nothing mixed, nothing run (issue 18): one writer per folder (two real
processes), --force deleting only our files, no writing through symbolic links, damaged files
refused or recomputed (real byte flips), and children of reproduce dying with it."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import pytest
import torch

from tests.helpers import one_line_error as one_line
from winn_robust import locking
from winn_robust.checkpoint import read_checkpoint, save_checkpoint
from winn_robust.cli import main
from winn_robust.errors import UserError
from winn_robust.evaluation import EvalSpec
from winn_robust.experiments.evaluate import evaluate_models
from winn_robust.models import build_model
from winn_robust.reporting.report_folder import STATE_DIR, ReportFolder
from winn_robust.storage import atomic_write_text, leftovers
from winn_robust.training.run_folder import MARKER, RunFolder

SHAPE = (1, 8, 8)
HOLD = textwrap.dedent("""
    import sys, time
    from winn_robust import locking
    lock = locking.acquire(sys.argv[1], sys.argv[2])
    print("ready", flush=True)
    time.sleep(60)
""")


def checkpoint(path: Path, seed: int = 0, method: str = "baseline") -> Path:
    torch.manual_seed(seed)
    model = build_model("vanilla", SHAPE, 10)
    save_checkpoint(path, model, {"arch": "vanilla", "dataset": "digits", "image_shape": list(SHAPE),
                                  "num_classes": 10, "method": method, "epoch": 1, "seed": 0, "val_error": 0.5})
    return path


def holding_process(folder: Path, role: str) -> subprocess.Popen[str]:
    """Another real process that holds `folder`'s lock until killed."""
    child = subprocess.Popen([sys.executable, "-c", HOLD, str(folder), role], stdout=subprocess.PIPE, text=True,
                             env=dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1])))
    assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    return child



def flip_byte_inside(path: Path, member_suffix: str = "") -> None:
    """Flip one bit in the middle of the largest (or the named) stored member of a torch zip archive."""
    with zipfile.ZipFile(path) as archive:
        infos = [i for i in archive.infolist() if i.filename.endswith(member_suffix)] if member_suffix else archive.infolist()
        info = max(infos, key=lambda i: i.file_size)
    with open(path, "r+b") as handle:
        handle.seek(info.header_offset + 26)
        name_len, extra_len = (int.from_bytes(handle.read(2), "little") for _ in range(2))
        offset = info.header_offset + 30 + name_len + extra_len + info.file_size // 2
        handle.seek(offset)
        byte = handle.read(1)[0]
        handle.seek(offset)
        handle.write(bytes([byte ^ 0x04]))


# ----------------------------------------------------------------------------- locks
def test_a_second_writer_is_refused_naming_the_holder_and_a_dead_holder_is_taken_over(tmp_path):
    folder = tmp_path / "R"
    child = holding_process(folder, locking.REPORT)
    try:
        with pytest.raises(UserError) as err:
            locking.acquire(folder, locking.REPORT)
        assert f"pid {child.pid}" in str(err.value) and str(folder) in str(err.value)
        assert len(str(err.value).splitlines()) == 1
        with locking.acquire(folder, locking.RUN):  # another role's lock in the same folder is independent
            pass
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert locking.holder(folder, locking.REPORT)["pid"] == child.pid  # the dead process's lock file is still there
    with locking.acquire(folder, locking.REPORT) as lock:  # ... and taken over
        assert locking.holder(folder, locking.REPORT)["pid"] == os.getpid()
        with locking.acquire(folder, locking.REPORT):  # re-entrant within one process
            pass
        assert lock.path.is_file()
    assert not (folder / locking.lock_name(locking.REPORT)).exists()


def test_attack_and_train_into_a_locked_folder_exit_2_with_one_line(tmp_path, capsys):
    base = checkpoint(tmp_path / "base.pt")
    out = tmp_path / "R"
    child = holding_process(out, locking.REPORT)
    try:
        one_line(capsys, ["attack", "--baseline", str(base), "--attack", "fgsm", "--eps", "0.1", "--limit", "10",
                          "--out", str(out), "--force", "--no-progress"], f"pid {child.pid}", "being written")
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    run = tmp_path / "run"
    child = holding_process(run, locking.RUN)
    try:
        one_line(capsys, ["train", "--data", "digits", "--epochs", "1", "--out", str(run), "--no-progress"],
                 f"pid {child.pid}")
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()


def test_children_of_reproduce_die_with_it(tmp_path):
    """A parent killed with SIGKILL takes its job processes with it (PR_SET_DEATHSIG)."""
    if not sys.platform.startswith("linux"):
        pytest.skip("parent-death signal is Linux only")
    pid_file = tmp_path / "child.pid"
    parent = textwrap.dedent(f"""
        import subprocess, sys, time
        from winn_robust.experiments.jobs import dies_with_parent
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], **dies_with_parent())
        open({str(pid_file)!r}, "w").write(str(child.pid))
        time.sleep(60)
    """)
    process = subprocess.Popen([sys.executable, "-c", parent], env=dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1])))
    for _ in range(200):
        if pid_file.is_file() and pid_file.read_text():
            break
        time.sleep(0.05)
    child_pid = int(pid_file.read_text())
    process.send_signal(signal.SIGKILL)
    process.wait()
    for _ in range(200):  # the kernel delivers SIGTERM to the orphan; wait until it is gone
        try:
            os.kill(child_pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        os.kill(child_pid, signal.SIGKILL)
        pytest.fail("the job process outlived its killed parent")


# ----------------------------------------------------------------------------- run folders
def test_run_folder_recognises_only_our_files_and_force_refuses_foreign_ones(tmp_path, capsys):
    run = tmp_path / "H"
    (run / "pool").mkdir(parents=True)
    (run / "negatives").mkdir()
    (run / "pool" / "thesis.tex").write_text("my thesis")
    (run / "negatives" / "film.txt").write_text("a film")
    assert not RunFolder(run).holds_run()
    err = one_line(capsys, ["train", "--data", "digits", "--epochs", "1", "--out", str(run), "--force", "--no-progress"],
                   "thesis.tex", "film.txt", "not winn-robust's")
    assert "already holds" not in err
    assert (run / "pool" / "thesis.tex").read_text() == "my thesis" and (run / "negatives" / "film.txt").is_file()

    folder = RunFolder(tmp_path / "ours")
    checkpoint(folder.last)
    checkpoint(folder.pool_file(0))
    folder.negatives_file(1).parent.mkdir()
    folder.negatives_file(1).write_bytes(b"png")
    (folder.root / "notes.txt").write_text("mine")
    atomic_write_text(folder.marker, "marker")
    assert folder.holds_run() and folder.in_the_way() == []
    folder.clear()
    assert sorted(p.name for p in folder.root.iterdir()) == ["notes.txt"]  # the user's file stays


def test_force_clears_a_generative_runs_cascade_checkpoints(tmp_path):
    folder = RunFolder(tmp_path / "gen")
    folder.root.mkdir()
    for name in ("last.pt", "cascade-1.pt", "cascade-2.pt", "cascade-12.pt", ".cascade-3.pt.abcd1234.tmp",
                 "cascade-best.pt"):
        (folder.root / name).write_bytes(b"x")
    assert folder.holds_run()
    folder.clear()
    assert sorted(p.name for p in folder.root.iterdir()) == ["cascade-best.pt"]  # not a name train writes


def test_links_are_never_written_or_deleted_through(tmp_path, capsys):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.pt").write_text("keep")
    run = tmp_path / "run"
    run.mkdir()
    (run / "pool").symlink_to(outside)
    one_line(capsys, ["train", "--data", "digits", "--epochs", "1", "--out", str(run), "--force", "--no-progress"],
             "pool", "symbolic link")
    assert (outside / "precious.pt").read_text() == "keep"

    base = checkpoint(tmp_path / "base.pt")
    report = tmp_path / "report"
    report.mkdir()
    target = outside / "per_example.csv"
    target.write_text("not yours")
    (report / "per_example.csv").symlink_to(target)
    one_line(capsys, ["attack", "--baseline", str(base), "--attack", "fgsm", "--eps", "0.1", "--limit", "10",
                      "--out", str(report), "--force", "--no-progress"], "per_example.csv", "symbolic link")
    assert target.read_text() == "not yours"
    (report / "per_example.csv").unlink()
    (report / STATE_DIR).symlink_to(outside)
    one_line(capsys, ["attack", "--baseline", str(base), "--attack", "fgsm", "--eps", "0.1", "--limit", "10",
                      "--out", str(report), "--resume", "--no-progress"], STATE_DIR, "symbolic link")
    assert (outside / "precious.pt").read_text() == "keep"


def test_attack_force_deletes_only_our_report_files(tmp_path):
    base = checkpoint(tmp_path / "base.pt")
    out = tmp_path / "R"
    spec = EvalSpec(eps=(0.1,), limit=10)
    evaluate_models([str(base)], spec, out, progress=False, plots=True)
    (out / "error_vs_eps_mine.png").write_bytes(b"the user's plot")
    (out / "error_vs_eps_pgd.png").write_bytes(b"ours")  # a name our aggregate writes
    evaluate_models([str(base)], spec, out, progress=False, plots=False, force=True)
    assert (out / "error_vs_eps_mine.png").read_bytes() == b"the user's plot"
    assert not (out / "error_vs_eps_pgd.png").exists() and not (out / "error_vs_eps.png").exists()
    (out / STATE_DIR).mkdir()
    (out / STATE_DIR / "draft.txt").write_text("mine")
    with pytest.raises(UserError, match=r"draft\.txt"):
        evaluate_models([str(base)], spec, out, progress=False, plots=False, force=True)
    assert (out / STATE_DIR / "draft.txt").is_file() and (out / "results.json").is_file()


def test_leftovers_of_killed_writes_are_removed_on_the_next_start(tmp_path):
    folder = RunFolder(tmp_path / "run")
    folder.root.mkdir()
    (folder.root / ".last.pt.abcd1234.tmp").write_bytes(b"half")
    (folder.root / ".thesis.tex.abcd1234.tmp").write_bytes(b"not ours")
    folder.pool_dir.mkdir()
    (folder.pool_dir / ".epoch_003.pt.zz_9xy00.tmp").write_bytes(b"half")
    lock = folder.open_for_writing()
    lock.release()
    names = sorted(p.name for p in folder.root.rglob("*"))
    assert names == sorted([".thesis.tex.abcd1234.tmp", MARKER, "pool"]), names
    assert leftovers(folder.root) == [folder.root / ".thesis.tex.abcd1234.tmp"]


# ----------------------------------------------------------------------------- damaged files
def test_a_flipped_bit_in_a_checkpoint_is_one_line(tmp_path, capsys):
    path = checkpoint(tmp_path / "last.pt")
    flip_byte_inside(path)
    with pytest.raises(UserError, match="damaged") as err:
        read_checkpoint(path)
    assert str(path) in str(err.value)
    one_line(capsys, ["attack", "--baseline", str(path), "--attack", "fgsm", "--eps", "0.1", "--limit", "10",
                      "--out", str(tmp_path / "R"), "--no-progress"], "damaged", "last.pt")


def test_a_damaged_evaluation_state_item_is_recomputed_and_a_damaged_identity_is_one_line(tmp_path, capsys):
    base, other = checkpoint(tmp_path / "base.pt"), checkpoint(tmp_path / "other.pt", seed=1, method="winn")
    spec = EvalSpec(eps=(0.1,), limit=20, batch_size=10)
    whole = evaluate_models([str(base), str(other)], spec, tmp_path / "whole", progress=False, plots=False)
    out = tmp_path / "R"
    # a killed run's state: what an interrupted evaluation leaves
    from winn_robust.evaluation.harness import cross_evaluate

    calls = []

    def stop_after_two(key: str) -> None:
        calls.append(key)
        if len(calls) == 2:
            raise KeyboardInterrupt

    import winn_robust.experiments.evaluate as evaluate_module

    original = evaluate_module.cross_evaluate
    evaluate_module.cross_evaluate = lambda *a, **k: cross_evaluate(*a, **{**k, "on_item": stop_after_two})
    try:
        with pytest.raises(KeyboardInterrupt):
            evaluate_models([str(base), str(other)], spec, out, progress=False, plots=False)
    finally:
        evaluate_module.cross_evaluate = original
    items = sorted((out / STATE_DIR).glob("run*.pt"))
    assert items
    flip_byte_inside(items[0], "data.pkl")
    resumed = evaluate_models([str(base), str(other)], spec, out, progress=False, plots=False, resume=True)
    assert capsys.readouterr().err.count("is damaged; recomputing") == 1
    assert (out / "per_example.csv").read_text() == (tmp_path / "whole" / "per_example.csv").read_text()
    assert resumed.metrics.to_dict() == whole.metrics.to_dict()

    with pytest.raises(KeyboardInterrupt):
        evaluate_module.cross_evaluate = lambda *a, **k: cross_evaluate(*a, **{**k, "on_item": stop_after_two})
        calls.clear()
        try:
            evaluate_models([str(base), str(other)], spec, out, progress=False, plots=False, force=True)
        finally:
            evaluate_module.cross_evaluate = original
    identity = out / STATE_DIR / "identity.json"
    identity.write_text(identity.read_text()[:-7])
    with pytest.raises(UserError, match=r"identity\.json is damaged"):
        evaluate_models([str(base), str(other)], spec, out, progress=False, plots=False, resume=True)
    assert ReportFolder(out).has_state()


# ----------------------------------------------------------------------------- CIFAR-10 batches run no code
class _Payload:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def test_a_cifar_batch_with_a_reduce_payload_runs_nothing(tmp_path, capsys):
    import pickle

    import numpy as np

    from winn_robust.data import load_dataset

    rng = np.random.default_rng(0)
    for protocol, name in zip((2, 2, 4, 5, 5, 2), [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        with open(tmp_path / name, "wb") as handle:  # protocol 2 as the original Python 2 files, newer ones too
            pickle.dump({"batch_label": name, "data": rng.integers(0, 256, (2, 3072), dtype=np.uint8),
                         "labels": [0, 1], "filenames": ["a.png", "b.png"]}, handle, protocol=protocol)
    with open(tmp_path / "batches.meta", "wb") as handle:
        pickle.dump({"label_names": [f"c{k}" for k in range(10)], "num_cases_per_batch": 2}, handle, protocol=2)
    assert len(load_dataset("cifar10", data_dir=tmp_path).train_images) > 0  # real (generated) batches still load
    ran = tmp_path / "payload-ran"
    with open(tmp_path / "data_batch_3", "wb") as handle:
        pickle.dump({"data": _Payload(ran), "labels": [0]}, handle, protocol=2)
    with pytest.raises(UserError) as err:
        load_dataset("cifar10", data_dir=tmp_path)
    assert not ran.exists()
    message = str(err.value)
    assert len(message.splitlines()) == 1 and "data_batch_3" in message and "system" in message
    capsys.readouterr()
    one_line(capsys, ["train", "--data", "cifar10", "--data-dir", str(tmp_path), "--epochs", "1", "--out",
                      str(tmp_path / "run"), "--no-progress"], "refused without running")
    assert not ran.exists()


# ----------------------------------------------------------------------------- metrics.csv comes from last.pt
TINY_RUN = dict(arch="vanilla", data="digits", epochs=2, batch_size=20, val_size=40)
# wall times, and bytes_written: last.pt records the run's training seconds as floats whose
# printed length varies, so its size differs by a few bytes between two runs of the same work
TIMING = ("seconds_classification", "seconds_synthesis", "seconds_validation", "seconds_total", "negatives_per_second",
          "bytes_written")


def _rows(path: Path) -> list[dict[str, str]]:
    import csv

    with open(path, newline="") as handle:
        return [{k: v for k, v in row.items() if k not in TIMING} for row in csv.DictReader(handle)]


@pytest.mark.parametrize("damage", ["kill before metrics.csv", "deleted", "garbled"])
def test_metrics_csv_is_rewritten_from_last_pt(tmp_path, tiny_data, damage):
    from winn_robust.training import TrainConfig, train

    config = TrainConfig(method="baseline", **TINY_RUN)
    train(TrainConfig(method="baseline", **{**TINY_RUN, "epochs": 3}), tiny_data, tmp_path / "straight", progress=False)
    run = tmp_path / "run"
    train(config, tiny_data, run, progress=False)
    metrics = run / "metrics.csv"
    if damage == "kill before metrics.csv":  # last.pt of epoch 2 written, metrics.csv still of epoch 1
        lines = metrics.read_text().splitlines(keepends=True)
        metrics.write_text("".join(lines[:2]))
    elif damage == "deleted":
        metrics.unlink()
    else:
        metrics.write_bytes(b"\x00\xffepoch,,\nnot,a,number\n")
    train(TrainConfig(method="baseline", **{**TINY_RUN, "epochs": 3}), tiny_data, run, resume=True, progress=False)
    assert [r["epoch"] for r in _rows(metrics)] == ["1", "2", "3"]
    assert _rows(metrics) == _rows(tmp_path / "straight" / "metrics.csv")


def test_a_flipped_bit_in_last_pt_refuses_resume(tmp_path, tiny_data, capsys):
    from winn_robust.training import TrainConfig, train

    run = tmp_path / "run"
    train(TrainConfig(method="baseline", **TINY_RUN), tiny_data, run, progress=False)
    flip_byte_inside(run / "last.pt")  # the largest member: a weight or an optimizer moment
    one_line(capsys, ["train", "--data", "digits", "--resume", "--epochs", "3", "--out", str(run), "--no-progress"],
             "last.pt", "damaged")


# ----------------------------------------------------------------------------- non-finite settings
@pytest.mark.parametrize("argv, expected", [
    (["train", "--data", "digits", "--lr", "nan"], "--lr"),
    (["train", "--data", "digits", "--lr", "inf"], "--lr"),
    (["train", "--data", "digits", "--alpha", "nan"], "--alpha"),
    (["train", "--data", "digits", "--synthesis-tolerance=-inf"], "--synthesis-tolerance"),
    (["reproduce", "--preset", "quick", "--lr", "nan"], "--lr"),
    (["attack", "--baseline", "b.pt", "--attack", "pgd", "--eps", "0.1", "--attack-option", "pgd.step_size=nan"],
     "pgd.step_size"),
    (["attack", "--baseline", "b.pt", "--attack", "pgd", "--eps", "0.1", "--attack-option", "pgd.step_size=inf"],
     "pgd.step_size"),
])
def test_non_finite_settings_are_refused_at_parse_time(tmp_path, capsys, argv, expected):
    out = tmp_path / "out"
    one_line(capsys, [*argv, "--out", str(out)], expected, "finite")
    assert not out.exists()


# ----------------------------------------------------------------------------- report checks per_example.csv
@pytest.fixture(scope="module")
def finished_report(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("report")
    base, other = checkpoint(root / "base.pt"), checkpoint(root / "other.pt", seed=1, method="winn")
    evaluate_models([str(base), str(other)], EvalSpec(eps=(0.1,), limit=30, batch_size=10), root / "R",
                    progress=False, plots=False)
    return root / "R"


def _cut_lines(text: str) -> str:
    return "\n".join(text.splitlines()[:11]) + "\n"


def _empty_label(text: str) -> str:
    lines = text.splitlines()
    cells = lines[3].split(",")
    cells[1] = ""
    lines[3] = ",".join(cells)
    return "\n".join(lines) + "\n"


def _cut_row(text: str) -> str:
    return text[: text.rindex("\n", 0, len(text) - 1) + 4]


def _drop_column(text: str) -> str:
    frame = __import__("pandas").read_csv(__import__("io").StringIO(text))
    return frame.drop(columns=[c for c in frame.columns if c.startswith("adv[")][:1]).to_csv(index=False)


@pytest.mark.parametrize("damage", [_cut_lines, _empty_label, _cut_row, _drop_column,
                                    lambda text: "\x00\x01\xff" * 50])
def test_report_refuses_a_damaged_per_example_csv(tmp_path, finished_report, capsys, damage):
    import shutil

    folder = tmp_path / "R"
    shutil.copytree(finished_report, folder)
    csv_path = folder / "per_example.csv"
    csv_path.write_text(damage(csv_path.read_text()))
    table = (folder / "table.md").read_text()
    one_line(capsys, ["report", str(folder)], "per_example.csv")
    assert (folder / "table.md").read_text() == table


# ----------------------------------------------------------------------------- broken user models
BROKEN_MODELS = textwrap.dedent("""
    import torch
    from torch import nn

    class Broken(nn.Module):
        def __init__(self, kind):
            super().__init__()
            torch.manual_seed(0)
            self.net, self.kind, self.calls = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), kind, 0

        def forward(self, x):
            self.calls += 1
            # calls 1-31: the load check and the input-convention and gradient probes; then FGSM makes
            # a gradient and a forward call per batch, so call 34 is the gradient call of images 10-19
            if self.kind == "raises" and self.calls == 34:
                raise RuntimeError("the 34th call breaks")
            if self.kind == "detaches":
                return self.net(x.detach())
            out = self.net(x)
            if self.kind == "integer":
                return (out * 10).round().long()
            if self.kind == "nan_on_adversarial" and self.calls > 3:
                return out * float("nan")
            return out

    def raises():
        return Broken("raises")

    def detaches():
        return Broken("detaches")

    def integer():
        return Broken("integer")

    def nan_on_adversarial():
        return Broken("nan_on_adversarial")
""")


@pytest.mark.parametrize("function, expected", [
    ("raises", ("RuntimeError: the 34th call breaks", "fgsm at eps 0.1", "test images 10-19")),
    ("integer", ("int64 logits",)),
    ("nan_on_adversarial", ("NaN or Inf logits",)),
])
def test_a_broken_user_model_is_one_line_naming_model_attack_and_batch(tmp_path, capsys, function, expected):
    source = tmp_path / "broken.py"
    source.write_text(BROKEN_MODELS)
    one_line(capsys, ["attack", "--data", "digits", "--baseline", f"{source}:{function}", "--attack", "fgsm", "--eps",
                      "0.1", "--limit", "20", "--batch-size", "10", "--out", str(tmp_path / "R"), "--no-progress"],
             f"{source}:{function}", *expected)
    assert not (tmp_path / "R" / "results.json").exists()


def test_a_model_that_detaches_its_input_is_a_zero_gradient_warning(tmp_path, capsys):
    import json

    source = tmp_path / "broken.py"
    source.write_text(BROKEN_MODELS)
    out = tmp_path / "R"
    assert main(["attack", "--data", "digits", "--baseline", f"{source}:detaches", "--attack", "fgsm,pgd", "--eps",
                 "0.1", "--limit", "20", "--batch-size", "10", "--out", str(out), "--no-progress"]) == 0
    assert "zero input gradients" in capsys.readouterr().out
    document = json.loads((out / "results.json").read_text())
    assert any(i["status"] == "WARN" for i in document["indicators"])
    assert document["unchanged_images"][0]["counts"]["broken"] == 20  # FGSM moved no image: zero gradient everywhere
