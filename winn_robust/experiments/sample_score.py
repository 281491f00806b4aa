"""`winn-robust score`: a sample file's classifier score and Frechet distance, beside the real
test images' under the same classifier and at the same N (docs/scores.md).

N = min(samples, test images); the samples, the test images and a real-train subset (the
distance floor) are each a seeded subset of N when there are more."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from winn_robust.data import load_dataset
from winn_robust.errors import SettingError, UserError
from winn_robust.evaluation.sample_scores import SampleScore, classifier_score, frechet_distance, probabilities_and_features
from winn_robust.evaluation.score_classifier import ScoreClassifier, load_score_classifier
from winn_robust.units import to_model_range


@dataclass(frozen=True)
class SampleFile:
    """A sample file: images (N, C, H, W) float32 in [0, 1], and what wrote them."""
    path: Path
    images: torch.Tensor
    seed: int | None = None
    checkpoint: str | None = None


def read_samples(path: Path) -> SampleFile:
    """Read and check a sample .npz (no pickled objects)."""
    if not path.is_file():
        raise UserError(f"sample file {path} does not exist; give the .npz `winn-robust sample` wrote")
    try:
        with np.load(path, allow_pickle=False) as archive:
            names = set(archive.files)
            if "images" not in names:
                raise UserError(f"sample file {path} holds no `images` array (it has: {', '.join(sorted(names)) or 'nothing'}); "
                                "save the images as images=ARRAY of shape (N, C, H, W) in [0, 1]")
            images = np.asarray(archive["images"])
            seed = int(archive["seed"]) if "seed" in names and archive["seed"].size == 1 else None
            checkpoint = str(archive["checkpoint"]) if "checkpoint" in names and archive["checkpoint"].size == 1 else None
    except UserError:
        raise
    except Exception as exc:  # not a zip, a damaged member, an object array: the file is not ours
        raise UserError(f"sample file {path} is not a readable .npz of arrays ({type(exc).__name__}); write it with "
                        "numpy.savez(FILE, images=ARRAY)") from None
    if images.ndim != 4:
        raise UserError(f"sample file {path}: images has shape {list(images.shape)}; it must be 4-D (N, C, H, W)")
    if not np.issubdtype(images.dtype, np.floating):
        raise UserError(f"sample file {path}: images are {images.dtype}; they must be floats in [0, 1] "
                        "(divide 8-bit pixels by 255)")
    if len(images) < 2:
        raise UserError(f"sample file {path} holds {len(images)} image(s); the scores need at least 2")
    if not np.isfinite(images).all():
        raise UserError(f"sample file {path}: images hold NaN or Inf values; they must be finite, in [0, 1]")
    low, high = float(images.min()), float(images.max())
    if low < 0.0 or high > 1.0:
        raise UserError(f"sample file {path}: images range over [{low:.3g}, {high:.3g}]; they must be in [0, 1] "
                        "(from the model range [-1, 1]: u = (x + 1) / 2)")
    return SampleFile(path, torch.from_numpy(images.astype(np.float32)), seed, checkpoint)


def check_shape(classifier: ScoreClassifier, shape: tuple[int, ...], source: str) -> None:
    """The images must be what the classifier takes; Inception takes any grey or RGB size."""
    wanted = None if classifier.meta is None else tuple(int(v) for v in classifier.meta.image_shape)
    if wanted is not None and tuple(shape) != wanted:
        raise UserError(f"{source} are {'x'.join(map(str, shape))} images (C x H x W) but the classifier takes "
                        f"{'x'.join(map(str, wanted))}; score them with a classifier trained on images of their shape")
    if classifier.is_inception and shape[0] not in (1, 3):
        raise UserError(f"{source} have {shape[0]} channels; Inception-v3 takes grey (1) or RGB (3) images")


def probe(classifier: ScoreClassifier, images: torch.Tensor, device: torch.device | str) -> ScoreClassifier:
    """Run two images through: a model that fails on them is one line; a hooked layer that does
    not run exactly once per pass means its input is no feature: fall back to the logits."""
    try:
        probs, _ = probabilities_and_features(classifier.model, images[:2], classifier.feature_layer, device=device)
    except RuntimeError as exc:
        if classifier.feature_layer is not None and "feature layer ran" in str(exc):
            return classifier.with_logit_features("its last nn.Linear does not run once per forward pass")
        raise UserError(f"classifier {classifier.description} failed on images of shape {list(images.shape[1:])}: "
                        f"{' '.join(str(exc).split())[:160]}") from None
    if probs.ndim != 2 or probs.shape[1] < 2:
        raise UserError(f"classifier {classifier.description} returned {list(probs.shape)} for 2 images; it must return "
                        "logits of shape (N, classes)")
    return classifier


def seeded_subset(images: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    if len(images) == n:
        return images
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    return images[order[:n]]


@dataclass
class ScoreRequest:
    """`winn-robust score`'s settings."""
    samples: Path
    classifier: str
    data: str | None = None
    data_dir: Path | None = None
    download: bool = False
    splits: int = 10
    seed: int = 0
    device: str = "cpu"
    notes: list[str] = field(default_factory=list)


