"""Models in, report out: `winn-robust attack` and the Python API `winn_robust.evaluate`.

Load the models (our checkpoints, TorchScript, FILE.py:FUNCTION), check they are comparable,
cross-evaluate every attack on the TEST split, compute Tables 2-4, the robust error and the
failure indicators, and write the report with full provenance (which files, which data, which
eps in which unit, every attack setting and seed, which software, which device). Long
evaluations keep their finished work in OUT/.evaluation-state, so `--resume` continues a
killed run and ends with the same files as an uninterrupted one."""
from __future__ import annotations

import json
import re
import shutil
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from winn_robust import distributed
from winn_robust.checkpoint import atomic_save, file_sha256, load_tensors
from winn_robust.data import load_dataset
from winn_robust.device import resolve_device
from winn_robust.environment import device_description, software_versions
from winn_robust.errors import UserError
from winn_robust.evaluation.harness import CrossEvalResult, cross_evaluate
from winn_robust.evaluation.indicators import WARN, Indicator, compute_indicators
from winn_robust.evaluation.metrics import Metrics, compute_metrics
from winn_robust.evaluation.spec import EvalSpec
from winn_robust.model_sources import LoadedModel, PixelSpaceModel, check_outputs, load_model
from winn_robust.models.base import Classifier
from winn_robust.reporting.files import REPORT_FILES, write_reports
from winn_robust.reporting.plots import plot_adversarial_examples, plot_error_vs_eps
from winn_robust.reporting.tables import format_difference, format_pvalue, format_rate
from winn_robust.units import eps_unit, to_model_range

SPLIT = "test"
STATE_DIR = ".evaluation-state"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.+()-]")


# ----------------------------------------------------------------------------- names and checks
def _safe(text: Any) -> str:
    return _UNSAFE.sub("_", str(text)) or "model"


def model_names(metadatas: list[dict[str, Any]], paths: list[Path]) -> list[str]:
    """Readable, unique names: the method ('baseline', 'winn'), plus '-<arch>' when the
    architectures differ, plus '-<file stem>' where that still collides (e.g. two seeds).
    Characters that would break CSV column headers become '_'."""
    archs = {str(m.get("arch")) for m in metadatas}
    names = [_safe(m.get("method", "model")) + (f"-{_safe(m.get('arch'))}" if len(archs) > 1 else "") for m in metadatas]
    counts = Counter(names)
    names = [f"{n}-{_safe(p.stem if p.stem != 'best' else p.parent.name)}" if counts[n] > 1 else n
             for n, p in zip(names, paths)]
    seen: Counter[str] = Counter()
    unique = []
    for name in names:
        seen[name] += 1
        unique.append(name if seen[name] == 1 else f"{name}-{seen[name]}")
    return unique


def _data_signature(meta: dict[str, Any]) -> tuple[str, tuple[int, ...], int]:
    return str(meta["dataset"]), tuple(int(v) for v in meta["image_shape"]), int(meta["num_classes"])


def check_comparable(loaded: Sequence[LoadedModel]) -> None:
    """Every checkpoint must share dataset, image shape and class count with the first one."""
    ours = [m for m in loaded if m.kind == "checkpoint"]
    if not ours:
        return
    ref = _data_signature(ours[0].metadata)
    for other in ours[1:]:
        sig = _data_signature(other.metadata)
        if sig != ref:
            raise UserError(
                f"checkpoints {ours[0].path} (dataset {ref[0]}, image shape {list(ref[1])}, {ref[2]} classes) and "
                f"{other.path} (dataset {sig[0]}, image shape {list(sig[1])}, {sig[2]} classes) were trained on different "
                "data; compare only models trained on the same dataset")


