"""WGAN-GP (`wgan-gp`, Gulrajani et al. 2017), the GAN that unsupervised WINN is compared with.

A DCGAN-style generator G (models/dcgan.py) and a critic f (the project's architecture of the run
with one output, as winn-gen's critic; vanilla has layer norm and no batch norm, as the paper
requires of a gradient-penalty critic). One generator iteration (the paper's Algorithm 1):

1. n_critic critic steps, each on a fresh real batch (gan_batch images, epochs of a seeded
   shuffle) and gan_batch fakes G(z), z ~ N(0, I): minimise
   mean f(G(z)) - mean f(x) + gp_lambda * mean (||grad f(x_hat)|| - 1)^2 (critic.critic_loss);
2. one generator step on a fresh z: minimise -mean f(G(z)).

Both with Adam (critic_lr / generator_lr, betas (gan_beta1, gan_beta2)); the reference defaults
are n_critic 5, lambda 10, Adam 1e-4 (0.5, 0.9), batch 64, latent 128, 200,000 generator
iterations; `lr_decay` lowers both rates linearly to 0 over the run (as gan_cifar_resnet.py; off
by default, on for the iWGAN toy comparison). One row of metrics.csv (one trainer iteration, one resumable last.pt) is log_every
generator iterations.

Sampling: G on z ~ N(0, I) in eval mode (batch norm's running statistics). `--from-critic`: the
WINN synthesis procedure on the trained critic alone (Appendix D noise-network starts, Adam
ascent stopping at a threshold drawn from the range of the critic's mean scores on real batches),
the paper's Figure 3 comparison of what a WGAN-GP critic generates without its generator."""
from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from winn_robust import distributed
from winn_robust.errors import SettingError, UserError
from winn_robust.models import POINT_ARCHITECTURES, build_model
from winn_robust.models.dcgan import DCGANGenerator
from winn_robust.models.mlp import point_critic, point_generator
from winn_robust.models.noise_network import NoiseNetwork
from winn_robust.training.generative.base import GenerativeMethod, Learner, LearnerSetup, decay_rates, optimizer_step
from winn_robust.training.generative.critic import critic_loss, critic_scores, interpolation_weights, synthesize_from
from winn_robust.training.generative.winn_gen import WinnGen, check_finite_row, need
from winn_robust.training.methods.base import check_positive
from winn_robust.training.parallel import RankSlice

# The reference's schedule and learning rates (gan_mnist.py, gan_cifar.py, gan_64x64.py: ITERS =
# 200000 generator iterations, Adam 1e-4); datasets small enough for a CPU get a shorter schedule
# (docs/wgan-gp.md). On digits, 1,400 iterations at the reference's 1e-4 still give blurred blobs
# (measured: eval_digits score 2.75 after 1,500), so its schedule also raises both rates to 1e-3.
PAPER: dict[str, Any] = {"iterations": 200_000, "log_every": 100, "critic_lr": 1e-4, "generator_lr": 1e-4}
SMALL_SCHEDULES: dict[str, dict[str, Any]] = {
    "digits": {"iterations": 1400, "critic_lr": 1e-3, "generator_lr": 1e-3},
    "fashion-mnist": {"iterations": 3000},
}
# the reference's generator width DIM: 128 for CIFAR-10 (gan_cifar.py), 64 elsewhere
GENERATOR_WIDTHS: dict[str, int] = {"cifar10": 128}
DEFAULT_WIDTH = 64
# real batches whose per-batch mean critic score gives --from-critic its threshold range
THRESHOLD_BATCHES = 20


