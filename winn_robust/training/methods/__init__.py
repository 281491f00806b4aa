"""Training methods as typed objects: the WINN paper's (baseline, ICN, WINN), the reference
defences (PGD-AT, TRADES, Fast-AT) and a user's own (NAME=FILE.py:FUNCTION)."""
from winn_robust.training.methods.adversarial import PGDAT, PUBLISHED, TRADES, AdversarialMethod, FastAT
from winn_robust.training.methods.base import StepContext, TrainingMethod
from winn_robust.training.methods.introspective import ICN, WINN, Baseline
from winn_robust.training.methods.registry import (
    METHOD_CLASSES,
    METHODS,
    make_method,
    method_class,
    published_settings,
    settings_owners,
    split_method_spec,
)
from winn_robust.training.methods.user import UserContext, UserMethod

__all__ = ["ICN", "METHODS", "METHOD_CLASSES", "PGDAT", "PUBLISHED", "TRADES", "WINN", "AdversarialMethod",
           "Baseline", "FastAT", "StepContext", "TrainingMethod", "UserContext", "UserMethod", "make_method",
           "method_class", "published_settings", "settings_owners", "split_method_spec"]
