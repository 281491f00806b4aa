"""Generative methods: unsupervised WINN (`winn-gen`, WINN-single = one cascade) and the WGAN-GP it is
set against; they register in the one method registry and train with the generative trainer."""
from winn_robust.training.generative.base import GenerativeMethod, Learner, LearnerSetup, is_generative
from winn_robust.training.generative.wgan_gp import WGANGP
from winn_robust.training.generative.winn_gen import WinnGen
from winn_robust.training.methods.registry import register_method

register_method(WinnGen)
register_method(WGANGP)

__all__ = ["WGANGP", "GenerativeMethod", "Learner", "LearnerSetup", "WinnGen", "is_generative"]
