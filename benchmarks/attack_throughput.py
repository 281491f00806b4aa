"""Cross-evaluation throughput: our harness against foolbox, torchattacks and a bare-torch floor.

The same job is done four ways, on the same images, models, batch size and eps (pixel units,
docs/conventions.md: models see [-1, 1], so the FGSM step is units.eps_to_model(eps), twice eps,
in model space):

  harness       winn_robust.evaluation.cross_evaluate(..., EvalSpec(eps=(eps,), attack="fgsm"))
  foolbox       per batch: clean predictions of every model; for every model A, foolbox's FGSM
                on foolbox_adapter.foolbox_model(A) (foolbox.PyTorchModel with bounds (-1, 1))
                with epsilons=eps_to_model(eps), then every model predicts on A's adversarial
                batch (the natural foolbox user code)
  torchattacks  the same with torchattacks.FGSM(m01, eps) where m01(u) = model(to_model_range(u))
                works in [0, 1] pixel space; to_pixel_range in, to_model_range out
  floor         bare torch, the minimum passes per batch for K models: K forward+input-backward
                passes (clean predictions come from those logits) and K^2 no-grad forwards

Each pipeline produces the same outputs: clean predictions of every model and every model's
prediction on every model's adversarial batch (the K x K transfer matrix). Images already sit
on the device for every pipeline (no host-to-device copy is timed). Every pipeline is warmed
up once on one batch, then timed `--repeats` times, the pipelines interleaved round-robin so
drifting machine load hits all of them alike. The table reports the BEST (minimum) time of
the repeats, the least disturbed by other load on a shared machine; the median is printed
next to it and saved with every single time in --json.

Reading the ratios (both from best times):
  x harness = pipeline seconds / harness seconds: above 1 the pipeline is slower than ours.
  x floor   = pipeline seconds / floor seconds: 1.0 is the minimum work; the excess is
              overhead (extra forwards, input checks, bookkeeping).

The agreement check compares every pipeline's predictions with the harness's, and the
adversarial images of the first batch pixel by pixel.

    python -m benchmarks.attack_throughput                       # CPU, and CUDA when present
    python -m benchmarks.attack_throughput --device cpu --n 500 --json out.json --profile
"""
from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.common import (
    FASHION_DIR,
    config_record,
    environment_record,
    load_fashion_mnist,
    rule_table,
    run_main,
    runtime_note,
    sync,
    time_round_robin,
    total_line,
    write_json,
)
from winn_robust.attacks.fgsm import fgsm
from winn_robust.attacks.foolbox_adapter import foolbox_model
from winn_robust.device import devices_to_measure
from winn_robust.environment import machine_description
from winn_robust.evaluation import EvalSpec, cross_evaluate
from winn_robust.models import build_model
from winn_robust.models.base import frozen_eval
from winn_robust.units import eps_to_model, to_model_range, to_pixel_range

SHAPE = (1, 28, 28)
NUM_CLASSES = 10
PIPELINES = ("harness", "foolbox", "torchattacks", "floor")

# Predictions of one pipeline: clean[name] (N,), adv[source][target] (N,) as numpy int64.
Preds = tuple[dict[str, np.ndarray], dict[str, dict[str, np.ndarray]]]
Pipeline = Callable[[dict[str, nn.Module], torch.Tensor, torch.Tensor, float, int], Preds]
# One library attack bound to one model: (images, labels, eps) -> adversarial images.
AttackFn = Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]


# ----------------------------------------------------------------------------- inputs
def load_images(n: int, data_dir: str | None, seed: int) -> tuple[torch.Tensor, torch.Tensor, str]:
    """n Fashion-MNIST test images in [-1, 1] (tiled if n > 10,000), else seeded random images."""
    found = load_fashion_mnist(data_dir, fallback="random images")
    if found is not None:
        ds, folder = found
        reps = -(-n // len(ds.test_images))
        images = ds.test_images.repeat(reps, 1, 1, 1)[:n].contiguous()
        labels = ds.test_labels.repeat(reps)[:n].contiguous()
        return images, labels, f"Fashion-MNIST test images from {folder}"
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n, *SHAPE, generator=g) * 2 - 1
    labels = torch.randint(0, NUM_CLASSES, (n,), generator=g)
    return images, labels, "random images (Fashion-MNIST not found)"


