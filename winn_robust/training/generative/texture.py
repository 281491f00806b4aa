"""Textures (WINN paper, section 5.2): unsupervised WINN on random patches of ONE image, then an
image of any size from the trained critics by anysize synthesis (training/generative/anysize.py).

Training is `winn-gen` itself, through the generative trainer (so a texture run has checkpoints,
cascade files, metrics.csv and --resume like any generative run): the architecture is Appendix C's
`winn64`, the dataset is named "texture", and the positives are a FIXED set of random p x p crops
of the image, drawn once from the seed. Their number is the largest positive set a critic step
draws, min(growth, iterations) * positives (the paper's schedule: 5 * 1000 = 5000 crops), so every
critic step sees distinct crops; a fixed set (rather than fresh crops each iteration) keeps the
run an ordinary winn-gen run whose resume can check it sees the very same data.

Synthesis runs the cascade checkpoints in turn, as `sample` does: stage k improves the canvas
with critic k, until the mean patch score reaches a threshold drawn from U[low, high] of the
range that critic recorded (or a step budget runs out), starting from the Appendix D noise network
scaled to the canvas (each p x p window of the start has the structure of a p x p training start).
"""
from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from winn_robust.checkpoint import read_meta
from winn_robust.errors import SettingError, UserError
from winn_robust.models import build_model
from winn_robust.models.noise_network import NOISE_SHAPE, NoiseNetwork
from winn_robust.training.config import TrainConfig
from winn_robust.training.generative.anysize import ascend_canvas, canvas_side, center_crop
from winn_robust.training.generative.critic import critic_scores
from winn_robust.training.generative.sampling import open_run
from winn_robust.training.generative.trainer import train_generative
from winn_robust.training.generative.winn_gen import WinnGen, need
from winn_robust.training.run_folder import LAST_NAME
from winn_robust.training.trainer import TrainData

DATASET = "texture"
ARCH = "winn64"
GREY_MODES = ("1", "L", "LA", "I", "I;16", "F")