def score_samples(request: ScoreRequest) -> SampleScore:
    """Score the samples and the real reference under one classifier, all at one N."""
    if request.splits < 1:
        raise SettingError("splits", f"must be at least 1, got {request.splits}")
    samples = read_samples(request.samples)
    classifier = load_score_classifier(request.classifier, request.device)
    sample_shape = tuple(samples.images.shape[1:])
    check_shape(classifier, sample_shape, f"the samples in {request.samples}")
    x_samples = to_model_range(samples.images)
    classifier = probe(classifier, x_samples, request.device)

    dataset_name = request.data or (classifier.meta.dataset if classifier.meta is not None else None)
    if dataset_name is None:
        raise UserError(f"the classifier {request.classifier} does not say which dataset it knows; give `data` "
                        "(the real images to compare with)", mentions=("data",))
    data_dir = request.data_dir
    if data_dir is None and classifier.meta is not None and classifier.meta.data_dir \
            and Path(classifier.meta.data_dir).is_dir() and dataset_name == classifier.meta.dataset:
        data_dir = Path(classifier.meta.data_dir)
    dataset = load_dataset(dataset_name, data_dir, download=request.download)
    if tuple(dataset.image_shape) != sample_shape:
        raise UserError(f"the samples are {'x'.join(map(str, sample_shape))} images but {dataset.name}'s are "
                        f"{'x'.join(map(str, dataset.image_shape))}; give `data` for the dataset the samples imitate",
                        mentions=("data",))
    if classifier.meta is not None and dataset.name != classifier.meta.dataset:
        request.notes.append(f"note: the classifier was trained on {classifier.meta.dataset}; the reference is {dataset.name} "
                             "(as asked)")

    n = min(len(x_samples), len(dataset.test_images), len(dataset.train_images))
    if request.splits > n:
        raise SettingError("splits", f"{request.splits} is more than N = {n} (the images scored); give at most {n}")
    if n < len(x_samples):
        request.notes.append(f"note: {len(x_samples)} samples but {dataset.name} has {len(dataset.test_images)} test "
                             f"images: every figure uses N = {n} (a seeded subset of the samples)")
    x_samples = seeded_subset(x_samples, n, request.seed)
    x_test = seeded_subset(dataset.test_images, n, request.seed + 1)
    x_train = seeded_subset(dataset.train_images, n, request.seed + 2)

    def run(images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        return probabilities_and_features(classifier.model, images, classifier.feature_layer, device=request.device)

    p_samples, f_samples = run(x_samples)
    p_test, f_test = run(x_test)
    _, f_train = run(x_train)
    score, score_sd = classifier_score(p_samples, request.splits, request.seed)
    real, real_sd = classifier_score(p_test, request.splits, request.seed)
    return SampleScore(classifier.score_name, classifier.distance_name, classifier.description, classifier.features,
                       dataset.name, n, len(samples.images), len(dataset.test_images), request.splits, request.seed,
                       score, score_sd, frechet_distance(f_samples, f_test), real, real_sd,
                       frechet_distance(f_train, f_test), str(request.samples), samples.seed, samples.checkpoint,
                       classifier.sha256)
