"""Unsupervised WINN (`winn-gen`): one critic that is both the discriminator and the generator.

Schedule (WINN paper section 5.1 and the official 64x64 notebook; docs/generative.md): K cascades of
I iterations with ONE critic trained on throughout and a checkpoint (`cascade-k.pt`) at the end of
each cascade. Iteration i (from 0) of a cascade:

1. critic step: k passes over min(i + 1, growth) * P positives (a fresh random subset of the
   training images) and as many pseudo-negatives drawn from ALL negatives so far; each batch holds
   batch_size / 2 of each, the loss mean f(neg) - mean f(pos) + lambda * GP, Adam (critic_lr,
   betas of the run: paper (0, 0.9));
2. synthesis step: M new negatives (the cascade's last iteration: M_last), in batches of
   batch_size, each a fresh Adam (ascent_lr, (ascent_beta1, ascent_beta2)) on the images
   maximising mean f, clipped to [-1, 1], stopping once the batch's mean score reaches a threshold
   drawn from U[min, max] of the per-batch mean positive scores of the last critic pass, or after
   ascent_max_steps. Starts: cascade 1 from the Appendix D noise network's images, cascade c > 1
   from the last iteration's negatives of cascade c - 1.

Sampling (training/generative/sampling.py) runs noise-network starts through the cascade
checkpoints in turn, each with the threshold range its critic recorded."""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from winn_robust import distributed
from winn_robust.models import build_model
from winn_robust.models.noise_network import NoiseNetwork
from winn_robust.training.generative.base import GenerativeMethod, Learner, LearnerSetup, optimizer_step
from winn_robust.training.generative.critic import AscentSettings, critic_loss, critic_scores, interpolation_weights, synthesize_from
from winn_robust.training.methods.base import check_positive
from winn_robust.training.parallel import RankSlice

# Datasets small enough for a CPU get a smaller schedule of the same procedure (docs/generative.md):
# scikit-learn's digits (1,437 images of 8x8) trains with these in a few minutes on one core.
SMALL_SCHEDULES: dict[str, dict[str, Any]] = {
    "digits": {"cascades": 2, "iterations": 20, "positives": 250, "negatives": 250, "last_negatives": 1000,
               "initial_negatives": 1000, "ascent_max_steps": 500},
}


@dataclass(frozen=True)
class WinnGen(GenerativeMethod):
    """Unsupervised WINN; `cascades` 1 is WINN-single. None = the dataset's default (the paper's
    schedule, or SMALL_SCHEDULES for the embedded digits)."""
    name: ClassVar[str] = "winn-gen"
    summary: ClassVar[str] = "unsupervised WINN: a critic trained on images vs its own syntheses (a generator)"

    cascades: int | None = None
    iterations: int | None = None
    critic_passes: int = 3
    positives: int | None = None
    growth: int = 5
    negatives: int | None = None
    last_negatives: int | None = None
    initial_negatives: int | None = None
    critic_lr: float = 1e-4
    gp_lambda: float = 10.0
    ascent_lr: float = 0.01
    ascent_beta1: float = 0.9
    ascent_beta2: float = 0.999
    ascent_max_steps: int | None = None

    PAPER: ClassVar[dict[str, Any]] = {"cascades": 4, "iterations": 100, "positives": 1000, "negatives": 1000,
                                      "last_negatives": 10000, "initial_negatives": 10000, "ascent_max_steps": 2000}

    def validate(self) -> None:
        for name in ("cascades", "iterations", "critic_passes", "positives", "growth", "negatives", "last_negatives",
                     "initial_negatives", "critic_lr", "ascent_lr", "ascent_max_steps"):
            value = getattr(self, name)
            if value is not None:
                check_positive(name, value)
        if self.gp_lambda < 0:
            from winn_robust.errors import SettingError

            raise SettingError("gp_lambda", f"must be >= 0, got {self.gp_lambda}", method_setting=True)
        for name in ("ascent_beta1", "ascent_beta2"):
            if not 0.0 <= getattr(self, name) < 1.0:
                from winn_robust.errors import SettingError

                raise SettingError(name, f"must be in [0, 1), got {getattr(self, name)}", method_setting=True)

    @property
    def ascent(self) -> AscentSettings:
        return AscentSettings(self.ascent_lr, (self.ascent_beta1, self.ascent_beta2), int(self.ascent_max_steps or 2000))

    def resolved_for(self, dataset: str) -> WinnGen:
        """Unset schedule settings filled from the dataset's default schedule."""
        defaults = {**self.PAPER, **SMALL_SCHEDULES.get(dataset, {})}
        return dataclasses.replace(self, **{k: v for k, v in defaults.items() if getattr(self, k) is None})

    def learner(self, setup: LearnerSetup) -> WinnGenLearner:
        return WinnGenLearner(self.resolved_for(setup.config.data), setup)

    def sample(self, run: Any, count: int, seed: int, rng: torch.Generator, device: torch.device, *,
               from_critic: bool = False, progress: bool = False) -> torch.Tensor:
        """Noise-network starts (the sample seed draws the network and its noise) run through the
        cascade checkpoints in turn, each stage with the threshold range its critic recorded; a run
        stopped before its first cascade ended samples its last.pt's critic."""
        shape = run.image_shape
        stages = [run.folder / f"cascade-{k}.pt" for k in range(1, int(self.cascades or 1) + 1)]
        stages = [p for p in stages if p.is_file()] or [run.folder / "last.pt"]
        noise = NoiseNetwork(shape, generator=torch.Generator().manual_seed(seed)).to(device)
        images = noise.sample(count, rng)
        batch = int(run.meta.hparams.get("batch_size", 100))
        for index, file in enumerate(stages):
            critic = build_model(run.meta.arch, shape, 1)
            meta = run.load_networks(file, {"critic": critic}, device)
            low, high = meta.extra.get("generative", {}).get("threshold_range", (0.0, 0.0))
            images, _ = synthesize_from(critic_scores(critic), critic, images, count, (float(low), float(high)),
                                        self.ascent, batch, rng, progress=progress,
                                        desc=f"stage {index + 1}/{len(stages)}")
        return images


