"""winn-robust: does this training method make my classifier more robust, and by how much?

Public API:
    load_checkpoint(path) -> (model, CheckpointMeta)   model in eval mode, [-1, 1] images -> logits
    evaluate(models, images, labels, eps, attacks=...) -> EvaluationReport
                                                  any models mapping [0, 1] images to logits;
                                                  the report `attack` writes (docs/evaluation.md)

The conventions every number follows (pixel range, eps unit, FGSM, metrics): docs/conventions.md."""
from typing import Any

from winn_robust.checkpoint import load_checkpoint
from winn_robust.version import __version__

__all__ = ["__version__", "evaluate", "load_checkpoint"]


def __getattr__(name: str) -> Any:
    # `evaluate` pulls in the attacks (foolbox, pyautoattack), scipy and matplotlib: seconds that
    # `import winn_robust` (every torchrun rank of `train`) should not pay until it is used
    if name == "evaluate":
        from winn_robust.experiments.evaluate import evaluate

        return evaluate
    raise AttributeError(f"module 'winn_robust' has no attribute {name!r}")
