"""`winn-robust attack`: checkpoints in, reports out. Load, check they are comparable,
cross-evaluate on the TEST split, compute Tables 2-4, and write the reports with full
provenance (which files, which data, which eps in which unit, which software, which device)."""
from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from winn_robust.attacks import get_attack
from winn_robust.checkpoint import file_sha256, load_checkpoint
from winn_robust.data import load_dataset
from winn_robust.device import resolve_device
from winn_robust.environment import device_description, software_versions
from winn_robust.errors import UserError
from winn_robust.evaluation.harness import cross_evaluate
from winn_robust.evaluation.metrics import Metrics, compute_metrics
from winn_robust.evaluation.spec import EvalSpec
from winn_robust.reporting.files import write_reports
from winn_robust.reporting.plots import plot_adversarial_examples, plot_error_vs_eps
from winn_robust.units import EPS_UNIT

SPLIT = "test"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.+()-]")


def model_names(metadatas: list[dict[str, Any]], paths: list[Path]) -> list[str]:
    """Readable, unique names: the method ('baseline', 'winn'), plus '-<arch>' when the
    architectures differ, plus '-<file stem>' where that still collides (e.g. two seeds).
    Characters that would break CSV column headers become '_'."""
    def safe(text: Any) -> str:
        return _UNSAFE.sub("_", str(text)) or "model"
    archs = {str(m.get("arch")) for m in metadatas}
    names = [safe(m.get("method", "model")) + (f"-{safe(m.get('arch'))}" if len(archs) > 1 else "") for m in metadatas]
    counts = Counter(names)
    names = [f"{n}-{safe(p.stem)}" if counts[n] > 1 else n for n, p in zip(names, paths)]
    seen: Counter[str] = Counter()
    unique = []
    for name in names:
        seen[name] += 1
        unique.append(name if seen[name] == 1 else f"{name}-{seen[name]}")
    return unique


def _data_signature(meta: dict[str, Any]) -> tuple[str, tuple[int, ...], int]:
    return str(meta["dataset"]), tuple(int(v) for v in meta["image_shape"]), int(meta["num_classes"])


def check_comparable(paths: list[Path], metadatas: list[dict[str, Any]]) -> None:
    """Every checkpoint must share dataset, image shape and class count with the baseline."""
    ref = _data_signature(metadatas[0])
    for path, meta in zip(paths[1:], metadatas[1:]):
        sig = _data_signature(meta)
        if sig != ref:
            raise UserError(
                f"checkpoints {paths[0]} (dataset {ref[0]}, image shape {list(ref[1])}, {ref[2]} classes) and "
                f"{path} (dataset {sig[0]}, image shape {list(sig[1])}, {sig[2]} classes) were trained on different "
                "data; compare only models trained on the same dataset")


def _checkpoint_provenance(path: Path, meta: dict[str, Any]) -> dict[str, Any]:
    def plain(value: Any) -> Any:
        if isinstance(value, (str, int, float, bool)) or value is None:
            return value
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {str(k): plain(v) for k, v in value.items()}
        return str(value)
    return {"checkpoint": str(path), "sha256": file_sha256(path), "method": meta.get("method"), "arch": meta.get("arch"),
            "epoch": meta.get("epoch"), "val_error": meta.get("val_error", meta.get("best_val_error")),
            "seed": meta.get("seed"), "metadata": plain(meta)}


def write_figures(out_dir: Path, metrics: Metrics, networks: Mapping[str, torch.nn.Module], images: torch.Tensor,
                  labels: torch.Tensor, attack: str) -> dict[str, Path]:
    """error_vs_eps.png (when there are several eps) and adversarial_examples.png (a few
    images attacked on every model at the largest eps)."""
    files = {}
    if len(metrics.by_eps) > 1:
        files["error_vs_eps.png"] = plot_error_vs_eps(metrics, out_dir / "error_vs_eps.png")
    if len(images):
        eps = max(metrics.by_eps)
        advs = {name: get_attack(attack)(model, images, labels, eps) for name, model in networks.items()}
        files["adversarial_examples.png"] = plot_adversarial_examples(images, advs, out_dir / "adversarial_examples.png")
    return files


def evaluate_checkpoints(baseline: Path, models: list[Path], spec: EvalSpec, out_dir: Path,
                         data: str | None = None, data_dir: Path | None = None, download: bool = False,
                         device: str = "auto", progress: bool = True, plots: bool = True,
                         command: str | None = None) -> dict[str, Any]:
    """Evaluate `baseline` and `models` as `spec` says (eps in [0, 1] pixel units) on the first
    `spec.limit` test images, and write table.md / table.csv / results.json / per_example.csv
    (plus PNG figures when `plots`) to out_dir. `command` is recorded as the provenance.

    Returns {"names", "result" (CrossEvalResult), "metrics" (Metrics), "provenance", "files"}."""
    timestamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    started = time.perf_counter()
    dev = resolve_device(device)

    paths, seen = [], set()
    for path in [Path(baseline), *map(Path, models)]:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            paths.append(path)
    loaded = [load_checkpoint(path) for path in paths]
    metadatas = [meta for _, meta in loaded]
    check_comparable(paths, metadatas)
    dataset_name, image_shape, num_classes = _data_signature(metadatas[0])
    if data is not None and data != dataset_name:
        raise UserError(f"--data {data} differs from the checkpoints' dataset {dataset_name} ({paths[0]}); "
                        "evaluate on the dataset the models were trained on")
    dataset = load_dataset(dataset_name, data_dir=data_dir, download=download)
    if tuple(dataset.image_shape) != image_shape or dataset.num_classes != num_classes:
        raise UserError(f"dataset {dataset_name} has images {list(dataset.image_shape)} and {dataset.num_classes} classes, "
                        f"but the checkpoints expect {list(image_shape)} and {num_classes}")
    images, labels = dataset.test_images[:spec.limit], dataset.test_labels[:spec.limit]

    names = model_names(metadatas, paths)
    networks = {name: model for name, (model, _) in zip(names, loaded)}
    result = cross_evaluate(networks, images, labels, spec, device=dev, progress=progress)
    metrics = compute_metrics(result.labels, result.clean_preds, result.adv_preds, baseline=names[0])
    provenance = {
        "command": command, "command_timestamp": timestamp,
        "wall_time_s": round(time.perf_counter() - started, 3),
        "dataset": dataset_name, "split": SPLIT, "n": result.n, "limit": spec.limit,
        "eps": list(spec.eps), "eps_unit": EPS_UNIT, "attack": spec.attack, "baseline": names[0],
        "batch_size": spec.batch_size,
        "models": {name: _checkpoint_provenance(path, meta) for name, path, meta in zip(names, paths, metadatas)},
        "versions": software_versions(), "device": device_description(dev)}
    files = write_reports(out_dir, result, metrics, provenance)
    if plots:
        files.update(write_figures(Path(out_dir), metrics, networks, images[:8].to(dev), labels[:8].to(dev),
                                   spec.attack))
    return {"names": names, "result": result, "metrics": metrics, "provenance": provenance, "files": files}