@dataclass(frozen=True)
class WGANGP(GenerativeMethod):
    """WGAN-GP; None = the dataset's default (the reference's schedule and rates, or SMALL_SCHEDULES)."""
    name: ClassVar[str] = "wgan-gp"
    summary: ClassVar[str] = "WGAN-GP: a DCGAN generator trained against a gradient-penalty critic (Gulrajani et al.)"

    iterations: int | None = None
    log_every: int | None = None
    n_critic: int = 5
    gp_lambda: float = 10.0
    critic_lr: float | None = None
    generator_lr: float | None = None
    gan_beta1: float = 0.5
    gan_beta2: float = 0.9
    gan_batch: int = 64
    latent_dim: int = 128
    generator_width: int | None = None
    lr_decay: bool = False

    def validate(self) -> None:
        for name in ("iterations", "log_every", "n_critic", "critic_lr", "generator_lr", "gan_batch", "latent_dim",
                     "generator_width"):
            value = getattr(self, name)
            if value is not None:
                check_positive(name, value)
        if not self.gp_lambda >= 0:
            raise SettingError("gp_lambda", f"must be >= 0, got {self.gp_lambda}", method_setting=True)
        for name in ("gan_beta1", "gan_beta2"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise SettingError(name, f"must be in [0, 1), got {getattr(self, name)}", method_setting=True)

    def resolved_for(self, dataset: str) -> WGANGP:
        """Unset settings filled from the dataset's defaults."""
        defaults = {**PAPER, **SMALL_SCHEDULES.get(dataset, {}),
                    "generator_width": GENERATOR_WIDTHS.get(dataset, DEFAULT_WIDTH)}
        return dataclasses.replace(self, **{k: v for k, v in defaults.items() if getattr(self, k) is None})

    def generator(self, image_shape: tuple[int, int, int], dataset: str) -> DCGANGenerator:
        resolved = self.resolved_for(dataset)
        return DCGANGenerator(image_shape, self.latent_dim, need(resolved.generator_width))

    def networks(self, arch: str, shape: tuple[int, ...], dataset: str) -> tuple[nn.Module, nn.Module]:
        """(critic, generator): the run's architecture and the DCGAN generator, or on 2-D points
        (arch mlp, the toys) the width-512 ReLU MLPs iwgan uses (models/mlp.py)."""
        if arch in POINT_ARCHITECTURES:
            return point_critic(int(shape[0])), point_generator(self.latent_dim, int(shape[0]))
        image = (int(shape[0]), int(shape[1]), int(shape[2]))
        return build_model(arch, image, 1), self.generator(image, dataset)

    def learner(self, setup: LearnerSetup) -> WGANGPLearner:
        return WGANGPLearner(self.resolved_for(setup.config.data), setup)

    def sample(self, run: Any, count: int, seed: int, rng: torch.Generator, device: torch.device, *,
               from_critic: bool = False, progress: bool = False) -> torch.Tensor:
        """The generator's images (z from `rng`), or with `from_critic` the critic's by the WINN
        procedure: noise-network starts (the seed draws the network, `rng` its noise) ascended with
        winn-gen's default synthesis settings for the dataset, each batch stopping at a threshold
        drawn from the run's recorded range."""
        critic, generator = self.networks(run.meta.arch, tuple(run.meta.image_shape), run.meta.dataset)
        meta = run.load_networks(run.folder / "last.pt", {"critic": critic, "generator": generator}, device)
        batch = int(run.meta.hparams.get("batch_size", 100))
        if run.points:
            if from_critic:
                raise UserError("`from_critic` synthesizes images; a run on 2-D points samples its generator",
                                mentions=("from_critic",))
            with torch.no_grad():
                return torch.cat([generator(torch.randn(min(500, count - s), self.latent_dim, generator=rng, device=device))
                                  for s in range(0, count, 500)])
        shape = run.image_shape
        assert isinstance(generator, DCGANGenerator)
        if not from_critic:
            return generator.sample(count, rng, batch_size=max(batch, 500))
        low, high = meta.extra.get("generative", {}).get("threshold_range", (0.0, 0.0))
        noise = NoiseNetwork(shape, generator=torch.Generator().manual_seed(seed)).to(device)
        starts = noise.sample(count, rng)
        ascent = WinnGen().resolved_for(run.meta.dataset).ascent
        images, _ = synthesize_from(critic_scores(critic), critic, starts, count, (float(low), float(high)), ascent,
                                    batch, rng, progress=progress, desc="synthesize from the critic")
        return images


class WGANGPLearner(Learner):
    columns: ClassVar[tuple[str, ...]] = (
        "generator_iterations", "wasserstein_estimate", "gradient_penalty", "critic_loss", "generator_loss",
        "f_real_mean", "f_fake_mean", "threshold_low", "threshold_high", "seconds")

    def __init__(self, method: WGANGP, setup: LearnerSetup) -> None:
        self.method, self.setup = method, setup
        cfg = setup.config
        self.images = setup.images
        critic, generator = method.networks(cfg.arch, tuple(self.images.shape[1:]), cfg.data)
        self.critic = critic.to(setup.device)
        self.f = critic_scores(self.critic)
        self.generator = generator.to(setup.device)
        self.modules = {"critic": self.critic, "generator": self.generator}
        betas = (method.gan_beta1, method.gan_beta2)
        self.optimizers = {"critic": torch.optim.Adam(self.critic.parameters(), lr=rate(method.critic_lr), betas=betas),
                           "generator": torch.optim.Adam(self.generator.parameters(), lr=rate(method.generator_lr),
                                                         betas=betas)}
        # the progress grid's fixed latent codes: from the seed, not the run's stream
        self.preview_z = torch.randn(100, method.latent_dim, generator=torch.Generator().manual_seed(cfg.seed))
        self.order = torch.randperm(len(self.images), generator=setup.rng, device=self.images.device)
        self.cursor = 0
        self.steps_done = 0
        self.threshold_range = (0.0, 0.0)

    @property
    def total_iterations(self) -> int:
        return math.ceil(need(self.method.iterations) / need(self.method.log_every))

    # ---- data --------------------------------------------------------------------------------
    def real_batch(self) -> torch.Tensor:
        """The next gan_batch training images: epochs of a seeded shuffle (a batch never spans two)."""
        size = min(self.method.gan_batch, len(self.images))
        if self.cursor + size > len(self.order):
            self.order = torch.randperm(len(self.images), generator=self.setup.rng, device=self.images.device)
            self.cursor = 0
        rows = self.order[self.cursor:self.cursor + size]
        self.cursor += size
        return self.images[rows]

    def latent(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.method.latent_dim, generator=self.setup.rng, device=self.images.device)

    # ---- one row: log_every generator iterations ---------------------------------------------------
    def iterate(self, iteration: int) -> dict[str, float]:
        started = time.perf_counter()
        method = self.method
        first = (iteration - 1) * need(method.log_every)
        count = min(need(method.log_every), need(method.iterations) - first)
        self.critic.train()
        self.generator.train()
        critic_sums = torch.zeros(5, device=self.images.device)
        generator_sum = torch.zeros((), dtype=torch.float64, device=self.images.device)
        for step in range(count):
            if method.lr_decay:
                decay_rates(self.optimizers, {"critic": rate(method.critic_lr), "generator": rate(method.generator_lr)},
                            first + step, need(method.iterations))
            for _ in range(method.n_critic):
                critic_sums += self.critic_step()
            generator_sum += self.generator_step()
        self.steps_done = first + count
        self.threshold_range = self.real_score_range()
        critic_sums, generator_sum = distributed.all_reduce_sum(critic_sums), distributed.all_reduce_sum(generator_sum)
        means = (critic_sums / (count * method.n_critic)).tolist()
        generator_mean = float(generator_sum) / count
        check_finite_row([*means, generator_mean])
        return {"generator_iterations": self.steps_done, "wasserstein_estimate": means[0], "gradient_penalty": means[1],
                "critic_loss": means[2], "generator_loss": generator_mean, "f_real_mean": means[3],
                "f_fake_mean": means[4], "threshold_low": self.threshold_range[0],
                "threshold_high": self.threshold_range[1], "seconds": time.perf_counter() - started}

    def critic_step(self) -> torch.Tensor:
        """One critic update; returns (W estimate, GP, loss, mean f(real), mean f(fake)) (under
        torchrun this rank's share of them). The generator runs on the whole global batch on every
        rank (its batch norm sees the batch one process sees); the critic on this rank's rows."""
        real = self.real_batch()
        with torch.no_grad():
            fake = self.generator(self.latent(len(real)))
        a = interpolation_weights(len(real), real, self.setup.rng)
        part = RankSlice.of(len(real), self.setup.world)
        real, fake, a = real[part.rows], fake[part.rows], a[part.rows]
        terms = critic_loss(self.f, real, fake, a, self.method.gp_lambda)
        optimizer_step(self.optimizers["critic"], terms.loss if part.loss_scale == 1.0 else terms.loss * part.loss_scale)
        stacked = torch.stack([terms.wasserstein, terms.penalty, terms.loss.detach(), terms.f_pos_mean,
                               terms.f_pos_mean - terms.wasserstein])
        return stacked * part.share if self.setup.world.distributed else stacked

    def generator_step(self) -> torch.Tensor:
        """One generator update on fresh codes (the critic's parameters get no update). Under
        torchrun every rank runs G on all the codes and the critic on its rows; the averaged
        gradients are the global batch's."""
        part = RankSlice.of(self.method.gan_batch, self.setup.world)
        for p in self.critic.parameters():
            p.requires_grad_(False)
        try:
            loss = -self.f(self.generator(self.latent(self.method.gan_batch))[part.rows]).mean()
            optimizer_step(self.optimizers["generator"], loss if part.loss_scale == 1.0 else loss * part.loss_scale)
        finally:
            for p in self.critic.parameters():
                p.requires_grad_(True)
        loss = loss.detach().double()
        return loss * part.share if self.setup.world.distributed else loss

    def real_score_range(self) -> tuple[float, float]:
        """(min, max) of the final critic's per-batch mean score over THRESHOLD_BATCHES real
        batches, in eval mode as sampling scores: the stopping thresholds of `--from-critic` (the
        critic's score level drifts during a row, so the range is taken from the critic sampling uses)."""
        index = torch.randperm(len(self.images), generator=self.setup.rng, device=self.images.device)
        size = min(self.method.gan_batch, len(self.images))
        self.critic.eval()
        try:
            with torch.no_grad():
                means = [float(self.f(self.images[index[s:s + size]]).mean())
                         for s in range(0, min(len(index), THRESHOLD_BATCHES * size), size) if s + size <= len(index)]
        finally:
            self.critic.train()
        return min(means), max(means)

    # ---- state -----------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {"order": self.order, "cursor": self.cursor, "steps_done": self.steps_done,
                "threshold_range": list(self.threshold_range)}

    def load_state(self, state: Mapping[str, Any]) -> None:
        self.order = state["order"].to(self.images.device)
        self.cursor = int(state["cursor"])
        self.steps_done = int(state["steps_done"])
        low, high = state["threshold_range"]
        self.threshold_range = (float(low), float(high))

    def summary(self) -> dict[str, Any]:
        return {"threshold_range": list(self.threshold_range), "generator_iterations": self.steps_done}

    def preview(self, n: int) -> torch.Tensor | None:
        if self.images.dim() != 4:
            return None  # points: no image grid
        was_training = self.generator.training
        self.generator.eval()
        try:
            with torch.no_grad():
                return self.generator(self.preview_z[:n].to(self.images.device))
        finally:
            self.generator.train(was_training)


def rate(value: float | None) -> float:
    """A learning rate after `resolved_for` filled it in."""
    assert value is not None, "the method's settings were not resolved for the dataset"
    return float(value)
