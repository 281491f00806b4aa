"""Attacks by name. Every attack takes eps in [0, 1] pixel units and [-1, 1] model inputs."""
from winn_robust.attacks.base import Attack, AttackOutput
from winn_robust.attacks.fgsm import fgsm
from winn_robust.attacks.registry import ATTACKS, VARIANTS, attack_class, attacks_for, get_attack, make_attack, parse_attack_options

__all__ = ["ATTACKS", "VARIANTS", "Attack", "AttackOutput", "attack_class", "attacks_for", "fgsm", "get_attack",
           "make_attack", "parse_attack_options"]
