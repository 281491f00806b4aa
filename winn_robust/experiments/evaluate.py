"""Models in, report out: `winn-robust attack` and the Python API `winn_robust.evaluate`.

Load the models (our checkpoints, TorchScript, FILE.py:FUNCTION), check they are comparable,
cross-evaluate every attack on the TEST split, compute Tables 2-4, the robust error and the
failure indicators, and write the report with full provenance (which files, which data, which
eps in which unit, every attack setting and seed, which software, which device). Long
evaluations keep their finished work in OUT/.evaluation-state, so `--resume` continues a
killed run and ends with the same files as an uninterrupted one."""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from winn_robust import distributed
from winn_robust.data import DATASETS, load_dataset
from winn_robust.device import resolve_device
from winn_robust.errors import SettingError, UserError
from winn_robust.evaluation.harness import CrossEvalResult, cross_evaluate, plan_items
from winn_robust.evaluation.indicators import WARN, Indicator, compute_indicators
from winn_robust.evaluation.metrics import Metrics, compute_metrics
from winn_robust.evaluation.spec import EvalSpec
from winn_robust.experiments.provenance import build_provenance, model_provenance, now, python_model_provenance
from winn_robust.experiments.resume_store import FolderStore, prepare_output
from winn_robust.model_set import ModelSet, safe_name
from winn_robust.model_set import model_names as model_names  # re-exported: its old home
from winn_robust.model_sources import LoadedModel, Normalisation, PixelSpaceModel, check_outputs, parse_normalisation
from winn_robust.models.base import Classifier
from winn_robust.reporting.files import write_reports
from winn_robust.reporting.plots import plot_adversarial_examples, plot_error_vs_eps
from winn_robust.reporting.provenance import Provenance
from winn_robust.reporting.report_folder import ReportFolder
from winn_robust.reporting.tables import format_difference, format_pvalue, format_rate, shown_difference, shown_rate
from winn_robust.units import DEFAULT_NORM, eps_text, to_model_range


# ----------------------------------------------------------------------------- the report object
@dataclass
class EvaluationReport:
    """Everything one evaluation found; `write(out_dir)` writes the report files."""
    names: list[str]
    result: CrossEvalResult
    metrics: Metrics
    indicators: list[Indicator]
    provenance: Provenance
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
        result, table_eps = self.result, self.provenance.table_eps
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
        attacks = ", ".join(dict.fromkeys(r[0].split(" on ")[0] for r in rows))  # the rows' order
        eps_name = "eps" if self.provenance.threat_norm == DEFAULT_NORM else "L2 eps"
        title = (f"{self.provenance.dataset or ''}: adversarial examples at {eps_name} "
                 f"{eps_text(float(table_eps or 0))}\nrows: clean, "
                 f"then {attacks}, each on every model (labels left); orange caption = misclassified").strip()
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
        table_eps, metric = self.provenance.table_eps, self.provenance.shown_metric
        for (attack, eps), at_run in self.metrics.by_run.items():
            if eps != table_eps:
                continue
            norm = self.provenance.threat_norm
            lines.append(f"{attack} at {'eps' if norm == DEFAULT_NORM else 'L2 eps'} {eps_text(eps)} (N = {at_run.n}):")
            for name in self.metrics.models:
                row = at_run.models[name]
                extra = "" if name == self.metrics.baseline else (
                    f", minus baseline {format_difference(shown_difference(row.adv_difference, metric))} points, "
                    f"McNemar p {format_pvalue(row.mcnemar_adv)}")
                lines.append(f"  {name}: clean {metric} {format_rate(shown_rate(row.clean_error, metric))}, adversarial "
                             f"{metric} {format_rate(shown_rate(row.adv_error, metric))}, robust {metric} "
                             f"{format_rate(shown_rate(self.metrics.robust[eps].error[name], metric))}" + extra)
        return lines


