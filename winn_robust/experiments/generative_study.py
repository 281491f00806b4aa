"""`winn-robust reproduce --preset generative-*`: the generative side's study in one command.

Train every generative run of the preset (WINN-single, WINN with cascades, WGAN-GP), a baseline
classifier on the same data (the documented scorer), draw N seeded samples from each run (and from
WGAN-GP's critic by the WINN procedure: the paper's Figure 3), score each against the real test
images under that classifier at the same N, and write table.md / table.csv / results.json, a grid per
run and one comparison figure. Each step is skipped when its output is already there and complete,
so a killed study resumes by running the same command again; the folder is locked while it runs."""
from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from winn_robust.checkpoint import read_meta
from winn_robust.errors import UserError
from winn_robust.locking import REPORT, acquire
from winn_robust.storage import atomic_write_text
from winn_robust.training import TrainConfig
from winn_robust.training.run_folder import LAST_NAME, METRICS_NAME

SHARED_KEYS = ("data", "arch", "seed", "train_limit", "val_size", "batch_size")


@dataclass(frozen=True)
class StudyRun:
    """One generative run of a study: a name, its method and the method's own settings."""
    name: str
    method: str
    options: Mapping[str, Any] = field(default_factory=dict)
    from_critic: bool = False     # also sample its critic by the WINN procedure (WGAN-GP: Figure 3)


@dataclass(frozen=True)
class StudySettings:
    preset: str
    out: Path
    shared: Mapping[str, Any]
    runs: tuple[StudyRun, ...]
    classifier: Mapping[str, Any] | None  # None: no scorer (CelebA has no classes to train one on)
    samples: int
    sample_seed: int
    data_dir: Path | None
    device: str
    progress: bool
    command: str
    description: str = ""


def study_settings(preset: Mapping[str, Any], name: str, out: Path, overrides: Mapping[str, Any], device: str,
                   progress: bool, command: str) -> StudySettings:
    """The preset with the command line's overrides on top (shared training keys, data folder, N)."""
    shared = {k: preset[k] for k in SHARED_KEYS if k in preset}
    shared.update({k: v for k, v in overrides.items() if k in SHARED_KEYS and v is not None})
    runs = tuple(StudyRun(r["name"], r["method"], dict(r.get("options", {})), bool(r.get("from_critic", False)))
                 for r in preset["runs"])
    data_dir = overrides.get("data_dir") or next((Path(p) for p in preset.get("data_dir_candidates", [])
                                                 if Path(p).is_dir()), None)
    samples = int(overrides.get("samples") or preset.get("samples", 500))
    if samples < 2:
        raise UserError(f"`samples` must be at least 2, got {samples}", mentions=("samples",))
    scorer = preset.get("classifier", {})
    return StudySettings(name, Path(out), shared, runs, None if scorer is None else dict(scorer), samples,
                         int(preset.get("sample_seed", 0)), None if data_dir is None else Path(data_dir), device,
                         progress, command, str(preset.get("description", "")))


def run_folder_state(folder: Path) -> str:
    """'missing', 'partial' or 'done' for a training run folder (supervised: its epochs; generative:
    the iterations its last.pt says the run has)."""
    last = folder / LAST_NAME
    if not last.is_file():
        return "missing"
    meta = read_meta(last)
    total = meta.extra.get("total_iterations") if meta.role == "last" else None
    total = int(total) if total is not None else int(meta.hparams.get("epochs", 0))
    return "done" if meta.epoch >= total else "partial"


def train_one(config: TrainConfig, folder: Path, settings: StudySettings) -> None:
    """Train into `folder`, continuing a partial run and keeping a finished one."""
    from winn_robust.experiments.training_run import run_training

    state = run_folder_state(folder)
    if state == "done":
        print(f"{folder}: already trained, kept", file=sys.stderr)
        return
    run_training(lambda: (config, settings.data_dir), folder, device=settings.device, resume=state == "partial",
                 progress=settings.progress)


def run_cost(folder: Path) -> dict[str, Any]:
    """Iterations (or epochs), training seconds and image-passes, summed over the run's metrics.csv."""
    frame = pd.read_csv(folder / METRICS_NAME)
    seconds = frame["seconds_total"] if "seconds_critic" in frame or "seconds_generator" in frame or \
        "seconds_classification" not in frame else frame["seconds_classification"] + frame["seconds_synthesis"]
    return {"iterations": len(frame), "train_seconds": float(seconds.sum()),
            "forward_passes": int(frame["forward_passes"].sum()), "backward_passes": int(frame["backward_passes"].sum())}


def sample_and_score(settings: StudySettings, run: StudyRun, from_critic: bool) -> dict[str, Any]:
    """N seeded samples of one run (its model, or its critic), their grid, and their score."""
    from winn_robust.experiments.sample_score import ScoreRequest, score_samples
    from winn_robust.training.generative.sampling import open_run, sample_images, write_samples

    folder = settings.out / "models" / run.name
    stem = run.name + ("-critic" if from_critic else "")
    npz = settings.out / "samples" / f"{stem}.npz"
    device = torch.device("cpu" if settings.device == "auto" and not torch.cuda.is_available() else
                          ("cuda" if settings.device == "auto" else settings.device))
    started = time.perf_counter()
    generative = open_run(folder)
    images = sample_images(generative, settings.samples, settings.sample_seed, device, from_critic=from_critic,
                           progress=settings.progress)
    sample_seconds = time.perf_counter() - started
    write_samples(images, npz, settings.sample_seed, str(folder), {"method": run.method, "source": stem})
    write_samples(images[:100], npz.with_suffix(".png"), settings.sample_seed, str(folder), {})
    row = {"model": run.name + (" (its critic, WINN synthesis)" if from_critic else ""), "method": run.method,
           "source": "critic" if from_critic else ("critic" if run.method == "winn-gen" else "generator"),
           "n": len(images), "score": float("nan"), "score_sd": float("nan"), "frechet_distance": float("nan"),
           "sample_seconds": sample_seconds, "samples_file": str(npz.relative_to(settings.out)), **run_cost(folder),
           "_score": None}
    if settings.classifier is not None:
        request = ScoreRequest(npz, str(settings.out / "classifier"), data=str(settings.shared.get("data")),
                               data_dir=settings.data_dir, download=False, splits=10, seed=0, device=str(device))
        score = score_samples(request)
        row.update(n=score.n, score=score.score_mean, score_sd=score.score_sd, frechet_distance=score.distance,
                   _score=score.to_dict())
    return row