def build_models(archs: list[str], device: torch.device, seed: int) -> dict[str, nn.Module]:
    """One randomly initialised model per architecture (seeded; speed does not need training)."""
    models: dict[str, nn.Module] = {}
    for i, arch in enumerate(archs):
        torch.manual_seed(seed + i)
        name = arch if arch not in models else f"{arch}_{i}"
        models[name] = build_model(arch, SHAPE, NUM_CLASSES).to(device).eval()
    return models


def batches(n: int, batch_size: int) -> range:
    return range(0, n, batch_size)


def to_numpy(parts: list[torch.Tensor]) -> np.ndarray:
    return torch.cat(parts).cpu().numpy().astype(np.int64)


def collect(clean: dict[str, list[torch.Tensor]], adv: dict[str, dict[str, list[torch.Tensor]]]) -> Preds:
    return ({m: to_numpy(p) for m, p in clean.items()},
            {s: {t: to_numpy(p) for t, p in row.items()} for s, row in adv.items()})


# ----------------------------------------------------------------------------- the four pipelines
def run_harness(models: dict[str, nn.Module], images: torch.Tensor, labels: torch.Tensor, eps: float,
                batch_size: int) -> Preds:
    spec = EvalSpec.build((eps,), ["fgsm"], batch_size=batch_size, probes=False)
    result = cross_evaluate(models, images, labels, spec, device=images.device, progress=False)
    return result.clean_preds, result.adv_preds[("fgsm", eps)]


