"""iWGAN (`iwgan`): an autoencoder WGAN for inference (Chen et al., papers/iwgan.txt).

An encoder Q, a generator G and a critic f share the primal-dual objective

    L(G, Q, f) = E ||X - G(Q(X))|| + E f(G(Q(X))) - E f(G(Z)),      Z ~ N(0, I_latent_dim)

(||.|| the Euclidean norm of the whole sample, in the models' range: [-1, 1] pixels, or the points
as they are). One outer loop of Algorithm 1 is

1. n_critic critic steps, each on a fresh batch x ~ P_X, z ~ P_Z, e ~ U[0, 1] per sample: Adam
   (critic_lr) on  mean f(G(z)) - mean f(G(Q(x))) + gp_lambda * mean (||grad f(x_hat)||_2 - 1)^2,
   x_hat = e x + (1 - e) G(z)  (minus L, plus the gradient penalty; the reconstruction term does
   not depend on f);
2. n_critic steps of G and Q together, each on a fresh batch: Adam (generator_lr) on
   L + mmd_lambda * MMD_k(Q(x), z), the unbiased U-statistic of Algorithm 1 line 14. The paper
   does not name its kernel k: we use WAE's inverse multiquadratic k(a, b) = C / (C + ||a - b||^2),
   C = 2 * latent_dim (Tolstikhin et al. 2018).

With `lr_decay` (the toys' default) both rates fall linearly to 0 over the run's outer loops.

A run has `iterations` rows (metrics.csv, resumable checkpoints), each of `steps_per_iteration`
outer loops, then an evaluation on the held-out (validation) points, none of which training
sees: the primal value L, the reconstruction error and the MMD on an evaluation batch, and the
duality gap DualGap = sup_f L(G, Q, f) - inf_{G,Q} L(G, Q, f) (eq. 4) estimated by probes:

- sup: a copy of f trained `gap_steps` (K = 10) Adam steps on L - gp_lambda * GP at the current
  G and Q; inf: copies of G and Q trained K Adam steps on L at the current f (learning rate
  gap_lr, default the training ones as set, never decayed: a probe is "one more phase of Algorithm 1", a local measure;
  inf over G at a fixed f is unbounded far from the data, where the GP does not hold f, so a long
  or fast probe measures that, not convergence);
  both on held-out batches (a fresh one per step) and both starting from the current networks;
- sup_f L is estimated by max(L(G, Q, f'), L(G, Q, f)) and inf L by min(L(G', Q', f), L(G, Q, f)),
  all on the same evaluation batch: the current networks are a candidate of either problem, so the
  estimate is >= 0 by construction and a lower bound of the true gap (probes find local optima).

Its random draws come from a stream seeded from the run's stream once per row, so a resume stays
bit-identical. `stop_gap` EPS stops training once the gap stayed below EPS for `stop_patience`
rows in a row (the paper's stopping rule; the default None runs the whole budget).

The quality score of a sample is exp(-||x - G(Q(x))||) (section 4): `quality_scores`."""
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
from winn_robust.data import is_toy
from winn_robust.errors import SettingError, UserError
from winn_robust.models import POINT_ARCHITECTURES, build_model
from winn_robust.models.base import frozen_eval
from winn_robust.models.mlp import point_critic, point_encoder, point_generator
from winn_robust.training.generative.base import GenerativeMethod, Learner, LearnerSetup, decay_rates, optimizer_step
from winn_robust.training.generative.critic import critic_scores, gradient_penalty, interpolation_weights
from winn_robust.training.methods.base import check_non_negative, check_positive
from winn_robust.training.parallel import RankSlice

NETWORKS = ("generator", "encoder", "critic")

# Defaults per dataset; None in the method means "the dataset's" (resolved_for). The toys follow
# the paper's 5.1 (latent 5) and gan_toy.py (gp_lambda 0.1), with rates 3e-4 decayed linearly to 0
# (a CPU budget of 550 loops: at 1e-4 without decay the samples stay several sd off the modes);
# MNIST-like the paper's D2 (latent 8); digits a CPU-sized schedule of the same procedure.
IMAGE_RATES: dict[str, Any] = {"gp_lambda": 10.0, "critic_lr": 1e-4, "generator_lr": 1e-4, "lr_decay": False}
TOY_SCHEDULE: dict[str, Any] = {"latent_dim": 5, "iterations": 10, "steps_per_iteration": 55, "gp_lambda": 0.1,
                                "critic_lr": 3e-4, "generator_lr": 3e-4, "lr_decay": True}
