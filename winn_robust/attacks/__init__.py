"""Attacks by name. Every attack takes eps in [0, 1] pixel units and [-1, 1] model inputs."""
from winn_robust.attacks import fgsm as _fgsm  # noqa: F401  (registers "fgsm")
from winn_robust.attacks import foolbox_adapter as _foolbox  # noqa: F401  (registers "foolbox-*")
from winn_robust.attacks.fgsm import fgsm
from winn_robust.attacks.registry import ATTACKS, Attack, get_attack, register_attack

__all__ = ["ATTACKS", "Attack", "fgsm", "get_attack", "register_attack"]
