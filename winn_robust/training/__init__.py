"""Training: baseline (CE), ICN and WINN with introspective pseudo-negative synthesis."""
from winn_robust.training.config import METHODS, TrainConfig
from winn_robust.training.trainer import TrainingDiverged, train

__all__ = ["METHODS", "TrainConfig", "TrainingDiverged", "train"]
