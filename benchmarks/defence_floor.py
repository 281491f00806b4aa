"""The reference defences' training step against its floor: PGD-AT, TRADES and Fast-AT through the
trainer (its classification pass: the method's loss, our PGD loop, the pass counter, the logged
terms, the finiteness checks) against the same epoch done bare.

Floor (the bare passes a defence must make per batch, as train_floor.py's is for WINN):
  pgd-at   K forward + input-backward sign steps from the uniform start, then the training
           forward, backward and Adam step: K + 1 forward/backward passes. (The trainer's PGD is
           the harness's, which also evaluates the last iterate to keep each image's most
           damaging one: one forward more.)
  trades   the clean softmax (one forward without gradients), K sign steps on the KL, then one
           training forward of clean and adversarial images together, backward and Adam.
  fast-at  one sign step from the uniform start, then the training step: 2 passes.
Both sides see the same batches and the same random starts (drawn from a copy of the trainer's
stream), start from the same weights, and are timed round-robin, best of --repeats. The inner
steps are bare (benchmarks.common.bare_ascent) with our own uniform start and sign step
(winn_robust.attacks.pgd.uniform_start, linf_step), so the iterates are the trainer's.
"x floor speed" = floor seconds / trainer seconds (the aim: >= 0.91, i.e. within 1.1x).
The agreement column is the largest weight difference after one pass from the same start
(TRADES and Fast-AT compute the same thing; PGD-AT's floor trains on the last iterate, the
trainer on the best, so theirs differ by design).

    python -m benchmarks.defence_floor --device cpu --train-limit 500 --repeats 3 --json defences.json
"""
from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from benchmarks.common import (
    FASHION_DIR,
    Column,
    Pipeline,
    add_json_option,
    bare_ascent,
    finish,
    load_fashion_mnist,
    run_main,
    runtime_note,
    table,
    time_pipelines,
)
from benchmarks.train_floor import FLOOR_COLUMNS, X_FLOOR_SPEED, max_weight_diff, reset, trainer_batches, trainer_vs_floor, twin
from winn_robust.attacks.pgd import linf_step, uniform_start
from winn_robust.data import load_dataset
from winn_robust.models.base import Classifier
from winn_robust.training import TrainConfig
from winn_robust.training.inputs import make_train_data
from winn_robust.training.trainer import Batch, Trainer
from winn_robust.units import MODEL_HIGH, MODEL_LOW, MODEL_SCALE, eps_to_model

METHODS = ("pgd-at", "trades", "fast-at")


def starts_for(trainer: Trainer, batches: list[Batch], method: str) -> list[torch.Tensor]:
    """The random start of every batch, as the trainer's methods draw them (after the permutation)."""
    state = trainer.rng.get_state()
    torch.randperm(len(trainer.data.train_images), generator=trainer.rng, device=trainer.device)
    draw = torch.randn if method == "trades" else torch.rand
    starts = [draw(b.pos.shape, generator=trainer.rng, device=trainer.device) for b in batches]
    trainer.rng.set_state(state)
    return starts


