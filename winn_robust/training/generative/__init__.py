"""Generative methods: unsupervised WINN (`winn-gen`, WINN-single = one cascade), the WGAN-GP it is
set against, and iWGAN (`iwgan`, an autoencoder WGAN);
they register in the one method registry and train with the generative trainer."""
from winn_robust.training.generative.base import GenerativeMethod, Learner, LearnerSetup, is_generative
from winn_robust.training.generative.iwgan import IWGAN
from winn_robust.training.generative.wgan_gp import WGANGP
from winn_robust.training.generative.winn_gen import WinnGen
from winn_robust.training.methods.registry import register_method

register_method(WinnGen)
register_method(WGANGP)
register_method(IWGAN)

__all__ = ["IWGAN", "WGANGP", "GenerativeMethod", "Learner", "LearnerSetup", "WinnGen", "is_generative"]
