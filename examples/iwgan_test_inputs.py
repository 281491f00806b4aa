"""A dataset's test images as `quality`/`reconstruct` inputs: OUT.npz (`images` in [0, 1], `labels`)
and OUT-noisy.npz (the same images half drowned in noise, 0.5 x + 0.5 u, u ~ U[0, 1], numpy seed 0).

    python examples/iwgan_test_inputs.py digits test.npz [N]"""
import sys

import numpy as np

from winn_robust.data import load_dataset
from winn_robust.units import to_pixel_range

data = load_dataset(sys.argv[1])
n = int(sys.argv[3]) if len(sys.argv) > 3 else len(data.test_images)
x = to_pixel_range(data.test_images[:n]).clamp(0, 1).numpy()
np.savez(sys.argv[2], images=x, labels=data.test_labels[:n].numpy())
noise = np.random.default_rng(0).random(x.shape)
np.savez(sys.argv[2].replace(".npz", "-noisy.npz"), images=(0.5 * x + 0.5 * noise).astype(np.float32))