def _plain(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return str(value)


def _model_provenance(loaded: LoadedModel) -> dict[str, Any]:
    meta = loaded.metadata
    record: dict[str, Any] = {"source": loaded.source, "kind": loaded.kind,
                              "checkpoint": str(loaded.path) if loaded.path else None,
                              "sha256": file_sha256(loaded.path) if loaded.path else None}
    if loaded.kind == "checkpoint":
        record.update(method=meta.get("method"), arch=meta.get("arch"), epoch=meta.get("epoch"),
                      val_error=meta.get("val_error", meta.get("best_val_error")), seed=meta.get("seed"),
                      metadata=_plain(meta))
    else:
        record.update(method="external", arch=loaded.kind, convention="images in [0, 1] -> logits")
    return record


# ----------------------------------------------------------------------------- resumable state
class FolderStore:
    """Finished work items of one evaluation, one atomically written file each, beside a record
    of what the evaluation is (so a --resume of another evaluation is refused, not mixed in)."""

    def __init__(self, root: Path, identity: Mapping[str, Any], resume: bool) -> None:
        """Under torchrun rank 0 alone clears and writes the folder; the other ranks only read it,
        and only on --resume (otherwise they could read a file rank 0 is about to delete)."""
        self.root = root
        self.readable = resume
        identity_path = root / "identity.json"
        wanted = json.dumps(_plain(dict(identity)), sort_keys=True)
        if resume and identity_path.is_file():
            if identity_path.read_text() != wanted:
                saved, mine = json.loads(identity_path.read_text()), json.loads(wanted)
                what = next((k for k in mine if saved.get(k) != mine.get(k)), "settings")
                raise UserError(f"--resume: {root} holds an evaluation with another {what}; run the same command "
                                "again, or pass --force instead of --resume to start over")
        elif distributed.world().is_main:
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir(parents=True)
            identity_path.write_text(wanted)
        self.readable = self.readable or distributed.world().is_main

    def _path(self, key: str) -> Path:
        return self.root / f"{_safe(key)}.pt"

    def get(self, key: str) -> dict[str, Any] | None:
        path = self._path(key)
        return load_tensors(path, what="evaluation state file") if self.readable and path.is_file() else None

    def put(self, key: str, value: dict[str, Any]) -> None:
        atomic_save(value, self._path(key))


def prepare_output(out: Path, force: bool, resume: bool) -> None:
    """Refuse to mix a new report with an older one's files unless told to replace them."""
    existing = [name for name in REPORT_FILES if (out / name).exists()]
    has_state = (out / STATE_DIR).is_dir()
    if resume:
        if not has_state and existing:
            raise UserError(f"--resume: {out} holds a finished report and no saved evaluation to continue; "
                            "pass --force to replace it")
        return
    if (existing or has_state) and not force:
        raise UserError(f"{out} already holds a report ({', '.join(existing) or STATE_DIR}); pass --force to replace it, "
                        "--resume to continue a killed evaluation, or choose another --out")
    if not distributed.world().is_main:
        return
    for name in existing:
        (out / name).unlink()
    for stale in out.glob("error_vs_eps*.png") if out.is_dir() else []:
        stale.unlink()


# ----------------------------------------------------------------------------- the report object
@dataclass
class EvaluationReport:
    """Everything one evaluation found; `write(out_dir)` writes the report files."""
    names: list[str]
    result: CrossEvalResult
    metrics: Metrics
    indicators: list[Indicator]
    provenance: dict[str, Any]
    class_names: tuple[str, ...] = ()
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def warnings(self) -> list[Indicator]:
        return [i for i in self.indicators if i.status == WARN]

    def write(self, out_dir: str | Path, plots: bool = True) -> dict[str, Path]:
        out = Path(out_dir)
        self.files = write_reports(out, self.result, self.metrics, self.provenance, self.indicators)
        if plots:
            self.files["error_vs_eps.png"] = plot_error_vs_eps(self.metrics, out / "error_vs_eps.png", self.provenance)
            figure = self.examples_figure(out / "adversarial_examples.png")
            if figure is not None:
                self.files["adversarial_examples.png"] = figure
        return self.files

    def examples_figure(self, path: Path) -> Path | None:
        """The counted adversarial examples at the table eps: one row per attack and model."""
        result, table_eps = self.result, self.provenance.get("table_eps")
        if result.example_images is None or not result.examples:
            return None
        rows = []
        for (attack, eps), by_source in result.examples.items():
            if eps != table_eps:
                continue
            for source, images in by_source.items():
                predictions = result.adv_preds[(attack, eps)][source][source][: len(images)].tolist()
                rows.append((f"{attack} on {source}", images, predictions))
        count = min(len(result.example_images), *(len(r[1]) for r in rows)) if rows else 0
        if not count:
            return None
        labels = result.labels[:count].tolist()
        clean = {m: p[:count].tolist() for m, p in result.clean_preds.items()}
        norm = self.provenance.get("norm", "linf")
        title = (f"{self.provenance.get('dataset', '')}: adversarial examples at "
                 f"{'eps' if norm == 'linf' else norm.upper() + ' eps'} {table_eps:g} "
                 f"({'; '.join(sorted({r[0].split(' on ')[0] for r in rows}))}); red = misclassified").strip()
        return plot_adversarial_examples(result.example_images[:count], [(r[0], r[1][:count], r[2][:count]) for r in rows],
                                         labels, clean, self.class_names, path, title)

    def summary_lines(self) -> list[str]:
        """What `attack` prints: per model the trust verdict, then the table-eps rows of Table 3."""
        lines = []
        for name in self.metrics.models:
            warned = [i for i in self.warnings if i.model == name]
            text = "no warnings" if not warned else f"{len(warned)} warning(s): " + "; ".join(
                sorted({i.title for i in warned}))
            lines.append(f"trust {name}: {text}")
        table_eps = self.provenance.get("table_eps")
        for (attack, eps), at_run in self.metrics.by_run.items():
            if eps != table_eps:
                continue
            norm = self.provenance.get("norm", "linf")
            lines.append(f"{attack} at {'eps' if norm == 'linf' else norm.upper() + ' eps'} {eps:g} (N = {at_run.n}):")
            for name in self.metrics.models:
                row = at_run.models[name]
                extra = "" if name == self.metrics.baseline else (
                    f", minus baseline {format_difference(row.adv_difference)} points, McNemar p "
                    f"{format_pvalue(row.mcnemar_adv)}")
                lines.append(f"  {name}: clean error {format_rate(row.clean_error)}, adversarial error "
                             f"{format_rate(row.adv_error)}, robust error {format_rate(self.metrics.robust[eps].error[name])}"
                             + extra)
        return lines


# ----------------------------------------------------------------------------- evaluation
def _loaded_names(loaded: Sequence[LoadedModel]) -> list[str]:
    ours = [m for m in loaded if m.kind == "checkpoint" and m.name is None]
    auto = iter(model_names([m.metadata for m in ours], [m.path for m in ours if m.path is not None])) if ours else iter(())
    names = []
    for m in loaded:
        if m.name is not None:
            names.append(_safe(m.name))
        elif m.kind == "checkpoint":
            names.append(next(auto))
        else:
            names.append(_safe(Path(m.source.split(":")[0]).stem))
    seen: Counter[str] = Counter()
    unique = []
    for name in names:
        seen[name] += 1
        unique.append(name if seen[name] == 1 else f"{name}-{seen[name]}")
    return unique


def _model_file(source: str) -> str:
    """The file a NAME=SPEC source reads (a run folder means its best.pt), to catch a model given twice."""
    spec = Path(source.partition("=")[2] if "=" in source and not Path(source).exists() else source)
    if spec.is_dir() and (spec / "best.pt").is_file():
        spec = spec / "best.pt"
    return str(spec.resolve())


def evaluate_models(sources: Sequence[str], spec: EvalSpec, out_dir: Path | None, data: str | None = None,
                    data_dir: Path | None = None, download: bool = False, device: str = "auto", progress: bool = True,
                    plots: bool = True, command: str | None = None, resume: bool = False, force: bool = False,
                    notes: list[str] | None = None) -> EvaluationReport:
    """Evaluate the models given as NAME=SPEC strings (the first is the baseline: the reference
    every other model is compared with) on the first `spec.limit` test images and, when
    `out_dir` is given, write the report there."""
    timestamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    started = time.perf_counter()
    dev = resolve_device(device)
    prepared = distributed.agree(lambda: _prepare(sources, spec, out_dir, data, data_dir, download, dev, command,
                                                  timestamp, resume, force, notes))
    networks, images, labels, names, provenance, class_names, store = prepared
    attacks_started = time.perf_counter()
    result = cross_evaluate(networks, images, labels, spec, device=dev, progress=progress, store=store)
    attack_seconds = time.perf_counter() - attacks_started
    report = build_report(result, names, provenance, spec, class_names)
    report.provenance["wall_time_s"] = round(time.perf_counter() - started, 3)
    report.provenance["attack_time_s"] = round(attack_seconds, 3)  # cross_evaluate alone (rank 0's clock)
    if out_dir is not None and distributed.world().is_main:
        report.write(out_dir, plots=plots)
        shutil.rmtree(Path(out_dir) / STATE_DIR, ignore_errors=True)
    return report


def _prepare(sources: Sequence[str], spec: EvalSpec, out_dir: Path | None, data: str | None, data_dir: Path | None,
             download: bool, dev: torch.device, command: str | None, timestamp: str, resume: bool, force: bool,
             notes: list[str] | None) -> tuple[dict[str, torch.nn.Module], torch.Tensor, torch.Tensor, list[str],
                                               dict[str, Any], tuple[str, ...], FolderStore | None]:
    """Everything before the attacks, on every rank alike (under torchrun `agree` stops every
    rank when one cannot load a model or the data)."""
    resolved = [_model_file(s) for s in sources]
    repeated = [s for s, r in zip(sources, resolved) if resolved.count(r) > 1]
    if repeated:
        raise UserError(f"the same model is given twice ({repeated[0]}); give each model once")
    if out_dir is not None:
        prepare_output(Path(out_dir), force, resume)
    loaded = [load_model(s, dev) for s in sources]
    notes = notes if notes is not None else []
    for m in loaded:
        notes.extend(m.notes)
    if loaded and loaded[0].kind == "checkpoint" and loaded[0].metadata.get("method") in ("winn", "icn"):
        notes.append(f"warning: the baseline {loaded[0].source} is a {loaded[0].metadata['method']} model; "
                     "correction rates and differences compare every model with it")
    check_comparable(loaded)
    ours = [m for m in loaded if m.kind == "checkpoint"]
    dataset_name = _data_signature(ours[0].metadata)[0] if ours else data
    if dataset_name is None:
        raise UserError("no winn-robust checkpoint among the models, so the dataset is unknown: pass --data")
    if data is not None and ours and data.lower() != dataset_name:
        raise UserError(f"--data {data} differs from the checkpoints' dataset {dataset_name} ({ours[0].source}); "
                        "evaluate on the dataset the models were trained on")
    dataset = load_dataset(dataset_name, data_dir=data_dir, download=download)
    if ours:
        _, image_shape, num_classes = _data_signature(ours[0].metadata)
        if tuple(dataset.image_shape) != image_shape or dataset.num_classes != num_classes:
            raise UserError(f"dataset {dataset_name} has images {list(dataset.image_shape)} and {dataset.num_classes} "
                            f"classes, but the checkpoints expect {list(image_shape)} and {num_classes}")
    images, labels = dataset.test_images[:spec.limit], dataset.test_labels[:spec.limit]
    for m in loaded:
        if m.kind != "checkpoint":
            check_outputs(m, images.to(dev), dataset.num_classes)
    names = _loaded_names(loaded)
    networks = {name: m.model for name, m in zip(names, loaded)}
    provenance: dict[str, Any] = {
        "command": command, "command_timestamp": timestamp,
        "dataset": dataset.name, "split": SPLIT, "n": len(labels), "limit": spec.limit,
        "eps": list(spec.eps), "table_eps": spec.table_eps, "norm": spec.norm, "eps_unit": eps_unit(spec.norm),
        "attack": "+".join(spec.attack_names), "evaluation": spec.describe(), "seed": spec.seed,
        "baseline": names[0], "batch_size": spec.batch_size, "class_names": list(dataset.class_names),
        "models": {name: _model_provenance(m) for name, m in zip(names, loaded)},
        "versions": software_versions(), "device": device_description(dev), "notes": list(notes),
        "torch_threads": torch.get_num_threads(), "ranks": distributed.world().world_size}
    seeds = {m.metadata.get("seed") for m in loaded if m.kind == "checkpoint"}
    if len(seeds) == 1 and None not in seeds and len(ours) == len(loaded):
        provenance["training_seed"] = seeds.pop()  # every model trained with one seed: a seed's report
    store = None
    if out_dir is not None:
        identity = {"models": {n: p["sha256"] for n, p in provenance["models"].items()}, "dataset": dataset.name,
                    "n": len(labels), "evaluation": spec.describe()}
        store = FolderStore(Path(out_dir) / STATE_DIR, identity, resume)
    return networks, images, labels, names, provenance, tuple(dataset.class_names), store


def build_report(result: CrossEvalResult, names: list[str], provenance: dict[str, Any], spec: EvalSpec,
                 class_names: Sequence[str]) -> EvaluationReport:
    metrics = compute_metrics(result.labels, result.clean_preds, result.adv_preds, baseline=names[0])
    robust = {m: {eps: r.error[m].value or 0.0 for eps, r in metrics.robust.items()} for m in metrics.models}
    describe = {a.name: {"gradient_based": a.gradient_based, "iterative": a.iterative} for a in spec.attacks}
    indicators = compute_indicators(result, robust, describe)
    return EvaluationReport(names, result, metrics, indicators, provenance, tuple(class_names))


def evaluate(models: Mapping[str, torch.nn.Module], images: torch.Tensor, labels: torch.Tensor,
             eps: float | Sequence[float], attacks: str | Sequence[str] = ("fgsm",),
             options: Mapping[str, Mapping[str, Any]] | None = None, seed: int = 0, batch_size: int = 500,
             device: str = "auto", dataset: str = "custom", class_names: Sequence[str] = (),
             out_dir: str | Path | None = None, progress: bool = False, **spec_options: Any) -> EvaluationReport:
    """Evaluate models without the CLI. Ecosystem convention: `images` in [0, 1] (N, C, H, W),
    `labels` (N,), and every model maps [0, 1] images to logits, except winn-robust's own
    `Classifier`s (from `load_checkpoint`), which see [-1, 1] and are used as they are. The first
    model is the baseline. eps in [0, 1] pixel units; `attacks` by name ("fgsm,pgd,autoattack").
    Returns the report; `out_dir` (or `report.write(dir)`) writes the same files `attack` writes."""
    if not models:
        raise UserError("evaluate() needs at least one model")
    eps_values = (eps,) if isinstance(eps, (int, float)) else tuple(eps)
    attack_list = [a.strip() for a in attacks.split(",")] if isinstance(attacks, str) else list(attacks)
    spec = EvalSpec.build(eps_values, attack_list, options=options, seed=seed, batch_size=batch_size, **spec_options)
    images = torch.as_tensor(images, dtype=torch.float32)
    if images.ndim != 4 or float(images.min()) < 0 or float(images.max()) > 1:
        raise UserError("evaluate() takes images in [0, 1] of shape (N, C, H, W), the ecosystem's convention")
    labels = torch.as_tensor(labels, dtype=torch.int64)
    dev = resolve_device(device)
    images01 = images[:spec.limit]
    labels = labels[:spec.limit]
    networks = {}
    for name, model in models.items():
        wrapped = model if isinstance(model, Classifier) else PixelSpaceModel(model)
        networks[_safe(name)] = wrapped.to(dev).eval()
    model_images = to_model_range(images01)
    num_classes = int(max(int(labels.max()) + 1, len(class_names)))
    for name, net in networks.items():
        check_outputs(LoadedModel(name, net, name, "python", None), model_images.to(dev), num_classes)
    names = list(networks)
    provenance: dict[str, Any] = {
        "command": "winn_robust.evaluate()", "command_timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "dataset": dataset, "split": SPLIT, "n": len(labels), "limit": spec.limit, "eps": list(spec.eps),
        "table_eps": spec.table_eps, "norm": spec.norm, "eps_unit": eps_unit(spec.norm),
        "attack": "+".join(spec.attack_names),
        "evaluation": spec.describe(), "seed": spec.seed, "baseline": names[0], "batch_size": spec.batch_size,
        "class_names": list(class_names), "versions": software_versions(), "device": device_description(dev),
        "torch_threads": torch.get_num_threads(),
        "models": {n: {"source": "python object", "kind": "python", "method": "external", "arch": type(m).__name__,
                       "checkpoint": None, "sha256": None} for n, m in networks.items()}}
    result = cross_evaluate(networks, model_images, labels, spec, device=dev, progress=progress)
    report = build_report(result, names, provenance, spec, tuple(class_names) or tuple(map(str, range(num_classes))))
    if out_dir is not None:
        report.write(out_dir)
    return report