def fgsm_foolbox(model: nn.Module, device: torch.device) -> AttackFn:
    """foolbox's FGSM on the project's foolbox view of the model (bounds in model units)."""
    import foolbox

    fmodel = foolbox_model(model, device)
    attack = foolbox.attacks.FGSM()

    def run(x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
        _, clipped, _ = attack(fmodel, x, y, epsilons=eps_to_model(eps))
        return clipped
    return run


class ZeroOne(nn.Module):
    """m01(u) = model(to_model_range(u)): a [-1, 1] model seen from [0, 1] pixel space
    (torchattacks' range)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.model(to_model_range(u))


def fgsm_torchattacks(model: nn.Module, eps: float) -> AttackFn:
    """torchattacks' FGSM in [0, 1] pixel space, converted at the boundary both ways."""
    import torchattacks

    attack = torchattacks.FGSM(ZeroOne(model).eval(), eps=eps)

    def run(x: torch.Tensor, y: torch.Tensor, eps_: float) -> torch.Tensor:
        return to_model_range(attack(to_pixel_range(x), y))
    return run


def library_pipeline(make: Callable[[nn.Module, torch.device, float], AttackFn]) -> Pipeline:
    """The natural user loop around a library attack: clean predictions, then for every model A
    the library's attack on A and every model's prediction on A's adversarial batch."""

    def run(models: dict[str, nn.Module], images: torch.Tensor, labels: torch.Tensor, eps: float,
            batch_size: int) -> Preds:
        device = images.device
        names = list(models)
        for model in models.values():
            model.eval()
        attacks = {a: make(models[a], device, eps) for a in names}
        clean: dict[str, list[torch.Tensor]] = {m: [] for m in names}
        adv: dict[str, dict[str, list[torch.Tensor]]] = {s: {t: [] for t in names} for s in names}
        for start in batches(len(images), batch_size):
            x, y = images[start:start + batch_size], labels[start:start + batch_size]
            with torch.no_grad():
                for m in names:
                    clean[m].append(models[m](x).argmax(1))
            for a in names:
                x_adv = attacks[a](x, y, eps)
                with torch.no_grad():
                    for b in names:
                        adv[a][b].append(models[b](x_adv).argmax(1))
        return collect(clean, adv)
    return run


run_foolbox = library_pipeline(lambda model, device, eps: fgsm_foolbox(model, device))
run_torchattacks = library_pipeline(lambda model, device, eps: fgsm_torchattacks(model, eps))


def run_floor(models: dict[str, nn.Module], images: torch.Tensor, labels: torch.Tensor, eps: float,
              batch_size: int) -> Preds:
    """Bare torch: per batch K forward+input-backward passes and K^2 no-grad forwards. Weights
    are frozen (as the harness does) so autograd builds input gradients only."""
    names = list(models)
    step = eps_to_model(eps)
    clean: dict[str, list[torch.Tensor]] = {m: [] for m in names}
    adv: dict[str, dict[str, list[torch.Tensor]]] = {s: {t: [] for t in names} for s in names}
    with frozen_eval(*models.values()):
        for start in batches(len(images), batch_size):
            x, y = images[start:start + batch_size], labels[start:start + batch_size]
            crafted = {}
            for s in names:
                xg = x.detach().requires_grad_(True)
                logits = models[s](xg)
                (grad,) = torch.autograd.grad(F.cross_entropy(logits, y, reduction="sum"), xg)
                crafted[s] = (x + step * grad.sign()).clamp_(-1.0, 1.0)
                clean[s].append(logits.detach().argmax(1))
            with torch.inference_mode():
                for s in names:
                    for t in names:
                        adv[s][t].append(models[t](crafted[s]).argmax(1))
    return collect(clean, adv)


RUNNERS: dict[str, Pipeline] = {"harness": run_harness, "foolbox": run_foolbox,
                                "torchattacks": run_torchattacks, "floor": run_floor}


# ----------------------------------------------------------------------------- checks
def agreement(reference: Preds, other: Preds) -> dict[str, float | int]:
    """Fraction of predictions (clean and K x K adversarial) equal to the reference's, and the
    fraction of images on which every one of them is equal."""
    ref_clean, ref_adv = reference
    clean, adv = other
    ref_all = np.stack([ref_clean[m] for m in ref_clean] + [ref_adv[s][t] for s in ref_adv for t in ref_adv[s]])
    all_ = np.stack([clean[m] for m in ref_clean] + [adv[s][t] for s in ref_adv for t in ref_adv[s]])
    k = len(ref_clean)
    same = ref_all == all_
    return {"predictions": int(same.size), "predictions_equal": int(same.sum()),
            "adv_fraction": float(same[k:].mean()), "clean_fraction": float(same[:k].mean()),
            "image_fraction": float(same.all(0).mean())}


def pixel_agreement(models: dict[str, nn.Module], x: torch.Tensor, y: torch.Tensor, eps: float) -> dict[str, dict[str, float]]:
    """Adversarial images of one batch from each library vs our FGSM: max |diff| and the fraction
    of pixels that are bit-identical (untimed)."""
    makers: dict[str, Callable[[nn.Module], AttackFn]] = {
        "foolbox": lambda m: fgsm_foolbox(m, x.device), "torchattacks": lambda m: fgsm_torchattacks(m, eps)}
    out: dict[str, dict[str, float]] = {}
    for lib, make in makers.items():
        diffs, equal, total = [], 0, 0
        for model in models.values():
            ours = fgsm(model, x, y, eps)
            theirs = make(model)(x, y, eps).detach()
            diffs.append(float((ours - theirs).abs().max()))
            equal += int((ours == theirs).sum())
            total += ours.numel()
        out[lib] = {"max_abs_diff": max(diffs), "pixels_identical": equal / total}
    return out


# ----------------------------------------------------------------------------- timing
def time_device(device: torch.device, args: argparse.Namespace, images: torch.Tensor, labels: torch.Tensor
                ) -> dict[str, Any]:
    """Every pipeline on one device: times (warm-up on one batch), agreement, optional profile."""
    models = build_models(args.archs, device, args.seed)
    x, y = images.to(device), labels.to(device)
    bs = args.batch_size

    def pipeline(name: str, n: int) -> Callable[[], Preds]:
        return lambda: RUNNERS[name](models, x[:n], y[:n], args.eps, bs)

    timings = time_round_robin({p: pipeline(p, len(x)) for p in PIPELINES}, device, args.repeats,
                               warm_up={p: pipeline(p, bs) for p in PIPELINES})
    best, median = timings.best, timings.median
    rows = {p: {"seconds_best": best[p], "seconds_median": median[p], "seconds_all": timings.seconds[p],
                "images_per_second": len(x) / best[p], "x_harness": best[p] / best["harness"],
                "x_floor": best[p] / best["floor"]}
            for p in PIPELINES}
    outputs = timings.outputs
    agree = {p: agreement(outputs["harness"], outputs[p]) for p in PIPELINES if p != "harness"}
    pixels = pixel_agreement(models, x[:bs], y[:bs], args.eps)
    profile = profile_pipelines(models, x, y, args, device) if args.profile else None
    return {"device": str(device), "machine": machine_description(device), "pipelines": rows,
            "agreement": agree, "pixels": pixels, "profile": profile}


def profile_pipelines(models: dict[str, nn.Module], x: torch.Tensor, y: torch.Tensor, args: argparse.Namespace,
                      device: torch.device) -> dict[str, str]:
    """torch.profiler tables (top ops by self time) of one run of every pipeline."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    tables = {}
    for name in PIPELINES:
        with profile(activities=activities) as prof:
            RUNNERS[name](models, x, y, args.eps, args.batch_size)
            sync(device)
        tables[name] = prof.key_averages().table(sort_by=key, row_limit=args.profile_rows)
    return tables


# ----------------------------------------------------------------------------- output
def format_table(results: list[dict[str, Any]]) -> str:
    header = f"{'pipeline':<13} {'device':<6} {'images/s':>9} {'s best':>8} {'s median':>9} {'x harness':>10} {'x floor':>8}"
    rows = []
    for res in results:
        for p in PIPELINES:
            r = res["pipelines"][p]
            rows.append(f"{p:<13} {res['device']:<6} {r['images_per_second']:>9.1f} {r['seconds_best']:>8.3f} "
                        f"{r['seconds_median']:>9.3f} {r['x_harness']:>10.2f} {r['x_floor']:>8.2f}")
    return rule_table(header, rows)


def format_agreement(res: dict[str, Any], torchattacks_min: float) -> tuple[list[str], bool]:
    lines, ok = [], True
    for p, a in res["agreement"].items():
        exact = a["predictions_equal"] == a["predictions"]
        # foolbox and the floor compute the same float ops as the harness: demand identity;
        # torchattacks goes through [0, 1] and back, so its inputs differ in the last bits.
        passed = exact or (p == "torchattacks" and a["image_fraction"] >= torchattacks_min)
        ok &= passed
        verdict = "identical" if exact else f"{a['predictions'] - a['predictions_equal']} of {a['predictions']} differ"
        lines.append(f"  {p:<13} vs harness on {res['device']}: adversarial predictions {a['adv_fraction']:.4%} equal, "
                     f"clean {a['clean_fraction']:.4%}, images with every prediction equal {a['image_fraction']:.4%} "
                     f"({verdict}) {'PASS' if passed else 'FAIL'}")
    for lib, px in res["pixels"].items():
        lines.append(f"  {lib:<13} adversarial images vs our FGSM (first batch): max |diff| {px['max_abs_diff']:.3g}, "
                     f"{px['pixels_identical']:.4%} of pixels bit-identical")
    return lines, ok


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000, help="images (the same images on every device)")
    ap.add_argument("--batch-size", type=int, default=500)
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per pipeline; the table shows the best")
    ap.add_argument("--archs", default="vanilla,resnet32", help="comma-separated architectures, one model each")
    ap.add_argument("--eps", type=float, default=0.125, help="FGSM eps in [0, 1] pixel units")
    ap.add_argument("--device", choices=("cpu", "cuda", "all"), default="all",
                    help="all = CPU, and CUDA when torch sees a GPU")
    ap.add_argument("--data-dir", default=None, help=f"Fashion-MNIST folder (default {FASHION_DIR})")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, help="write every number (and every repeat's time) here")
    ap.add_argument("--profile", action="store_true", help="also print torch.profiler top ops of one run of each pipeline")
    ap.add_argument("--profile-rows", type=int, default=12)
    ap.add_argument("--torchattacks-min-agreement", type=float, default=0.99,
                    help="least fraction of images on which torchattacks must agree with the harness")
    args = ap.parse_args(argv)
    args.archs = [a.strip() for a in args.archs.split(",") if a.strip()]
    return args


def print_header(args: argparse.Namespace, source: str) -> None:
    k = len(args.archs)
    print(f"cross-evaluation throughput: {k} models ({', '.join(args.archs)}, random weights), FGSM eps {args.eps} "
          f"pixel units (step {eps_to_model(args.eps)} in [-1, 1] model space), {args.n} images of {SHAPE}, "
          f"batch {args.batch_size}")
    print(f"data: {source}; {runtime_note()}; best of {args.repeats} repeats after 1 warm-up batch")
    print(f"per batch: harness and floor do {k} fwd+input-bwd and {k * k} forwards; the library loops also do "
          f"{k} clean forwards (and foolbox one more forward per attack for its success flag)")


def print_verdicts(results: list[dict[str, Any]], torchattacks_min: float) -> tuple[bool, list[tuple[str, str]]]:
    """Print the agreement lines and both verdicts; (agreement passed, (device, library) pairs
    where the harness was slower)."""
    print("agreement (predictions of every pipeline vs the harness):")
    all_ok = True
    for res in results:
        lines, ok = format_agreement(res, torchattacks_min)
        all_ok &= ok
        print("\n".join(lines))
    print(f"agreement check: {'PASSED' if all_ok else 'FAILED'}")
    slower = [(r["device"], p) for r in results for p in ("foolbox", "torchattacks") if r["pipelines"][p]["x_harness"] < 1.0]
    if slower:
        print("requirement NOT met: the harness is slower than " + ", ".join(f"{p} on {d}" for d, p in slower)
              + " (run with --profile to see where the time goes)")
    else:
        print("requirement met: the harness is not slower than either library pipeline")
    return all_ok, slower


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    devices = devices_to_measure(args.device)
    images, labels, source = load_images(args.n, args.data_dir, args.seed)
    print_header(args, source)
    start = time.perf_counter()
    results = []
    for device in devices:
        t0 = time.perf_counter()
        results.append(time_device(device, args, images, labels))
        results[-1]["wall_seconds"] = time.perf_counter() - t0
        print(f"  {device}: {results[-1]['machine']}, {results[-1]['wall_seconds']:.1f} s including warm-up and checks")
    print()
    print(format_table(results))
    print()
    all_ok, slower = print_verdicts(results, args.torchattacks_min_agreement)
    for res in results:
        for name, table in (res["profile"] or {}).items():
            print(f"\nprofile of {name} on {res['device']}:\n{table}")
    total = time.perf_counter() - start
    print(total_line(total))
    report = {"config": config_record(args), "data": source, "torch": torch.__version__,
              "threads": torch.get_num_threads(), "environment": environment_record(devices),
              "results": results, "agreement_passed": all_ok, "harness_not_slower": not slower,
              "total_seconds": total}
    write_json(args.json, report)
    return report


if __name__ == "__main__":
    run_main(main)
