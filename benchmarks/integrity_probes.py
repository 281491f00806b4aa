"""Issue 18's faults, corruptions, bad inputs and security probes, run for real against a code tree.

    python benchmarks/integrity_probes.py CODE_TREE WORK_DIR [PROBE ...]

CODE_TREE is put on PYTHONPATH (this worktree, or `git archive` of an older commit, to compare);
WORK_DIR gets the tiny digits models the probes use (trained once) and one folder per probe.
A probe PASSES when the behaviour is what the issue asks for; one table row per probe, and
WORK_DIR/results.json. About 4 minutes of one CPU core."""
from __future__ import annotations

import csv
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

TREE = Path(sys.argv[1])
WORK = Path(sys.argv[2])
ONLY = sys.argv[3:]  # probe names to run (default all)
PY = "/work/main/.venv/bin/python"
ENV = dict(os.environ, PYTHONPATH=str(TREE), OMP_NUM_THREADS="1", MPLBACKEND="Agg")
SETUP = WORK / "setup"
BASE, WINN, BROKEN = str(SETUP / "base"), str(SETUP / "winn"), SETUP / "broken.py"
ATTACK = ["attack", "--baseline", BASE, "--model", WINN, "--attack", "fgsm", "--eps", "0.1", "--limit", "20",
          "--batch-size", "10", "--no-progress"]
TRAIN = ["train", "--data", "digits", "--method", "baseline", "--epochs", "1", "--train-limit", "300", "--val-size", "50",
         "--no-progress"]


PGD = [*ATTACK[:6], "pgd", *ATTACK[7:]]


def train_epochs(n):
    return [*TRAIN[:6], str(n), *TRAIN[7:]]


def run(args, **kw):
    p = subprocess.run([PY, "-m", "winn_robust", *args], env=ENV, capture_output=True, text=True, **kw)
    return p.returncode, p.stderr


def one_line_2(code, err):
    """Exit status 2, no traceback, exactly one error line."""
    errors = [line for line in err.strip().splitlines() if line.startswith("winn-robust") and ": error:" in line]
    return code == 2 and "Traceback" not in err and len(errors) == 1


def fresh(name):
    d = WORK / name
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    return d


def flip(path, member_suffix=""):
    with zipfile.ZipFile(path) as archive:
        infos = [i for i in archive.infolist() if i.filename.endswith(member_suffix)] if member_suffix else archive.infolist()
        info = max(infos, key=lambda i: i.file_size)
    with open(path, "r+b") as h:
        h.seek(info.header_offset + 26)
        n, e = (int.from_bytes(h.read(2), "little") for _ in range(2))
        off = info.header_offset + 30 + n + e + info.file_size // 2
        h.seek(off)
        b = h.read(1)[0]
        h.seek(off)
        h.write(bytes([b ^ 0x04]))


PROBES = {}


def probe(group):
    def wrap(fn):
        PROBES[fn.__name__] = (group, fn)
        return fn
    return wrap


