"""A training method that is not ours, through winn-robust's trainer: Gaussian noise augmentation
(cross-entropy on images with N(0, sigma^2) noise added, sigma in [0, 1] pixel units).

    winn-robust train --method noise=examples/gaussian_augmentation.py:loss --data digits --out runs/noise

The trainer calls loss(model, images, labels, context) once per batch: images are model inputs in
[-1, 1] (a pixel-unit sigma is 2 sigma there), context.randn draws from the run's seeded stream
(identical under torchrun), and the function returns the batch's loss (and, optionally, the
logits, so the trainer logs the training error)."""
import torch.nn.functional as F

SIGMA = 0.25  # [0, 1] pixel units


def loss(model, images, labels, context):
    noisy = (images + 2 * SIGMA * context.randn(tuple(images.shape[1:]))).clamp(-1, 1)
    logits = model(noisy)
    return F.cross_entropy(logits, labels), logits
