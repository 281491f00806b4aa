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
stream), start from the same weights, and are timed round-robin, best of --repeats.
"x floor speed" = floor seconds / trainer seconds (the aim: >= 0.91, i.e. within 1.1x).
The agreement column is the largest weight difference after one pass from the same start
(TRADES and Fast-AT compute the same thing; PGD-AT's floor trains on the last iterate, the
trainer on the best, so theirs differ by design).

    python -m benchmarks.defence_floor --device cpu --train-limit 500 --repeats 3
"""
from __future__ import annotations

import argparse
import copy
import tempfile
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from benchmarks.common import FASHION_DIR, load_fashion_mnist, rule_table, run_main, runtime_note, time_round_robin
from benchmarks.train_floor import max_weight_diff, trainer_batches, twin
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


def bare_ascent(model: Classifier, x: torch.Tensor, start: torch.Tensor, loss_of: Any, radius: float, step: float,
                steps: int) -> torch.Tensor:
    low, high = (x - radius).clamp(min=MODEL_LOW), (x + radius).clamp(max=MODEL_HIGH)
    current = start
    for _ in range(steps):
        current = current.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(loss_of(model(current)), current)
        current = torch.min(torch.max(current.detach() + step * grad.sign(), low), high)
    return current.detach()


def floor_epoch(model: Classifier, optimizer: torch.optim.Optimizer, batches: list[Batch], starts: list[torch.Tensor],
                config: TrainConfig) -> None:
    method: Any = config.training_method
    radius = eps_to_model(method.eps)
    for b, noise in zip(batches, starts):
        x, y = b.pos, b.labels
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        if config.method == "trades":
            with torch.no_grad():
                probs = F.softmax(model(x), 1)
            start = (x + MODEL_SCALE * 0.001 * noise).clamp(MODEL_LOW, MODEL_HIGH)
            adv = bare_ascent(model, x, start, lambda z, probs=probs: F.kl_div(F.log_softmax(z, 1), probs, reduction="sum"),
                              radius, eps_to_model(2.5 * method.eps / method.steps), method.steps)
        else:
            low, high = (x - radius).clamp(min=MODEL_LOW), (x + radius).clamp(max=MODEL_HIGH)
            start = torch.min(torch.max(x + (2 * noise - 1) * radius, low), high)
            steps, step = (1, method.step_factor * radius) if config.method == "fast-at" else \
                (method.steps, eps_to_model(2.5 * method.eps / method.steps))
            adv = bare_ascent(model, x, start, lambda z, y=y: F.cross_entropy(z, y, reduction="sum"), radius, step, steps)
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
        trainer.model.load_state_dict(reference)
        trainer.rng.set_state(rng_state)
        trainer.classification_pass()

    def floor_pass() -> None:
        model.load_state_dict(reference)
        floor_epoch(model, optimizer, batches, starts, config)

    timings = time_round_robin({"trainer": trainer_pass, "floor": floor_pass}, device, repeats)
    best = timings.best
    forward, backward = trainer.passes.take()
    return {"method": method, "trainer_s": best["trainer"], "floor_s": best["floor"],
            "x_floor": best["floor"] / best["trainer"], "weight_diff": diff, "images": len(data.train_images),
            # the pass counter saw the agreement pass, the warm-up and the repeats
            "passes_per_image": (forward + backward) / ((repeats + 2) * len(data.train_images))}


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--data-dir", default=None, help=f"Fashion-MNIST IDX folder [default: {FASHION_DIR}, else digits]")
    ap.add_argument("--train-limit", type=int, default=500)
    ap.add_argument("--eps", type=float, default=1 / 32, help="training eps, [0, 1] pixel units")
    ap.add_argument("--steps", type=int, default=10, help="inner steps K of PGD-AT and TRADES")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--methods", default=",".join(METHODS))
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    dataset, source = load_fashion_mnist(args.data_dir, "digits") or (load_dataset("digits"), "embedded")
    data = make_train_data(dataset, 100, 0, args.train_limit, device)
    print(f"defences at their floor: {dataset.name} ({source}), {len(data.train_images)} images in batches of 100, "
          f"eps {args.eps:g}, K = {args.steps}; {runtime_note()}")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for method in [m.strip() for m in args.methods.split(",") if m.strip()]:
            results.append(measure(method, data, device, args.eps, args.steps, args.repeats, Path(tmp)))
    header = f"{'method':<8} {'trainer s':>9} {'floor s':>8} {'x floor speed':>13} {'passes/image':>12} {'weight diff':>11}"
    rows = [f"{r['method']:<8} {r['trainer_s']:>9.3f} {r['floor_s']:>8.3f} {r['x_floor']:>13.2f} "
            f"{r['passes_per_image']:>12.1f} {r['weight_diff']:>11.2g}" for r in results]
    print(rule_table(header, rows, indent="  "))
    return results


if __name__ == "__main__":
    run_main(main)