# ---------------------------------------------------------------- concurrency
@probe("concurrency")
def two_attacks_one_out():
    d = fresh("c1") / "R"
    a = subprocess.Popen([PY, "-m", "winn_robust", *PGD, "--limit", "60", "--seed", "1",
                          "--out", str(d)], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(5)
    code_b, _err_b = run([*PGD, "--limit", "60", "--seed", "2", "--force", "--out", str(d)])
    a.wait()
    return code_b == 2 and a.returncode == 0, f"second exit {code_b}, first exit {a.returncode}"


@probe("concurrency")
def two_trainings_one_out():
    d = fresh("c2") / "run"
    a = subprocess.Popen([PY, "-m", "winn_robust", *train_epochs(40), "--out", str(d)], env=ENV,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(4)
    code_b, _err_b = run([*TRAIN, "--seed", "1", "--force", "--out", str(d)])
    a.wait()
    return code_b == 2 and a.returncode == 0, f"second exit {code_b}, first exit {a.returncode}"


@probe("concurrency")
def stale_lock_taken_over():
    d = fresh("c3") / "R"
    script = ("import sys,time\ntry:\n from winn_robust import locking; h=locking.acquire(sys.argv[1],'report')\n"
              "except ImportError: pass\nprint('ready',flush=True); time.sleep(60)")
    holder = subprocess.Popen([PY, "-c", script, str(d)],
                              env=ENV, stdout=subprocess.PIPE, text=True)
    holder.stdout.readline()
    holder.kill()
    holder.wait()
    code, _err = run([*ATTACK, "--out", str(d)])
    return code == 0, f"exit {code} after its holder was killed"


@probe("concurrency")
def reproduce_kill9_children():
    d = fresh("c4") / "Q"
    p = subprocess.Popen([PY, "-m", "winn_robust", "reproduce", "--preset", "quick", "--data", "digits", "--epochs", "30",
                          "--methods", "baseline,winn", "--train-limit", "300", "--test-limit", "20", "--out", str(d),
                          "--no-progress", "--jobs", "2"], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kids = []
    for _ in range(100):
        time.sleep(0.2)
        out = subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True, text=True).stdout.split()
        if len(out) >= 1:
            kids = [int(k) for k in out]
            time.sleep(2)
            kids = [int(k) for k in subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True, text=True).stdout.split()]
            break
    p.send_signal(signal.SIGKILL)
    p.wait()
    time.sleep(2)
    alive = [k for k in kids if subprocess.run(["kill", "-0", str(k)], capture_output=True).returncode == 0]
    for k in alive:
        os.kill(k, signal.SIGKILL)
    return bool(kids) and not alive, f"{len(kids)} children, {len(alive)} alive 2 s after kill -9 of reproduce"


# ---------------------------------------------------------------- --force, symlinks
@probe("force/links")
def foreign_files_not_a_run():
    d = fresh("f1") / "H"
    (d / "pool").mkdir(parents=True)
    (d / "negatives").mkdir()
    (d / "pool" / "thesis.tex").write_text("t")
    (d / "negatives" / "film.txt").write_text("f")
    _code, err = run([*TRAIN, "--out", str(d)])
    return "already holds a training run" not in err and (d / "pool" / "thesis.tex").exists(), err.strip().splitlines()[-1][:90]


@probe("force/links")
def train_force_keeps_foreign_files():
    d = fresh("f2") / "H"
    (d / "pool").mkdir(parents=True)
    (d / "negatives").mkdir()
    (d / "pool" / "thesis.tex").write_text("t")
    (d / "negatives" / "film.txt").write_text("f")
    code, _err = run([*TRAIN, "--force", "--out", str(d)])
    return (d / "pool" / "thesis.tex").exists() and (d / "negatives" / "film.txt").exists(), f"exit {code}"


@probe("force/links")
def attack_force_keeps_users_plot():
    d = fresh("f3") / "R"
    run([*ATTACK, "--out", str(d)])
    (d / "error_vs_eps_mine.png").write_bytes(b"mine")
    code, _err = run([*ATTACK, "--force", "--out", str(d)])
    return (d / "error_vs_eps_mine.png").exists() and code == 0, f"exit {code}"


@probe("force/links")
def attack_force_keeps_foreign_state_file():
    d = fresh("f4") / "R"
    run([*ATTACK, "--out", str(d)])
    (d / ".evaluation-state").mkdir()
    (d / ".evaluation-state" / "draft.txt").write_text("x")
    code, _err = run([*ATTACK, "--force", "--out", str(d)])
    return (d / ".evaluation-state" / "draft.txt").exists(), f"exit {code}"


@probe("force/links")
def per_example_link_not_written_through():
    d = fresh("f5")
    (d / "R").mkdir()
    target = d / "outside.csv"
    target.write_text("keep")
    (d / "R" / "per_example.csv").symlink_to(target)
    code, err = run([*ATTACK, "--force", "--out", str(d / "R")])
    return target.read_text() == "keep" and one_line_2(code, err), f"exit {code}"


@probe("force/links")
def pool_link_one_line():
    d = fresh("f6")
    (d / "out").mkdir()
    (d / "run").mkdir()
    (d / "run" / "pool").symlink_to(d / "out")
    code, err = run(["train", "--data", "digits", "--method", "winn", "--epochs", "1", "--train-limit", "200",
                     "--val-size", "50", "--synthesis-max-steps", "5", "--negatives-per-class", "2",
                     "--initial-negatives-per-class", "2", "--no-progress", "--force", "--out", str(d / "run")])
    through = len(list((d / "out").iterdir()))
    return one_line_2(code, err) and not through, f"exit {code}, {through} files written through"


@probe("force/links")
def state_link_one_line():
    d = fresh("f7")
    (d / "out").mkdir()
    (d / "R").mkdir()
    (d / "R" / ".evaluation-state").symlink_to(d / "out")
    code, err = run([*ATTACK, "--resume", "--out", str(d / "R")])
    return one_line_2(code, err), f"exit {code}, traceback {'Traceback' in err}"


# ---------------------------------------------------------------- code execution
class Payload:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


@probe("security")
def cifar_reduce_payload():
    d = fresh("s1")
    import numpy as np
    for name in [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]:
        with open(d / name, "wb") as h:
            pickle.dump({"data": np.zeros((2, 3072), np.uint8), "labels": [0, 1]}, h, protocol=2)
    with open(d / "data_batch_2", "wb") as h:
        pickle.dump({"data": Payload(d / "RAN"), "labels": [0]}, h, protocol=2)
    code, err = run([*TRAIN[:2], "cifar10", *TRAIN[3:], "--data-dir", str(d), "--out", str(d / "run")])
    return not (d / "RAN").exists() and one_line_2(code, err), f"payload ran: {(d / 'RAN').exists()}, exit {code}"


# ---------------------------------------------------------------- corruption
def trained_run(name, epochs=2):
    d = fresh(name) / "run"
    run([*train_epochs(epochs), "--out", str(d)])
    return d


@probe("corruption")
def last_pt_flip_resume():
    d = trained_run("k1")
    flip(d / "last.pt")
    code, err = run([*train_epochs(3), "--resume", "--out", str(d)])
    return one_line_2(code, err), f"exit {code}"


@probe("corruption")
def best_pt_flip_attack():
    d = trained_run("k2")
    flip(d / "best.pt")
    code, err = run(["attack", "--baseline", str(d), "--eps", "0.1", "--limit", "20", "--out", str(d.parent / "R"), "--no-progress"])
    return one_line_2(code, err), f"exit {code}"


def killed_attack(d):
    """An attack killed after a few items: its evaluation state stays."""
    p = subprocess.Popen([PY, "-m", "winn_robust", *PGD, "--limit", "60", "--out", str(d)],
                         env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = d / ".evaluation-state"
    for _ in range(300):
        time.sleep(0.1)
        if state.is_dir() and len(list(state.glob("run*.pt"))) >= 2:
            break
    p.kill()
    p.wait()


@probe("corruption")
def state_item_flip_recomputed():
    ref = fresh("k3ref") / "R"
    run([*PGD, "--limit", "60", "--out", str(ref)])
    d = fresh("k3") / "R"
    killed_attack(d)
    items = sorted((d / ".evaluation-state").glob("run*.pt"))
    flip(items[0], "data.pkl")
    code, _err = run([*PGD, "--limit", "60", "--resume", "--out", str(d)])
    same = (d / "per_example.csv").is_file() and (d / "per_example.csv").read_text() == (ref / "per_example.csv").read_text()
    return code == 0 and same, f"exit {code}, per_example.csv identical: {same}"


@probe("corruption")
def identity_truncated_resume():
    d = fresh("k4") / "R"
    killed_attack(d)
    ident = d / ".evaluation-state" / "identity.json"
    ident.write_text(ident.read_text()[:-9])
    code, err = run([*PGD, "--limit", "60", "--resume", "--out", str(d)])
    return one_line_2(code, err), f"exit {code}"


@probe("corruption")
def pool_file_flip_resume():
    d = fresh("k5") / "run"
    run(["train", "--data", "digits", "--method", "winn", "--epochs", "1", "--train-limit", "200", "--val-size", "50",
         "--synthesis-max-steps", "5", "--negatives-per-class", "2", "--initial-negatives-per-class", "2",
         "--no-progress", "--out", str(d)])
    flip(d / "pool" / "epoch_001.pt")
    code, err = run(["train", "--data", "digits", "--epochs", "2", "--resume", "--out", str(d), "--no-progress"])
    return one_line_2(code, err), f"exit {code}"


def metric_epochs(path):
    try:
        with open(path, newline="") as h:
            return [r["epoch"] for r in csv.DictReader(h)]
    except Exception as exc:
        return [type(exc).__name__]


@probe("metrics.csv")
def metrics_kill_between_last_and_csv():
    d = trained_run("m1", 2)
    lines = (d / "metrics.csv").read_text().splitlines(keepends=True)
    (d / "metrics.csv").write_text("".join(lines[:2]))
    code, _err = run([*train_epochs(3), "--resume", "--out", str(d)])
    return metric_epochs(d / "metrics.csv") == ["1", "2", "3"], f"exit {code}, epochs {metric_epochs(d / 'metrics.csv')}"


@probe("metrics.csv")
def metrics_deleted():
    d = trained_run("m2", 2)
    (d / "metrics.csv").unlink()
    code, _err = run([*train_epochs(3), "--resume", "--out", str(d)])
    return metric_epochs(d / "metrics.csv") == ["1", "2", "3"], f"exit {code}, epochs {metric_epochs(d / 'metrics.csv')}"


@probe("metrics.csv")
def metrics_binary():
    d = trained_run("m3", 2)
    (d / "metrics.csv").write_bytes(b"\x00\xff\x01" * 40)
    code, err = run([*train_epochs(3), "--resume", "--out", str(d)])
    return code == 0 and metric_epochs(d / "metrics.csv") == ["1", "2", "3"], f"exit {code}, traceback {'Traceback' in err}"


@probe("metrics.csv")
def metrics_renamed_header():
    d = trained_run("m4", 2)
    text = (d / "metrics.csv").read_text()
    (d / "metrics.csv").write_text(text.replace("epoch,", "EPOCH,", 1))
    code, err = run([*train_epochs(3), "--resume", "--out", str(d)])
    return code == 0 and metric_epochs(d / "metrics.csv") == ["1", "2", "3"], f"exit {code}, traceback {'Traceback' in err}"


# ---------------------------------------------------------------- report
REPORT_DIR = None


def finished(name):
    global REPORT_DIR
    if REPORT_DIR is None:
        REPORT_DIR = fresh("rep0") / "R"
        run([*ATTACK[:13], "--limit", "120", "--out", str(REPORT_DIR)])
    d = fresh(name) / "R"
    shutil.copytree(REPORT_DIR, d)
    return d


def report_probe(name, damage):
    d = finished(name)
    p = d / "per_example.csv"
    p.write_text(damage(p.read_text()))
    code, err = run(["report", str(d)])
    return one_line_2(code, err), f"exit {code}, traceback {'Traceback' in err}"


@probe("report")
def report_40_of_121_lines():
    return report_probe("r1", lambda t: "\n".join(t.splitlines()[:40]) + "\n")


@probe("report")
def report_empty_label_cell():
    def damage(t):
        lines = t.splitlines()
        cells = lines[5].split(",")
        cells[1] = ""
        lines[5] = ",".join(cells)
        return "\n".join(lines) + "\n"
    return report_probe("r2", damage)


@probe("report")
def report_cut_row():
    return report_probe("r3", lambda t: t[: t.rindex("\n", 0, len(t) - 1) + 3])


@probe("report")
def report_dropped_column():
    import io

    import pandas as pd

    def damage(t):
        f = pd.read_csv(io.StringIO(t))
        return f.drop(columns=[c for c in f.columns if c.startswith("adv[")][:1]).to_csv(index=False)
    return report_probe("r4", damage)


# ---------------------------------------------------------------- atomic writes
@probe("atomic writes")
def leftover_tmp_removed():
    d = fresh("a1") / "R"
    run([*ATTACK, "--out", str(d)])
    (d / ".table.md.abcd1234.tmp").write_text("half")
    run([*ATTACK, "--force", "--out", str(d)])
    return not (d / ".table.md.abcd1234.tmp").exists(), "leftover " + ("kept" if (d / ".table.md.abcd1234.tmp").exists() else "removed")


@probe("atomic writes")
def identity_written_atomically():
    src = (TREE / "winn_robust" / "experiments" / "evaluate.py").read_text()
    ok = "identity_path.write_text" not in src
    return ok, "atomic_write_text" if ok else "Path.write_text"


# ---------------------------------------------------------------- broken models
def model_probe(function, want_exit):
    d = fresh("b_" + function)
    env_call = dict(FAIL_AT_CALL="4")
    p = subprocess.run([PY, "-m", "winn_robust", "attack", "--data", "digits", "--baseline",
                        f"{BROKEN}:{function}", "--attack", "fgsm,pgd", "--eps", "0.1", "--limit", "20",
                        "--batch-size", "10", "--out", str(d / "R"), "--no-progress"],
                       env={**ENV, **env_call}, capture_output=True, text=True)
    if want_exit == 2:
        return one_line_2(p.returncode, p.stderr), f"exit {p.returncode}, traceback {'Traceback' in p.stderr}"
    warned = "warning" in p.stdout
    return p.returncode == 0 and warned, f"exit {p.returncode}, WARN {warned}, traceback {'Traceback' in p.stderr}"


@probe("broken models")
def model_raises_on_4th_call():
    return model_probe("fails_on_fourth_call", 2)


@probe("broken models")
def model_detaches_input():
    return model_probe("detaches", 0)


@probe("broken models")
def model_integer_logits():
    return model_probe("integer_logits", 2)


@probe("broken models")
def model_nan_logits():
    return model_probe("nan_logits", 2)


@probe("broken models")
def model_inf_logits():
    return model_probe("inf_logits", 2)


# ---------------------------------------------------------------- non-finite settings
def setting_probe(args):
    d = fresh("n")
    code, err = run([*args, "--out", str(d / "x")])
    return one_line_2(code, err) and not (d / "x").exists(), f"exit {code}, traceback {'Traceback' in err}"


@probe("non-finite settings")
def pgd_step_size_nan():
    return setting_probe([*PGD, "--attack-option", "pgd.step_size=nan"])


@probe("non-finite settings")
def pgd_step_size_inf():
    return setting_probe([*PGD, "--attack-option", "pgd.step_size=inf"])


@probe("non-finite settings")
def train_lr_nan():
    return setting_probe([*TRAIN, "--lr", "nan"])


@probe("non-finite settings")
def train_lr_inf():
    return setting_probe([*TRAIN, "--lr", "inf"])


@probe("non-finite settings")
def train_alpha_nan():
    return setting_probe([*TRAIN[:4], "winn", *TRAIN[5:], "--alpha", "nan"])


@probe("non-finite settings")
def reproduce_lr_nan():
    return setting_probe(["reproduce", "--preset", "quick", "--lr", "nan"])


BROKEN_MODELS = '''
import torch
from torch import nn

CALL = int(__import__("os").environ.get("FAIL_AT_CALL", "4"))


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10))


class FailsOnFourthCall(nn.Module):
    def __init__(self):
        super().__init__()
        self.net, self.calls = _net(), 0

    def forward(self, x):
        self.calls += 1
        if self.calls == CALL:
            raise RuntimeError("the fourth call breaks")
        return self.net(x)


class Detaches(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = _net()

    def forward(self, x):
        return self.net(x.detach())


class IntegerLogits(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = _net()

    def forward(self, x):
        return (self.net(x) * 10).round().long()


class NaNLogits(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = _net()

    def forward(self, x):
        return self.net(x) * float("nan")


class InfLogits(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = _net()

    def forward(self, x):
        out = self.net(x)
        return torch.where(out > 0, torch.full_like(out, float("inf")), out)


def fails_on_fourth_call():
    return FailsOnFourthCall()


def detaches():
    return Detaches()


def integer_logits():
    return IntegerLogits()


def nan_logits():
    return NaNLogits()


def inf_logits():
    return InfLogits()
'''


def setup() -> None:
    """Two tiny digits models (a baseline and a WINN) and a file of broken user models."""
    SETUP.mkdir(parents=True, exist_ok=True)
    BROKEN.write_text(BROKEN_MODELS)
    if not (SETUP / "base" / "best.pt").is_file():
        run(["train", "--data", "digits", "--method", "baseline", "--epochs", "2", "--out", BASE, "--force", "--no-progress"])
    if not (SETUP / "winn" / "best.pt").is_file():
        run(["train", "--data", "digits", "--method", "winn", "--epochs", "1", "--synthesis-max-steps", "20",
             "--negatives-per-class", "10", "--initial-negatives-per-class", "10", "--out", WINN, "--force",
             "--no-progress"])


if __name__ == "__main__":
    WORK.mkdir(parents=True, exist_ok=True)
    setup()
    results = []
    for name, (group, fn) in PROBES.items():
        if ONLY and name not in ONLY:
            continue
        try:
            ok, detail = fn()
        except Exception as exc:  # a probe that cannot even run counts as a failure
            ok, detail = False, f"probe error {type(exc).__name__}: {exc}"
        results.append({"group": group, "probe": name, "pass": bool(ok), "detail": detail})
        print(f"{group:20s} {name:40s} {'PASS' if ok else 'FAIL'}  {detail}", flush=True)
    (WORK / "results.json").write_text(json.dumps(results, indent=1))