def run_study(settings: StudySettings) -> Path:
    """Train, sample, score, write; returns the table's path."""
    out = settings.out
    out.mkdir(parents=True, exist_ok=True)
    lock = acquire(out, REPORT)
    try:
        started = time.perf_counter()
        if settings.classifier is not None:
            classifier = TrainConfig(method="baseline", **{**settings.shared, **settings.classifier})
            train_one(classifier, out / "classifier", settings)
        rows = []
        for run in settings.runs:
            config = TrainConfig(method=run.method, **settings.shared, method_options=dict(run.options))
            train_one(config, out / "models" / run.name, settings)
            rows.append(sample_and_score(settings, run, from_critic=False))
            if run.from_critic:
                rows.append(sample_and_score(settings, run, from_critic=True))
        return write_study(settings, rows, time.perf_counter() - started)
    finally:
        lock.release()


COLUMNS = ("model", "method", "source", "n", "score", "score_sd", "frechet_distance", "iterations", "train_seconds",
           "forward_passes", "backward_passes", "sample_seconds", "samples_file")


def write_study(settings: StudySettings, rows: list[dict[str, Any]], seconds: float) -> Path:
    out = settings.out
    scores = [row.pop("_score") for row in rows]
    reference = scores[0]
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    atomic_write_text(out / "table.csv", frame.to_csv(index=False, float_format="%.6g"))
    head = ("| model | samples from | N | score | Frechet distance to real test | training iterations | training s | "
            "image-passes (fwd + bwd) | sampling s |")
    if reference is None:
        scored = (f"No scores: {settings.shared.get('data')} has no class labels to train a scoring classifier on (the "
                  "paper shows its images only); judge samples.png. `winn-robust score --classifier` scores the "
                  "samples/*.npz files under any classifier of your own.")
    else:
        scored = (f"Scores under `{reference['classifier']}` (features: {reference['features']}): the "
                  f"{reference['score_name']} formula exp(E KL(p(y|x) || p(y))) over 10 splits, and the Frechet "
                  f"distance (FD) between Gaussians fitted to those features; every figure at N = {reference['n']}.")
    lines = [f"# Generative study: {settings.preset}", "", settings.description, "", scored, "", head, "|" + "---|" * 9]
    for row in rows:
        score = "-" if reference is None else f"{row['score']:.2f} ± {row['score_sd']:.2f}"
        distance = "-" if reference is None else f"{row['frechet_distance']:.2f}"
        lines.append(f"| {row['model']} | {row['source']} | {row['n']} | {score} | {distance} | {row['iterations']} | "
                     f"{row['train_seconds']:.0f} | {row['forward_passes'] + row['backward_passes']:,} | {row['sample_seconds']:.0f} |")
    if reference is not None:
        lines.append(f"| real {reference['dataset']} test images | - | {reference['n']} | "
                     f"{reference['real_score_mean']:.2f} ± {reference['real_score_sd']:.2f} | "
                     f"{reference['real_distance']:.2f} (real train vs test: the floor at this N) | - | - | - | - |")
    lines += ["", f"Made by `{settings.command}` in {seconds:.0f} s (steps already done are kept, not re-timed).", ""]
    atomic_write_text(out / "table.md", "\n".join(lines))
    document = {"preset": settings.preset, "command": settings.command, "samples": settings.samples,
                "sample_seed": settings.sample_seed, "shared": dict(settings.shared),
                "runs": [{"name": r.name, "method": r.method, "options": dict(r.options), "from_critic": r.from_critic}
                         for r in settings.runs], "rows": rows, "scores": scores}
    atomic_write_text(out / "results.json", json.dumps(document, indent=2, default=str) + "\n")
    write_figure(settings, rows)
    print("\n".join(lines[6:]))
    return out / "table.md"


def write_figure(settings: StudySettings, rows: list[dict[str, Any]]) -> Path:
    """Real test images beside 36 samples of every row, one panel each."""
    import numpy as np
    from matplotlib.figure import Figure
    from torchvision.utils import make_grid

    from winn_robust.data import load_dataset
    from winn_robust.storage import atomic_savefig

    real = load_dataset(str(settings.shared.get("data")), settings.data_dir).test_images[:36]
    panels = [("real test images", (real + 1) / 2)]
    for row in rows:
        with np.load(settings.out / row["samples_file"]) as saved:
            panels.append((row["model"], torch.from_numpy(saved["images"][:36])))
    fig = Figure(figsize=(2.6 * len(panels), 3.0))
    for index, (title, images) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), index + 1)
        grid = make_grid(images.float().clamp(0, 1), nrow=6, padding=1, pad_value=1.0)
        ax.imshow(grid.permute(1, 2, 0).numpy(), interpolation="nearest")
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    return atomic_savefig(fig, settings.out / "samples.png", dpi=130)