SCHEDULES: dict[str, dict[str, Any]] = {
    "digits": {"latent_dim": 8, "iterations": 15, "steps_per_iteration": 30, **IMAGE_RATES},
    "mnist": {"latent_dim": 8, "iterations": 100, "steps_per_iteration": 1000, **IMAGE_RATES},
    "fashion-mnist": {"latent_dim": 8, "iterations": 100, "steps_per_iteration": 1000, **IMAGE_RATES},
}
IMAGE_DEFAULT: dict[str, Any] = {"latent_dim": 64, "iterations": 100, "steps_per_iteration": 1000, **IMAGE_RATES}


def schedule_for(dataset: str) -> dict[str, Any]:
    return dict(TOY_SCHEDULE) if is_toy(dataset) else dict(SCHEDULES.get(dataset, IMAGE_DEFAULT))


# ---- the objective's parts (tested against their formulas) ------------------------------------
def reconstruction_errors(x: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    """||x_i - G(Q(x_i))||_2 per sample, over all of a sample's dimensions."""
    return (x - reconstruction).flatten(1).norm(2, dim=1)


def primal_value(x: torch.Tensor, reconstruction: torch.Tensor, f_reconstruction: torch.Tensor,
                 f_generated: torch.Tensor) -> torch.Tensor:
    """L = mean ||x - G(Q(x))|| + mean f(G(Q(x))) - mean f(G(z)) on one batch."""
    return reconstruction_errors(x, reconstruction).mean() + f_reconstruction.mean() - f_generated.mean()


def imq_kernel(a: torch.Tensor, b: torch.Tensor, scale: float) -> torch.Tensor:
    """k(a_i, b_j) = C / (C + ||a_i - b_j||^2), the matrix over the two batches."""
    return scale / (scale + torch.cdist(a, b).pow(2))


def mmd(codes: torch.Tensor, prior: torch.Tensor, scale: float) -> torch.Tensor:
    """Algorithm 1's unbiased MMD^2 estimate between Q(x) (n codes) and z (n prior draws):
    sum_{l!=j} k(z_l, z_j) / (n(n-1)) + sum_{l!=j} k(q_l, q_j) / (n(n-1)) - 2 sum_{l,j} k(z_l, q_j) / n^2."""
    n = len(codes)
    if n < 2:
        return codes.new_zeros(())
    off = 1.0 - torch.eye(n, device=codes.device, dtype=codes.dtype)
    k_zz = (imq_kernel(prior, prior, scale) * off).sum() / (n * (n - 1))
    k_qq = (imq_kernel(codes, codes, scale) * off).sum() / (n * (n - 1))
    k_zq = imq_kernel(prior, codes, scale).sum() / (n * n)
    return k_zz + k_qq - 2 * k_zq


def quality_from_errors(errors: torch.Tensor) -> torch.Tensor:
    """The paper's quality score exp(-||x - G(Q(x))||)."""
    return torch.exp(-errors)


@dataclass(frozen=True)
class IWGAN(GenerativeMethod):
    """iWGAN's settings; None = the dataset's default (SCHEDULES, the toys' TOY_SCHEDULE)."""
    name: ClassVar[str] = "iwgan"
    summary: ClassVar[str] = "iWGAN: an encoder, a generator and a WGAN critic on one primal-dual objective"
    data_kind: ClassVar[str] = "any"

    latent_dim: int | None = None
    iterations: int | None = None
    steps_per_iteration: int | None = None
    n_critic: int = 5
    critic_lr: float | None = None
    generator_lr: float | None = None
    gp_lambda: float | None = None
    mmd_lambda: float = 1.0
    gap_steps: int = 10
    gap_lr: float | None = None
    gap_batch: int = 512
    stop_gap: float | None = None
    stop_patience: int = 3
    generator_width: int = 64
    lr_decay: bool | None = None

    def validate(self) -> None:
        for name in ("latent_dim", "iterations", "steps_per_iteration", "n_critic", "critic_lr", "generator_lr",
                     "gap_steps", "gap_batch", "stop_patience", "generator_width"):
            value = getattr(self, name)
            if value is not None:
                check_positive(name, value)
        if self.gap_lr is not None:
            check_positive("gap_lr", self.gap_lr)
        for name in ("gp_lambda", "mmd_lambda", "stop_gap"):
            value = getattr(self, name)
            if value is not None:
                if not math.isfinite(value):
                    raise SettingError(name, f"must be a finite number, got {value}", method_setting=True)
                check_non_negative(name, value)

    def resolved_for(self, dataset: str) -> IWGAN:
        defaults = schedule_for(dataset)
        return dataclasses.replace(self, **{k: v for k, v in defaults.items() if getattr(self, k) is None})

    def learner(self, setup: LearnerSetup) -> IWGANLearner:
        return IWGANLearner(self.resolved_for(setup.config.data), setup)

    def networks(self, arch: str, shape: tuple[int, ...]) -> dict[str, nn.Module]:
        """G, Q and f for `arch`: the point MLPs (mlp), or for images a DCGAN-style generator with
        the project's classifier architecture as encoder (its logits are the code) and critic."""
        latent = need(self.latent_dim)
        if arch in POINT_ARCHITECTURES:
            dims = int(shape[0])
            return {"generator": point_generator(latent, dims), "encoder": point_encoder(latent, dims),
                    "critic": point_critic(dims)}
        from winn_robust.models.dcgan import DCGANGenerator

        image = (int(shape[0]), int(shape[1]), int(shape[2]))
        return {"generator": DCGANGenerator(image, latent, self.generator_width),
                "encoder": build_model(arch, image, latent), "critic": build_model(arch, image, 1)}

    def sample(self, run: Any, count: int, seed: int, rng: torch.Generator, device: torch.device, *,
               from_critic: bool = False, progress: bool = False) -> torch.Tensor:
        """G(z), z ~ N(0, I) from `rng`, in eval mode: images in [-1, 1] or points (N, 2)."""
        if from_critic:
            raise UserError("an iwgan run samples from its generator; drop `from_critic`", mentions=("from_critic",))
        nets = load_run_networks(run, device)
        out = []
        with torch.no_grad():
            for start in range(0, count, 500):
                z = torch.randn(min(500, count - start), need(self.latent_dim), generator=rng, device=device)
                out.append(nets["generator"](z))
        return torch.cat(out)


def load_run_networks(run: Any, device: torch.device) -> dict[str, nn.Module]:
    """An iwgan run's G, Q and f from its last.pt, in eval mode."""
    method = run.method
    assert isinstance(method, IWGAN)
    nets = method.networks(run.meta.arch, tuple(int(v) for v in run.meta.image_shape))
    run.load_networks(run.folder / "last.pt", nets, device)
    return nets


def reconstruct(nets: Mapping[str, nn.Module], x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """G(Q(x)) in eval mode, without gradients."""
    with torch.no_grad():
        return torch.cat([nets["generator"](nets["encoder"](x[s:s + batch_size])) for s in range(0, len(x), batch_size)]) \
            if len(x) else x.clone()


def quality_scores(nets: Mapping[str, nn.Module], x: torch.Tensor, batch_size: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """(quality exp(-||x - G(Q(x))||), reconstruction error) of every input, in the models' range."""
    errors = reconstruction_errors(x, reconstruct(nets, x, batch_size))
    return quality_from_errors(errors), errors


class IWGANLearner(Learner):
    columns: ClassVar[tuple[str, ...]] = (
        "critic_loss", "gradient_penalty", "train_primal", "train_reconstruction", "train_mmd",
        "primal", "duality_gap", "gap_sup", "gap_inf", "reconstruction", "mmd", "quality_mean",
        "gap_below", "seconds_train", "seconds_gap")

    def __init__(self, method: IWGAN, setup: LearnerSetup) -> None:
        self.method, self.setup = method, setup
        cfg = setup.config
        self.images = setup.images
        held = setup.held_out
        self.held = held if held is not None and len(held) >= 2 else setup.images
        shape = tuple(self.images.shape[1:])
        nets = method.networks(cfg.arch, shape)
        self.modules = {k: v.to(setup.device) for k, v in nets.items()}
        self.G, self.Q, self.critic = self.modules["generator"], self.modules["encoder"], self.modules["critic"]
        self.f = critic_scores(self.critic)
        betas = (cfg.beta1, cfg.beta2)
        self.optimizers = {
            "critic": torch.optim.Adam(self.critic.parameters(), lr=need_float(method.critic_lr), betas=betas),
            "autoencoder": torch.optim.Adam([*self.G.parameters(), *self.Q.parameters()], lr=need_float(method.generator_lr),
                                            betas=betas)}
        # the gap's probes: copies loaded from the current networks before each estimate (not saved)
        probes = method.networks(cfg.arch, shape)
        self.auxiliary = {f"probe_{k}": v.to(setup.device) for k, v in probes.items()}
        self.latent = need(method.latent_dim)
        self.kernel_scale = 2.0 * self.latent
        self.below = 0
        self.stopped = False

    # ---- schedule ----------------------------------------------------------------------------
    @property
    def total_iterations(self) -> int:
        return need(self.method.iterations)

    @property
    def finished(self) -> bool:
        return self.stopped

    # ---- draws --------------------------------------------------------------------------------
    def batch(self, pool: torch.Tensor, rng: torch.Generator, size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        n = size or self.setup.config.batch_size
        index = torch.randint(0, len(pool), (n,), generator=rng, device=pool.device)
        z = torch.randn(n, self.latent, generator=rng, device=pool.device)
        return pool[index], z

    # ---- Algorithm 1 ------------------------------------------------------------------------------
    def critic_step(self, G: nn.Module, Q: nn.Module, critic: nn.Module, optimizer: torch.optim.Optimizer,
                    pool: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
        """One Adam step of f on -L + gp_lambda * GP (the reconstruction term is constant in f);
        returns (loss, GP). Under torchrun G and Q run on the whole batch on every rank (batch
        norm sees what one process sees), f on this rank's rows, and the values returned are this
        rank's share (their sum over ranks is the batch's)."""
        x, z = self.batch(pool, rng)
        with torch.no_grad():
            generated, reconstructed = G(z), G(Q(x))
        f = critic_scores(critic)
        a = interpolation_weights(len(x), x, rng)
        part = RankSlice.of(len(x), self.setup.world)
        x, generated, reconstructed, a = x[part.rows], generated[part.rows], reconstructed[part.rows], a[part.rows]
        scores = f(torch.cat([generated, reconstructed]))
        term = scores[:len(x)].mean() - scores[len(x):].mean()
        penalty = gradient_penalty(f, x, generated, a)
        loss = term + need_float(self.method.gp_lambda) * penalty
        optimizer_step(optimizer, loss if part.loss_scale == 1.0 else loss * part.loss_scale)
        values = torch.stack([loss.detach(), penalty.detach()])
        return values * part.share if self.setup.world.distributed else values

    def autoencoder_step(self, G: nn.Module, Q: nn.Module, critic: nn.Module, optimizer: torch.optim.Optimizer,
                         pool: torch.Tensor, rng: torch.Generator, mmd_weight: float) -> torch.Tensor:
        """One Adam step of G and Q on L + mmd_weight * MMD (f frozen); returns (L, reconstruction
        error, MMD). Under torchrun every rank computes G, Q, the reconstruction term and the MMD
        (a U-statistic over the whole batch) on the whole batch and f on its rows, its f terms
        weighted so the averaged gradients are the batch's; the values returned are this rank's
        share (their sum over ranks is the batch's)."""
        x, z = self.batch(pool, rng)
        f = critic_scores(critic)
        part = RankSlice.of(len(x), self.setup.world)
        with frozen_eval(critic):
            codes = Q(x)
            reconstructed = G(codes)
            generated = G(z)
            scores = f(torch.cat([reconstructed[part.rows], generated[part.rows]]))
            if part.loss_scale != 1.0:
                scores = scores * part.loss_scale
            half = len(scores) // 2
            value = primal_value(x, reconstructed, scores[:half], scores[half:])
            discrepancy = mmd(codes, z, self.kernel_scale) if mmd_weight > 0 else value.new_zeros(())
            optimizer_step(optimizer, value + mmd_weight * discrepancy)
        values = torch.stack([value.detach(), reconstruction_errors(x, reconstructed).mean().detach(),
                              discrepancy.detach()])
        return values / self.setup.world.world_size if self.setup.world.distributed else values

    def iterate(self, iteration: int) -> dict[str, float]:
        method, rng = self.method, self.setup.rng
        t0 = time.perf_counter()
        for net in self.modules.values():
            net.train()
        sums = torch.zeros(5, dtype=torch.float64, device=self.images.device)
        loops = need(method.steps_per_iteration)
        for loop in range(loops):
            if method.lr_decay:
                decay_rates(self.optimizers, {"critic": need_float(method.critic_lr),
                                              "autoencoder": need_float(method.generator_lr)},
                            (iteration - 1) * loops + loop, self.total_iterations * loops)
            for _ in range(method.n_critic):
                sums[:2] += self.critic_step(self.G, self.Q, self.critic, self.optimizers["critic"], self.images, rng)
            for _ in range(method.n_critic):
                sums[2:] += self.autoencoder_step(self.G, self.Q, self.critic, self.optimizers["autoencoder"],
                                                  self.images, rng, method.mmd_lambda)
        steps = need(method.steps_per_iteration) * method.n_critic
        means = (distributed.all_reduce_sum(sums) / steps).tolist()
        if not all(math.isfinite(v) and abs(v) <= 1e8 for v in means):
            from winn_robust.training.divergence import TrainingDiverged

            raise TrainingDiverged(f"training diverged: the loss terms became {means}; lower `critic_lr` and "
                                   "`generator_lr`", mentions=("critic_lr", "generator_lr"))
        t1 = time.perf_counter()
        evaluation = self.evaluate()
        if method.stop_gap is not None:
            self.below = self.below + 1 if evaluation["duality_gap"] < method.stop_gap else 0
            self.stopped = self.below >= method.stop_patience
        return {"critic_loss": means[0], "gradient_penalty": means[1], "train_primal": means[2],
                "train_reconstruction": means[3], "train_mmd": means[4], **evaluation, "gap_below": self.below,
                "seconds_train": t1 - t0, "seconds_gap": time.perf_counter() - t1}

    # ---- held-out evaluation and the duality gap -------------------------------------------------
    def evaluate(self) -> dict[str, float]:
        """Primal value, reconstruction error, MMD, mean quality score and the duality gap on
        held-out points, with a stream seeded from the run's (one draw of it per row)."""
        seed = int(torch.randint(0, 2 ** 62, (1,), generator=self.setup.rng, device=self.setup.rng.device))
        rng = torch.Generator(device=self.setup.rng.device).manual_seed(seed)
        x, z = self.batch(self.held, rng, min(self.method.gap_batch, max(2, len(self.held))))
        base = self.measure(self.G, self.Q, self.critic, x, z)
        probe = self.auxiliary
        pf, pg, pq = probe["probe_critic"], probe["probe_generator"], probe["probe_encoder"]
        pf.load_state_dict(self.critic.state_dict())
        pg.load_state_dict(self.G.state_dict())
        pq.load_state_dict(self.Q.state_dict())
        betas = (self.setup.config.beta1, self.setup.config.beta2)
        critic_opt = torch.optim.Adam(pf.parameters(), lr=self.method.gap_lr or need_float(self.method.critic_lr), betas=betas)
        pf.train()
        for _ in range(self.method.gap_steps):
            with frozen_eval(self.G, self.Q):
                self.critic_step(self.G, self.Q, pf, critic_opt, self.held, rng)
        auto_opt = torch.optim.Adam([*pg.parameters(), *pq.parameters()], lr=self.method.gap_lr or need_float(self.method.generator_lr),
                                    betas=betas)
        pg.train()
        pq.train()
        for _ in range(self.method.gap_steps):
            self.autoencoder_step(pg, pq, self.critic, auto_opt, self.held, rng, 0.0)
        sup = max(base["primal"], self.measure(self.G, self.Q, pf, x, z)["primal"])
        inf = min(base["primal"], self.measure(pg, pq, self.critic, x, z)["primal"])
        return {**base, "duality_gap": sup - inf, "gap_sup": sup, "gap_inf": inf}

    def measure(self, G: nn.Module, Q: nn.Module, critic: nn.Module, x: torch.Tensor, z: torch.Tensor) -> dict[str, float]:
        """L, the reconstruction error, the MMD and the mean quality on one batch, in eval mode."""
        f = critic_scores(critic)
        with frozen_eval(G, Q, critic), torch.no_grad():
            codes = Q(x)
            reconstructed = G(codes)
            generated = G(z)
            errors = reconstruction_errors(x, reconstructed)
            value = primal_value(x, reconstructed, f(reconstructed), f(generated))
            return {"primal": float(value), "reconstruction": float(errors.mean()),
                    "mmd": float(mmd(codes, z, self.kernel_scale)), "quality_mean": float(quality_from_errors(errors).mean())}

    # ---- state -----------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {"below": self.below, "stopped": self.stopped}

    def load_state(self, state: Mapping[str, Any]) -> None:
        self.below = int(state.get("below", 0))
        self.stopped = bool(state.get("stopped", False))

    def summary(self) -> dict[str, Any]:
        return {"latent_dim": self.latent, "kernel": f"imq C={self.kernel_scale:g}", "stopped_by_gap": self.stopped}

    def preview(self, n: int) -> torch.Tensor | None:
        if self.images.dim() != 4:
            return None
        rng = torch.Generator(device=self.images.device).manual_seed(0)
        with frozen_eval(self.G), torch.no_grad():
            return self.G(torch.randn(n, self.latent, generator=rng, device=self.images.device))


def need(value: int | None) -> int:
    assert value is not None, "the method's schedule was not resolved for the dataset"
    return int(value)


def need_float(value: float | None) -> float:
    assert value is not None, "the method's schedule was not resolved for the dataset"
    return float(value)
