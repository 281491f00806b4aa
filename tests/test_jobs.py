"""Jobs as JSON specs (`run-job SPEC`) and the launchers over them: local, submitit-local, slurm."""
from __future__ import annotations

import json

import pytest

from winn_robust.cli import main
from winn_robust.errors import UserError
from winn_robust.evaluation.spec import EvalSpec
from winn_robust.experiments.job_spec import EvaluateJob, Runtime, TrainJob, read_spec, write_spec
from winn_robust.experiments.jobs import Job
from winn_robust.experiments.launchers import LaunchSettings, _executor, parse_slurm_options, run_submitit
from winn_robust.training import TrainConfig

TINY = ["--epochs", "1", "--train-limit", "200", "--negatives-per-class", "3", "--synthesis-max-steps", "5",
        "--test-limit", "60", "--attack", "fgsm", "--no-progress", "--device", "cpu"]


def strong_spec() -> EvalSpec:
    return EvalSpec.build((0.125, 0.25), ["fgsm", "pgd"], options={"pgd": {"steps": "7", "random_start": "false"}},
                          seed=3, batch_size=64, limit=90, attack_limits={"pgd": 30}, attack_eps={"pgd": (0.125,)})


def test_an_evaluation_survives_its_json_round_trip():
    spec = strong_spec()
    again = EvalSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again.describe() == spec.describe() and again.to_dict() == spec.to_dict()
    assert [a.settings() for a in again.attacks][1] == {"attack": "pgd", "seed": 3, "steps": 7, "step_size": 0.0,
                                                       "restarts": 3, "random_start": False}
    with pytest.raises(UserError, match="version 99"):
        EvalSpec.from_dict({**spec.to_dict(), "version": 99})
    with pytest.raises(UserError, match="unknown attack"):
        EvalSpec.from_dict({**spec.to_dict(), "attacks": [{"attack": "nope", "seed": 0}]})


def test_job_specs_round_trip_through_their_folder(tmp_path):
    train = TrainJob(TrainConfig(method="baseline", data="digits", epochs=2), tmp_path / "models" / "baseline",
                     tmp_path / "data")
    evaluate = EvaluateJob(strong_spec(), (tmp_path / "a.pt", tmp_path / "b.pt"), tmp_path, command="winn-robust x")
    runtime = Runtime(device="cpu", threads=2)
    for work in (train, evaluate):
        path = write_spec(tmp_path / "jobs" / work.kind, f"{work.kind} job", work, runtime)
        name, read, how = read_spec(path)
        assert (name, read.to_dict(), how) == (f"{work.kind} job", work.to_dict(), runtime)
    assert train.state() == "fresh" and evaluate.state() == "fresh"


@pytest.mark.parametrize("content, message", [
    (None, "no job spec at"), ("{", "is not JSON"), ('{"version": 7}', "version 7"),
    ('{"version": 1, "kind": "bake"}', "job kind 'bake'"),
    ('{"version": 1, "kind": "train", "work": {}}', "not a complete train job spec"),
])
def test_a_bad_spec_is_one_line(tmp_path, capsys, content, message):
    path = tmp_path / "spec.json"
    if content is not None:
        path.write_text(content)
    assert main(["run-job", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err


def test_a_failed_submitit_job_is_named_with_its_log(tmp_path, capsys):
    """A real job process (submitit's local executor) that stops with a UserError."""
    work = TrainJob(TrainConfig(method="baseline", data="mnist", epochs=1), tmp_path / "run", tmp_path / "no-data")
    folder = tmp_path / "jobs" / "train-baseline-seed0"
    write_spec(folder, "train baseline seed 0", work, Runtime(device="cpu", threads=1))
    with pytest.raises(UserError) as caught:
        run_submitit([Job("train baseline seed 0", folder)], LaunchSettings("submitit-local", slurm_time=5), poll=0.2)
    message = str(caught.value)
    assert message.startswith("job train baseline seed 0 failed (exit status 2) in ") and "no-data" in message, message
    assert "last lines of" in capsys.readouterr().err
    assert (folder / "log.txt").is_file() and list((folder / "submitit").glob("*_log.err"))


def test_slurm_parameters_reach_the_sbatch_script(tmp_path, monkeypatch):
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "srun").write_text("#!/bin/sh\nexec \"$@\"\n")
    (fake / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:/usr/bin:/bin")
    launch = LaunchSettings("slurm", slurm_partition="gpu", slurm_gpus_per_job=2, slurm_cpus_per_job=8, slurm_time=90,
                            slurm_options=parse_slurm_options(["account=proj", "qos=high"]))
    job = Job("train winn seed 0", tmp_path / "jobs" / "train-winn-seed0", threads=4)
    script = _executor(job, launch)._executor._make_submission_file_text("CMD", "UID")
    for line in ("--partition=gpu", "--gpus-per-node=2", "--cpus-per-task=8", "--time=90", "--account=proj",
                 "--qos=high", "--job-name=train-winn-seed0", f"--output={job.folder}/submitit/%j_0_log.out"):
        assert f"#SBATCH {line}\n" in script, line


@pytest.mark.parametrize("extra, message", [
    (["--launcher", "slurm"], "--launcher slurm needs SLURM's sbatch"),
    (["--launcher", "slurm", "--nproc-per-node", "2", "--slurm-gpus-per-job", "1"], "give --slurm-gpus-per-job 2"),
    (["--launcher", "submitit-local", "--slurm-time", "0"], "--slurm-time must be at least 1"),
    (["--slurm-option", "account"], "must look like KEY=VALUE"),
])
def test_launcher_mistakes_are_one_line(tmp_path, capsys, monkeypatch, extra, message):
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))  # no sbatch, whatever this machine has installed
    assert main(["reproduce", *extra, "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "r").exists()


def test_submitit_local_writes_the_same_tables_as_local(tmp_path):
    """The same reduced reproduce through both launchers, into the same folder (table.csv names
    the checkpoints by path): byte-identical tables; submitit-local's job folders hold the spec,
    the log and submitit's files."""
    out = tmp_path / "run"
    assert main(["reproduce", *TINY, "--threads", "1", "--out", str(out)]) == 0
    local = {name: (out / name).read_bytes() for name in ("table.md", "table.csv", "per_example.csv")}
    out.rename(tmp_path / "local")
    assert main(["reproduce", *TINY, "--launcher", "submitit-local", "--jobs", "2", "--threads", "2",
                 "--out", str(out)]) == 0
    for name, data in local.items():
        assert (out / name).read_bytes() == data, name
    for job in ("train-baseline-seed0", "train-winn-seed0", "evaluate-seed0"):
        folder = out / "jobs" / job
        assert (folder / "spec.json").is_file() and (folder / "log.txt").stat().st_size > 0, job
        assert list((folder / "submitit").glob("*_result.pkl")), job
    assert "report written to" in (out / "jobs" / "evaluate-seed0" / "log.txt").read_text()