# ----------------------------------------------------------------------------- evaluation
def evaluate_models(sources: Sequence[str], spec: EvalSpec, out_dir: Path | None, data: str | None = None,
                    data_dir: Path | None = None, download: bool = False, device: str = "auto", progress: bool = True,
                    plots: bool = True, command: str | None = None, resume: bool = False, force: bool = False,
                    notes: list[str] | None = None, normalise: Normalisation | None = None,
                    metric: str | None = None) -> EvaluationReport:
    """Evaluate the models given as NAME=SPEC strings (the first is the baseline: the reference
    every other model is compared with) on the first `spec.limit` test images and, when
    `out_dir` is given, write the report there."""
    timestamp = now()
    started = time.perf_counter()
    dev = resolve_device(device)
    with ExitStack() as hold:  # rank 0 holds the report folder's lock from before it reads it to the last write
        prepared = distributed.agree(lambda: _prepare(sources, spec, out_dir, data, data_dir, download, dev, command,
                                                      timestamp, resume, force, notes, hold, normalise))
        networks, images, labels, names, provenance, class_names, store = prepared
        if metric is not None:
            provenance = replace(provenance, metric=metric)
        attacks_started = time.perf_counter()
        log = None if progress else run_logger(spec, len(labels), names)
        result = cross_evaluate(networks, images, labels, spec, device=dev, progress=progress, store=store,
                                **({} if log is None else {"on_item": log}))
        attack_seconds = time.perf_counter() - attacks_started
        if store is not None and store.recomputed:
            provenance = replace(provenance, notes=(*(provenance.notes or ()),
                                 f"{len(store.recomputed)} damaged evaluation state item(s) were recomputed"))
        provenance = replace(provenance, wall_time_s=round(time.perf_counter() - started, 3),
                             attack_time_s=round(attack_seconds, 3))  # cross_evaluate alone (rank 0's clock)
        report = build_report(result, names, provenance, spec, class_names)
        if out_dir is not None and distributed.world().is_main:
            folder = ReportFolder(Path(out_dir))
            folder.check_writable()
            report.write(out_dir, plots=plots)
            folder.clear_state()
    return report


def run_logger(spec: EvalSpec, n_images: int, names: Sequence[str]) -> Callable[[str], None]:
    """Without a progress bar (--no-progress, logs, jobs): one line on stdout as each attack run
    (attack, eps) finishes on every model, with its elapsed time, so a log shows it moving."""
    remaining: dict[int, int] = {}
    for item in plan_items(spec, n_images):
        if item.run is not None:
            remaining[item.run] = remaining.get(item.run, 0) + 1
    started = [time.perf_counter()]

    def finished(key: str) -> None:
        run = next((r for r in remaining if key.startswith(f"run{r}-")), None)
        if run is None or not distributed.world().is_main:
            return
        remaining[run] -= 1
        if remaining[run] == 0:
            attack_run = spec.runs[run]
            now = time.perf_counter()
            print(f"    finished {attack_run.attack.name} at eps {eps_text(attack_run.eps)} on {len(names)} model(s), "
                  f"{min(n_images, attack_run.n or n_images)} images, in {now - started[0]:.0f} s", flush=True)
            started[0] = now

    return finished


def _prepare(sources: Sequence[str], spec: EvalSpec, out_dir: Path | None, data: str | None, data_dir: Path | None,
             download: bool, dev: torch.device, command: str | None, timestamp: str, resume: bool, force: bool,
             notes: list[str] | None, hold: ExitStack | None = None, normalise: Normalisation | None = None
             ) -> tuple[dict[str, torch.nn.Module], torch.Tensor, torch.Tensor, list[str], Provenance, tuple[str, ...],
                        FolderStore | None]:
    """Everything before the attacks, on every rank alike (under torchrun `agree` stops every
    rank when one cannot load a model or the data)."""
    ModelSet.refuse_repeated(sources)
    if out_dir is not None:
        if distributed.world().is_main:  # one writer per report folder, before anything there is read or deleted
            lock = ReportFolder(Path(out_dir)).open_for_writing()
            if hold is not None:
                hold.callback(lock.release)
        prepare_output(Path(out_dir), force, resume)
    models = ModelSet.load(sources, dev, normalise)
    notes = notes if notes is not None else []
    notes.extend(models.notes)
    signature = models.signature
    dataset_name = signature[0] if signature else data
    if dataset_name is None:
        raise UserError("no winn-robust checkpoint among the models, so the dataset is unknown: pass `data`", mentions=("data",))
    if data is not None and data.lower() not in DATASETS:
        raise UserError(f"unknown dataset {data!r} in `data`; choose one of {', '.join(DATASETS)}", mentions=("data",))
    if data is not None and signature and data.lower() != dataset_name:
        raise SettingError("data", f"{data} differs from the checkpoints' dataset {dataset_name} ({models.checkpoints[0].source}); "
                        "evaluate on the dataset the models were trained on")
    first = models.checkpoints[0] if models.checkpoints else None
    saved_dir = first.checkpoint.data_dir if first is not None else None
    if data_dir is None and saved_dir and Path(saved_dir).is_dir():
        data_dir = Path(saved_dir)  # where the run read its data: the test set is beside it
        notes.append(f"reading {dataset_name} from {data_dir}, the --data-dir {models.checkpoints[0].source} was trained with")
    dataset = load_dataset(dataset_name, data_dir=data_dir, download=download)
    if signature:
        _, image_shape, num_classes = signature
        if tuple(dataset.image_shape) != image_shape or dataset.num_classes != num_classes:
            raise UserError(f"dataset {dataset_name} has images {list(dataset.image_shape)} and {dataset.num_classes} "
                            f"classes, but the checkpoints expect {list(image_shape)} and {num_classes}")
    images, labels = dataset.test_images[:spec.limit], dataset.test_labels[:spec.limit]
    for m in models.models:
        if m.kind != "checkpoint":
            check_outputs(m, images.to(dev), dataset.num_classes)
    names = list(models.names)
    provenance = build_provenance(spec, command=command, timestamp=timestamp, dataset=dataset.name, n=len(labels),
                                  names=names, class_names=dataset.class_names, device=dev, notes=notes,
                                  models={name: model_provenance(m) for name, m in zip(names, models.models)},
                                  ranks=distributed.world().world_size)
    if models.training_seed is not None:  # every model trained with one seed: a seed's report
        provenance = replace(provenance, training_seed=models.training_seed)
    if normalise is not None:
        provenance = replace(provenance, input_normalisation={
            "mean": list(normalise[0]), "std": list(normalise[1]),
            "rule": "external models get (u - mean) / std of [0, 1] pixels u"})
    store = None
    if out_dir is not None:
        identity = {"models": {n: m.sha256 for n, m in provenance.models.items()}, "dataset": dataset.name,
                    "n": len(labels), "evaluation": spec.describe()}
        store = FolderStore(ReportFolder(Path(out_dir)), identity, resume)
    return models.networks, images, labels, names, provenance, tuple(dataset.class_names), store