def floor_epoch(model: Classifier, optimizer: torch.optim.Optimizer, batches: list[Batch], starts: list[torch.Tensor],
                config: TrainConfig) -> None:
    """One epoch of the defence's minimum passes per batch (the module docstring)."""
    method: Any = config.training_method
    radius = eps_to_model(method.eps)
    for b, noise in zip(batches, starts):
        x, y = b.pos, b.labels
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        steps, step = (1, method.step_factor * radius) if config.method == "fast-at" else \
            (method.steps, eps_to_model(2.5 * method.eps / method.steps))
        if config.method == "trades":
            with torch.no_grad():
                probs = F.softmax(model(x), 1)
            start = (x + MODEL_SCALE * 0.001 * noise).clamp(MODEL_LOW, MODEL_HIGH)
            adv = bare_ascent(model, start, lambda z, probs=probs: F.kl_div(F.log_softmax(z, 1), probs, reduction="sum"),
                              linf_step(x, radius, step), steps)
        else:
            adv = bare_ascent(model, uniform_start(x, radius, noise), lambda z, y=y: F.cross_entropy(z, y, reduction="sum"),
                              linf_step(x, radius, step), steps)
        for p in model.parameters():
            p.requires_grad_(True)
        model.train()
        if config.method == "trades":
            logits = model(torch.cat([x, adv]))
            n = len(x)
            loss = F.cross_entropy(logits[:n], y) + method.beta * F.kl_div(
                F.log_softmax(logits[n:], 1), F.softmax(logits[:n], 1), reduction="batchmean")
        else:
            loss = F.cross_entropy(model(adv), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def measure(method: str, data: Any, device: torch.device, eps: float, steps: int, repeats: int, out: Path) -> dict[str, Any]:
    options: dict[str, Any] = {"eps": eps} if method == "fast-at" else {"eps": eps, "steps": steps}
    config = TrainConfig(method=method, method_options=options, data=data.dataset, batch_size=100, epochs=2)
    trainer = Trainer(config, data, out / method, device, progress=False)
    trainer.epoch = 1
    batches = trainer_batches(trainer)
    starts = starts_for(trainer, batches, method)
    reference = copy.deepcopy(trainer.model.state_dict())
    rng_state = trainer.rng.get_state()
    model, optimizer = twin(trainer)
    check_model, check_optimizer = twin(trainer)
    trainer.classification_pass()
    floor_epoch(check_model, check_optimizer, batches, starts, config)
    diff = max_weight_diff(trainer.model, check_model)

    def trainer_pass() -> None:
        reset(trainer, reference, rng_state)
        trainer.classification_pass()

    def floor_pass() -> None:
        model.load_state_dict(reference)
        floor_epoch(model, optimizer, batches, starts, config)

    timings = time_pipelines([Pipeline("trainer", trainer_pass), Pipeline("floor", floor_pass)], device, repeats)
    best = timings.best
    forward, backward = trainer.passes.take()
    return {"method": method, "trainer_s": best["trainer"], "floor_s": best["floor"],
            "x_floor": trainer_vs_floor(best["trainer"], best["floor"]), "weight_diff": diff,
            "images": len(data.train_images), "seconds_median": timings.median, "seconds_all": timings.seconds,
            # the pass counter saw the agreement pass, the warm-up and the repeats
            "passes_per_image": (forward + backward) / ((repeats + 2) * len(data.train_images))}


def format_results(results: list[dict[str, Any]]) -> str:
    columns = [Column("method", 8, align="<"), *FLOOR_COLUMNS, X_FLOOR_SPEED, Column("passes/image", 12, ".1f"),
               Column("weight diff", 11, ".2g")]
    rows = [[r["method"], r["trainer_s"], r["floor_s"], r["x_floor"], r["passes_per_image"], r["weight_diff"]]
            for r in results]
    return table(columns, rows, indent="  ")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--data-dir", default=None, help=f"Fashion-MNIST IDX folder [default: {FASHION_DIR}, else digits]")
    ap.add_argument("--train-limit", type=int, default=500)
    ap.add_argument("--eps", type=float, default=1 / 32, help="training eps, [0, 1] pixel units")
    ap.add_argument("--steps", type=int, default=10, help="inner steps K of PGD-AT and TRADES")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--methods", default=",".join(METHODS))
    add_json_option(ap)
    args = ap.parse_args(argv)
    begin = time.perf_counter()
    device = torch.device(args.device)
    dataset, source = load_fashion_mnist(args.data_dir, "digits") or (load_dataset("digits"), "embedded")
    data = make_train_data(dataset, 100, 0, args.train_limit, device)
    print(f"defences at their floor: {dataset.name} ({source}), {len(data.train_images)} images in batches of 100, "
          f"eps {args.eps:g}, K = {args.steps}; {runtime_note()}")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for method in [m.strip() for m in args.methods.split(",") if m.strip()]:
            results.append(measure(method, data, device, args.eps, args.steps, args.repeats, Path(tmp)))
    print(format_results(results))
    return finish(args, begin, [device], {"dataset": dataset.name, "results": results})


if __name__ == "__main__":
    run_main(main)
