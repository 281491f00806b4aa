"""Training: baseline (CE), ICN and WINN with introspective pseudo-negative synthesis, the
reference defences (PGD-AT, TRADES, Fast-AT) and a user's own method, through one trainer."""
from winn_robust.training import generative  # noqa: F401  (registers the generative methods)
from winn_robust.training.config import TrainConfig
from winn_robust.training.methods import METHODS, TrainingMethod, make_method
from winn_robust.training.trainer import TrainingDiverged, train

__all__ = ["METHODS", "TrainConfig", "TrainingDiverged", "TrainingMethod", "make_method", "train"]