def build_report(result: CrossEvalResult, names: list[str], provenance: Provenance, spec: EvalSpec,
                 class_names: Sequence[str]) -> EvaluationReport:
    metrics = compute_metrics(result.labels, result.clean_preds, result.adv_preds, baseline=names[0])
    robust = {m: {eps: r.error[m].value or 0.0 for eps, r in metrics.robust.items()} for m in metrics.models}
    attacks = {a.name: a for a in spec.attacks}  # the checks read what each attack declares
    expected = {n: provenance.model(n).val_error for n in names}
    indicators = compute_indicators(result, robust, attacks, expected, len(class_names) or None)
    return EvaluationReport(names, result, metrics, indicators, provenance, tuple(class_names))


def evaluate(models: Mapping[str, torch.nn.Module], images: torch.Tensor, labels: torch.Tensor,
             eps: float | Sequence[float], attacks: str | Sequence[str] = ("fgsm",),
             options: Mapping[str, Mapping[str, Any]] | None = None, seed: int = 0, batch_size: int = 500,
             device: str = "auto", dataset: str = "custom", class_names: Sequence[str] = (),
             out_dir: str | Path | None = None, progress: bool = False,
             input_mean: Sequence[float] | None = None, input_std: Sequence[float] | None = None,
             metric: str = "error", **spec_options: Any) -> EvaluationReport:
    """Evaluate models without the CLI. Ecosystem convention: `images` in [0, 1] (N, C, H, W),
    `labels` (N,), and every model maps [0, 1] images to logits, except winn-robust's own
    `Classifier`s (from `load_checkpoint`), which see [-1, 1] and are used as they are. The first
    model is the baseline. eps in [0, 1] pixel units; `attacks` by name ("fgsm,pgd,autoattack").
    Models trained on mean/std-normalised pixels get `input_mean`/`input_std` (per channel, of
    [0, 1] pixels): they then receive (u - mean) / std.
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
        norm = None if input_mean is None and input_std is None else \
            parse_normalisation(",".join(map(str, input_mean or [])) or None, ",".join(map(str, input_std or [])) or None)
        wrapped = model if isinstance(model, Classifier) else PixelSpaceModel(model, safe_name(name), norm)
        networks[safe_name(name)] = wrapped.to(dev).eval()
    model_images = to_model_range(images01)
    num_classes = int(max(int(labels.max()) + 1, len(class_names)))
    for name, net in networks.items():
        check_outputs(LoadedModel(name, net, name, "python", None), model_images.to(dev), num_classes)
    names = list(networks)
    provenance = build_provenance(spec, command="winn_robust.evaluate()", timestamp=now(), dataset=dataset,
                                  n=len(labels), names=names, class_names=class_names, device=dev,
                                  models={n: python_model_provenance(m) for n, m in networks.items()})
    provenance = replace(provenance, metric=metric)
    result = cross_evaluate(networks, model_images, labels, spec, device=dev, progress=progress)
    report = build_report(result, names, provenance, spec, tuple(class_names) or tuple(map(str, range(num_classes))))
    if out_dir is not None:
        report.write(out_dir)
    return report
