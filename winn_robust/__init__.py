"""winn-robust: does this training method make my classifier more robust, and by how much?

Public API:
    load_checkpoint(path) -> (model, metadata)   model in eval mode, [-1, 1] images -> logits
"""
__version__ = "0.1.0"

from winn_robust.checkpoint import load_checkpoint  # noqa: E402

__all__ = ["load_checkpoint", "__version__"]
