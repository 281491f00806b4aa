"""Train a generative method on a 2-D toy mixture and follow its samples row by row (the iWGAN
paper's Figure 2: the duality gap beside the samples over time).

    python examples/iwgan_toy_track.py --method iwgan --data ring8 --out runs/ring8-iwgan
    python examples/iwgan_toy_track.py --method wgan-gp --data ring8 --out runs/ring8-wgan

After every metrics row it draws `--count` samples from the run's last.pt (seed `--sample-seed`)
and scores them with the mixture's metrics (data.ToyMixture.coverage: modes covered, the share of
samples within 3 sd of a mode). Writes OUT/track.csv (the row's metrics.csv values plus those),
OUT/track.png (gap and high-quality share against the row, and scatter plots of the samples at
four rows) and the run itself in OUT/run. Extra method settings: --set NAME=VALUE (repeat)."""
from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import torch

from winn_robust.data import toy_mixture
from winn_robust.storage import atomic_savefig
from winn_robust.training import TrainConfig
from winn_robust.training.generative.sampling import open_run, sample_images
from winn_robust.training.generative.trainer import train_generative
from winn_robust.training.inputs import load_train_data


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--method", default="iwgan")
    parser.add_argument("--data", default="ring8")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--sample-seed", type=int, default=1)
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args()
    torch.set_num_threads(1)
    options = dict(item.split("=", 1) for item in args.set)
    config = TrainConfig(method=args.method, arch="mlp", data=args.data, seed=args.seed, batch_size=args.batch_size,
                         method_options=options)
    data = load_train_data(config.data, None, False, config.val_size, config.seed, None, torch.device("cpu"))
    mixture = toy_mixture(args.data)
    run_dir = args.out / "run"
    args.out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, float]] = []
    snapshots: dict[int, torch.Tensor] = {}
    started = time.perf_counter()

    def follow(iteration: int, row: dict) -> None:
        points = sample_images(open_run(run_dir), args.count, args.sample_seed, torch.device("cpu"))
        snapshots[iteration] = points
        record = {k: v for k, v in row.items() if k != "method"}
        record.update(mixture.coverage(points), wall_seconds=time.perf_counter() - started)
        rows.append(record)
        print(f"row {iteration}: gap {row.get('duality_gap', float('nan')):.4g}, modes {record['modes_covered']}/"
              f"{record['modes']}, high-quality {record['high_quality_share']:.3f}", file=sys.stderr, flush=True)

    train_generative(config, data, run_dir, progress=False, on_epoch_end=follow)
    fields = list(rows[0])
    with open(args.out / "track.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    plot(rows, snapshots, mixture, args.method, args.out / "track.png")
    print(f"{args.out / 'track.csv'} and {args.out / 'track.png'} written", file=sys.stderr)
    return 0


def plot(rows: list[dict], snapshots: dict[int, torch.Tensor], mixture, method: str, out: Path) -> Path:
    from matplotlib.figure import Figure

    picks = sorted(snapshots)
    chosen = sorted({picks[0], picks[len(picks) // 3], picks[2 * len(picks) // 3], picks[-1]})
    fig = Figure(figsize=(3.2 * (len(chosen) + 1), 3.4))
    ax = fig.add_subplot(1, len(chosen) + 1, 1)
    epochs = [r["epoch"] for r in rows]
    if "duality_gap" in rows[0]:
        ax.plot(epochs, [r["duality_gap"] for r in rows], marker="o", markersize=3, label="duality gap")
    ax.plot(epochs, [r["high_quality_share"] for r in rows], marker="s", markersize=3, label="share within 3 sd")
    ax.set_xlabel("row", fontsize=8)
    ax.legend(fontsize=7)
    ax.set_title(f"{method} on {mixture.name}", fontsize=9)
    low, high = mixture.bounds()
    for k, row in enumerate(chosen):
        ax = fig.add_subplot(1, len(chosen) + 1, k + 2)
        xy = snapshots[row].numpy()
        ax.scatter(xy[:, 0], xy[:, 1], s=1, alpha=0.4)
        centres = mixture.centres().numpy()
        ax.scatter(centres[:, 0], centres[:, 1], s=12, marker="x", color="C3")
        ax.set_xlim(low, high)
        ax.set_ylim(low, high)
        ax.set_aspect("equal")
        match = next(r for r in rows if r["epoch"] == row)
        ax.set_title(f"row {row}: {match['modes_covered']}/{match['modes']} modes, "
                     f"{match['high_quality_share']:.2f} within 3 sd", fontsize=8)
        ax.tick_params(labelsize=6)
    fig.tight_layout()
    return atomic_savefig(fig, out, dpi=100)


if __name__ == "__main__":
    sys.exit(main())