def load_texture(path: str | Path) -> torch.Tensor:
    """The image as (C, H, W) in [-1, 1]: grey images keep one channel, every other mode becomes RGB."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} does not exist or is not a file; give `image` a PNG or JPEG texture", mentions=("image",))
    try:
        with Image.open(path) as image:
            image.load()
            grey = image.mode in GREY_MODES
            converted = image.convert("L" if grey else "RGB")
    except UnidentifiedImageError:
        raise UserError(f"{path} is not an image PIL can read; give `image` a PNG or JPEG texture",
                        mentions=("image",)) from None
    except OSError as exc:
        raise UserError(f"{path} could not be read as an image ({exc}); give `image` a PNG or JPEG texture",
                        mentions=("image",)) from None
    import numpy as np

    array = np.asarray(converted, dtype=np.float32) / 255.0
    pixels = torch.from_numpy(array.copy())
    pixels = pixels[None] if pixels.dim() == 2 else pixels.permute(2, 0, 1)
    return pixels * 2 - 1


def random_crops(image: torch.Tensor, count: int, patch: int, rng: torch.Generator) -> torch.Tensor:
    """count p x p crops of a (C, H, W) image at uniformly random positions (with replacement)."""
    _, height, width = image.shape
    ys = torch.randint(0, height - patch + 1, (count,), generator=rng).tolist()
    xs = torch.randint(0, width - patch + 1, (count,), generator=rng).tolist()
    return torch.stack([image[:, y:y + patch, x:x + patch] for y, x in zip(ys, xs)])


@dataclass(frozen=True)
class TextureSettings:
    """What `texture` does beside training: the output side, the patch side (the critic's input),
    patches scored per canvas step (paper: 200), the canvas step budget per stage (each stage stops
    earlier once the mean patch score reaches its threshold; None: the method's ascent_max_steps)
    and the synthesis seed (the canvas's
    start, the patch positions, the thresholds; the training's seed is the TrainConfig's)."""
    size: int = 256
    patch: int = 64
    patches_per_step: int = 200
    steps: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("size", "patch", "patches_per_step"):
            if getattr(self, name) <= 0:
                raise SettingError(name, f"must be positive, got {getattr(self, name)}")
        if self.steps is not None and self.steps < 0:
            raise SettingError("steps", f"must be >= 0, got {self.steps}")


def texture_config(method_options: dict[str, Any], seed: int, batch_size: int | None = None) -> TrainConfig:
    """The winn-gen training settings of a texture run (the paper's schedule unless given)."""
    extra: dict[str, Any] = {} if batch_size is None else {"batch_size": batch_size}
    return TrainConfig(method="winn-gen", arch=ARCH, data=DATASET, seed=seed, method_options=method_options, **extra)


def crop_count(method: WinnGen) -> int:
    """The largest positive set one critic step draws: min(growth, iterations) * positives."""
    return min(method.growth, need(method.iterations)) * need(method.positives)


def texture_data(image: torch.Tensor, config: TrainConfig, patch: int, device: torch.device) -> TrainData:
    """The seeded fixed set of crops as a TrainData (labels unused, no validation images)."""
    _, height, width = image.shape
    if patch > height or patch > width:
        raise SettingError("patch", f"{patch} is larger than the image ({width}x{height}); give a smaller `patch` or a "
                                    "larger image", mentions=("patch",))
    method = config.training_method
    assert isinstance(method, WinnGen)
    rng = torch.Generator().manual_seed(config.seed)
    crops = random_crops(image, crop_count(method), patch, rng).to(device)
    empty = torch.empty(0, *crops.shape[1:], device=device)
    labels = torch.zeros(len(crops), dtype=torch.long, device=device)
    return TrainData(crops, labels, empty, torch.zeros(0, dtype=torch.long, device=device), DATASET, ("texture",))


def noise_canvas(channels: int, side: int, patch: int, seed: int, rng: torch.Generator,
                 device: torch.device) -> torch.Tensor:
    """A (C, side, side) start: the Appendix D noise network of a p x p image (weights from `seed`,
    as training's starts), run on proportionally more noise with every upsampling scaled by
    side / p, then min-max rescaled to [-1, 1] as a whole."""
    net = NoiseNetwork((channels, patch, patch), generator=torch.Generator().manual_seed(seed)).to(device)
    scale = side / patch
    net.sizes = [(math.ceil(h * scale), math.ceil(w * scale)) for h, w in net.sizes[:-1]] + [(side, side)]
    grid = math.ceil(NOISE_SHAPE[1] * scale)
    noise = torch.rand(1, NOISE_SHAPE[0], grid, grid, generator=rng, device=rng.device).to(device) * 2 - 1
    return net(noise)[0]


@dataclass
class TextureResult:
    image: torch.Tensor                          # (C, size, size) in [-1, 1]
    reused: bool                                 # a finished run was reused: synthesis only
    train_seconds: float                         # training (or resuming) now; 0 when reused
    synth_seconds: float
    iterations: int                              # training iterations the run holds
    stages: list[dict[str, float]] = field(default_factory=list)  # per cascade: steps, threshold, final mean


def setting_differences(saved: TrainConfig, wanted: TrainConfig) -> list[str]:
    """"NAME SAVED, not WANTED" for each training setting (a method's own ones by name) that differs."""
    def flat(config: TrainConfig) -> dict[str, Any]:
        values = config.to_dict()
        return {**{k: v for k, v in values.items() if k != "method_options"}, **values["method_options"]}

    old, new = flat(saved), flat(wanted)
    return [f"{name} {old.get(name)}, not {value}" for name, value in new.items() if old.get(name) != value]


def prepare_run(run_dir: Path, config: TrainConfig, data: TrainData) -> str:
    """What to do with `run_dir`: "new" (no run there), "resume" (an unfinished run of these same
    settings and crops) or "reuse" (a finished one); a run of other settings or another image is one line."""
    last = run_dir / LAST_NAME
    if not last.is_file():
        return "new"
    meta = read_meta(last)
    if meta.dataset != DATASET or meta.method != "winn-gen":
        raise UserError(f"{run_dir} holds a {meta.method} run on {meta.dataset}, not a texture run; give `run` a new "
                        "folder", mentions=("run",))
    if tuple(meta.image_shape) != tuple(data.image_shape):
        raise UserError(f"{run_dir} was trained on {meta.image_shape[1]}x{meta.image_shape[2]} patches of "
                        f"{meta.image_shape[0]} channel(s), not {data.image_shape[1]}x{data.image_shape[2]} of "
                        f"{data.image_shape[0]}; give the run's `patch` and image, or a new `run`", mentions=("patch", "run"))
    differences = setting_differences(TrainConfig.from_dict(meta.hparams), config)
    if differences:
        raise UserError(f"{run_dir} was trained with other settings ({'; '.join(differences)}); give the run's own "
                        "settings, or a new `run`", mentions=("run",))
    if meta.data_fingerprint is not None and meta.data_fingerprint != data.fingerprint():
        raise UserError(f"{run_dir} was trained on crops of another image (or with another `seed`); give the run's "
                        "own image and seed, or a new `run`", mentions=("seed", "run"))
    method = config.training_method
    assert isinstance(method, WinnGen)
    return "reuse" if meta.epoch >= need(method.cascades) * need(method.iterations) else "resume"


def synthesize_texture(run_dir: Path, settings: TextureSettings, device: torch.device,
                       progress: bool = False) -> tuple[torch.Tensor, list[dict[str, float]]]:
    """The anysize synthesis from a trained texture run: (C, size, size) in [-1, 1] and per-stage facts."""
    from tqdm.auto import tqdm

    run = open_run(run_dir)
    method = run.method
    assert isinstance(method, WinnGen)
    channels, patch, _ = run.image_shape
    stages = [run.folder / f"cascade-{k}.pt" for k in range(1, int(method.cascades or 1) + 1)]
    stages = [p for p in stages if p.is_file()] or [run.folder / LAST_NAME]
    rng = torch.Generator(device=device).manual_seed(settings.seed)
    side = canvas_side(settings.size, patch)
    canvas = noise_canvas(channels, side, patch, settings.seed, rng, device)
    facts: list[dict[str, float]] = []
    for index, file in enumerate(tqdm(stages, desc="texture stages", disable=not progress, unit="stage")):
        critic = build_model(ARCH, run.image_shape, 1)
        meta = run.load_networks(file, {"critic": critic}, device)
        low, high = meta.extra.get("generative", {}).get("threshold_range", (0.0, 0.0))
        threshold = float(low) + (float(high) - float(low)) * float(torch.rand((), generator=rng, device=device))
        ascent = method.ascent if settings.steps is None else replace(method.ascent, max_steps=settings.steps)
        result = ascend_canvas(critic_scores(critic), critic, canvas, patch, settings.patches_per_step, ascent, rng,
                               threshold=threshold)
        if result.final_mean != result.final_mean:
            from winn_robust.training.divergence import TrainingDiverged

            raise TrainingDiverged(f"texture synthesis diverged at stage {index + 1}: the mean patch score became NaN")
        canvas = result.canvas
        facts.append({"stage": index + 1, "steps": result.steps, "threshold": threshold,
                      "final_mean": result.final_mean})
    return center_crop(canvas, settings.size, patch), facts


def make_texture(image_path: str | Path, settings: TextureSettings, config: TrainConfig,
                 device: torch.device | str = "cpu", run_dir: str | Path | None = None,
                 progress: bool = False) -> TextureResult:
    """Train (or resume, or reuse a finished `run_dir`) on the image's crops, then synthesize.
    Without `run_dir` the training run lives in a temporary folder that is deleted afterwards."""
    device = torch.device(device)
    image = load_texture(image_path)
    data = texture_data(image, config, settings.patch, device)
    with tempfile.TemporaryDirectory(prefix="winn-texture-") as scratch:
        folder = Path(run_dir) if run_dir is not None else Path(scratch)
        state = prepare_run(folder, config, data)
        started = time.perf_counter()
        if state != "reuse":
            train_generative(config, data, folder, device, resume=state == "resume", progress=progress)
        trained = time.perf_counter() - started
        iterations = read_meta(folder / LAST_NAME).epoch
        started = time.perf_counter()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(settings.seed)
            out, stages = synthesize_texture(folder, settings, device, progress)
        return TextureResult(out.detach().cpu(), state == "reuse", trained if state != "reuse" else 0.0,
                             time.perf_counter() - started, iterations, stages)


def save_texture(image: torch.Tensor, out: str | Path) -> Path:
    """The (C, S, S) [-1, 1] image as a PNG (grey or RGB as the source), written atomically."""
    import numpy as np
    from PIL import Image

    from winn_robust.images import to_unit_range
    from winn_robust.storage import atomic_write

    out = Path(out)
    if out.suffix.lower() != ".png":
        raise UserError(f"`out` {out} must end in .png", mentions=("out",))
    pixels = (to_unit_range(image) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    picture = Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else np.ascontiguousarray(pixels))
    atomic_write(out, lambda handle: picture.save(handle, format="png"))
    return out