class WinnGenLearner(Learner):
    columns: ClassVar[tuple[str, ...]] = (
        "cascade", "loss", "wasserstein_estimate", "gradient_penalty", "f_pos_mean", "f_neg_mean", "threshold_low",
        "threshold_high", "synthesis_steps_mean", "synthesis_steps_max", "synthesis_unconverged", "pool_size",
        "seconds_critic", "seconds_synthesis")

    def __init__(self, method: WinnGen, setup: LearnerSetup) -> None:
        self.method = method
        self.setup = setup
        cfg = setup.config
        assert method.cascades and method.iterations and method.initial_negatives
        self.images = setup.images
        shape = tuple(self.images.shape[1:])
        self.critic = build_model(cfg.arch, shape, 1).to(setup.device)  # type: ignore[arg-type]
        self.f = critic_scores(self.critic)
        self.modules = {"critic": self.critic}
        self.optimizers = {"critic": torch.optim.Adam(self.critic.parameters(), lr=method.critic_lr,
                                                      betas=(cfg.beta1, cfg.beta2))}
        noise = NoiseNetwork(shape, generator=torch.Generator().manual_seed(cfg.seed)).to(setup.device)  # type: ignore[arg-type]
        initial = noise.sample(method.initial_negatives, setup.rng)
        self.parts: list[torch.Tensor] = [initial]   # part t = the negatives iteration t added (0: the starts)
        self.pool = initial
        self.unsaved: list[torch.Tensor] = [initial]
        self.done = 0
        self.threshold_range = (0.0, 0.0)
        self.cascade_thresholds: list[list[float]] = []

    # ---- schedule ---------------------------------------------------------------------------
    @property
    def total_iterations(self) -> int:
        return need(self.method.cascades) * need(self.method.iterations)

    def position(self, iteration: int) -> tuple[int, int]:
        """(cascade from 0, iteration within it from 0) of global iteration `iteration` (from 1)."""
        return divmod(iteration - 1, need(self.method.iterations))

    def starts(self, cascade: int) -> torch.Tensor:
        """Where cascade `cascade`'s syntheses start: the noise images, or the previous cascade's last."""
        return self.parts[cascade * need(self.method.iterations)]

    # ---- one iteration ---------------------------------------------------------------------------
    def iterate(self, iteration: int) -> dict[str, float]:
        import time

        cascade, within = self.position(iteration)
        t0 = time.perf_counter()
        row: dict[str, float] = {"cascade": cascade + 1, **self.critic_step(within)}
        t1 = time.perf_counter()
        last = within == need(self.method.iterations) - 1
        count = need(self.method.last_negatives if last else self.method.negatives)
        new, stats = self.synthesize(self.starts(cascade), count, f"iteration {iteration} synthesize")
        self.parts.append(new)
        self.unsaved.append(new)
        self.pool = torch.cat([self.pool, new])
        if last:
            self.cascade_thresholds.append(list(self.threshold_range))
        self.done = iteration
        row.update(stats, pool_size=len(self.pool), seconds_critic=t1 - t0, seconds_synthesis=time.perf_counter() - t1)
        return row

    def critic_step(self, within: int) -> dict[str, float]:
        """k passes of critic updates. Under torchrun each rank computes a global batch's loss on
        its rows of it (every rank drew the whole batch's indices and coefficients) and the
        gradients are averaged; the logged means and the per-batch mean positive scores (the
        thresholds) are those of the global batches."""
        method, cfg, rng, world = self.method, self.setup.config, self.setup.rng, self.setup.world
        half = max(1, cfg.batch_size // 2)
        n = min(min(within + 1, method.growth) * need(method.positives), len(self.images))
        device = self.images.device
        pos_index = torch.randperm(len(self.images), generator=rng, device=device)[:n]
        neg_index = torch.randint(0, len(self.pool), (n,), generator=rng, device=device)
        self.critic.train()
        sums = torch.zeros(5, device=device)
        batches = 0
        for p in range(method.critic_passes):
            order = torch.randperm(n, generator=rng, device=device)
            f_means = []
            for start in range(0, n, half):
                rows = order[start:start + half]
                a = interpolation_weights(len(rows), self.images, rng)
                part = RankSlice.of(len(rows), world)
                rows, a = rows[part.rows], a[part.rows]
                pos, neg = self.images[pos_index[rows]], self.pool[neg_index[rows]]
                terms = critic_loss(self.f, pos, neg, a, method.gp_lambda)
                optimizer_step(self.optimizers["critic"],
                               terms.loss if part.loss_scale == 1.0 else terms.loss * part.loss_scale)
                f_neg = terms.f_pos_mean - terms.wasserstein
                stacked = torch.stack([terms.loss.detach(), terms.wasserstein, terms.penalty, terms.f_pos_mean, f_neg])
                f_pos = terms.f_pos_mean
                if world.distributed:  # this rank's share of the global batch's means
                    stacked, f_pos = stacked * part.share, f_pos * part.share
                sums += stacked
                batches += 1
                f_means.append(f_pos)
            if p == method.critic_passes - 1:
                stacked = distributed.all_reduce_sum(torch.stack(f_means))
                self.threshold_range = (float(stacked.min()), float(stacked.max()))
        means = (distributed.all_reduce_sum(sums) / max(1, batches)).tolist()
        check_finite_row(means)
        return {"loss": means[0], "wasserstein_estimate": means[1], "gradient_penalty": means[2],
                "f_pos_mean": means[3], "f_neg_mean": means[4], "threshold_low": self.threshold_range[0],
                "threshold_high": self.threshold_range[1]}

    def synthesize(self, starts: torch.Tensor, count: int, desc: str) -> tuple[torch.Tensor, dict[str, float]]:
        """`count` new negatives from randomly chosen starts, in batches of batch_size."""
        new, steps = synthesize_from(self.f, self.critic, starts, count, self.threshold_range, self.method.ascent,
                                     self.setup.config.batch_size, self.setup.rng,
                                     progress=self.setup.progress, desc=desc, world=self.setup.world)
        cap = need(self.method.ascent_max_steps)
        return new, {"synthesis_steps_mean": sum(steps) / len(steps), "synthesis_steps_max": max(steps),
                     "synthesis_unconverged": sum(1 for s in steps if s >= cap)}

    # ---- state -----------------------------------------------------------------------------------
    def new_parts(self) -> dict[str, list[torch.Tensor]]:
        parts, self.unsaved = self.unsaved, []
        return {"negatives": parts}

    def restore_parts(self, parts: Mapping[str, list[torch.Tensor]]) -> None:
        self.parts = [p.to(self.images.device) for p in parts.get("negatives", [])]
        self.pool = torch.cat(self.parts)
        self.unsaved = []

    def state(self) -> dict[str, Any]:
        return {"threshold_range": list(self.threshold_range), "cascade_thresholds": self.cascade_thresholds,
                "done": self.done}

    def load_state(self, state: Mapping[str, Any]) -> None:
        low, high = state["threshold_range"]
        self.threshold_range = (float(low), float(high))
        self.cascade_thresholds = [list(map(float, r)) for r in state["cascade_thresholds"]]
        self.done = int(state["done"])

    def milestone(self, iteration: int) -> str | None:
        cascade, within = self.position(iteration)
        return f"cascade-{cascade + 1}" if within == need(self.method.iterations) - 1 else None

    def summary(self) -> dict[str, Any]:
        return {"threshold_range": list(self.threshold_range), "cascade_thresholds": self.cascade_thresholds,
                "cascades": self.method.cascades}

    def preview(self, n: int) -> torch.Tensor | None:
        return self.parts[-1][:n] if len(self.parts) > 1 else None


def need(value: int | None) -> int:
    """A schedule setting after `resolved_for` filled it in."""
    assert value is not None, "the method's schedule was not resolved for the dataset"
    return int(value)


def check_finite_row(values: list[float]) -> None:
    import math

    if not all(math.isfinite(v) and abs(v) <= 1e8 for v in values):
        from winn_robust.training.divergence import TrainingDiverged

        raise TrainingDiverged(f"training diverged: the critic's loss terms became {values}; lower `critic_lr` or "
                               "raise `gp_lambda`", mentions=("critic_lr", "gp_lambda"))
