"""winn-robust: does this training method make my classifier more robust, and by how much?

Public API:
    load_checkpoint(path) -> (model, metadata)   model in eval mode, [-1, 1] images -> logits

The conventions every number follows (pixel range, eps unit, FGSM, metrics): docs/conventions.md."""
from winn_robust.checkpoint import load_checkpoint
from winn_robust.version import __version__

__all__ = ["__version__", "load_checkpoint"]
