"""FGSM convention (docs/conventions.md): eps in [0, 1] pixel units, step 2*eps in [-1, 1] model space,
clip to [-1, 1], CE gradient on the true label in eval mode; equal to foolbox's FGSM."""
from __future__ import annotations

import pytest
import torch

from winn_robust.attacks import fgsm, get_attack
from winn_robust.errors import UserError
from winn_robust.models import build_model


@pytest.fixture(scope="module")
def resnet32():
    torch.manual_seed(0)
    return build_model("resnet32", (1, 28, 28), 10).eval()


def test_fgsm_step_is_twice_eps_in_model_space_and_clipped():
    torch.manual_seed(1)
    model = build_model("vanilla", (1, 8, 8), 10).eval()
    x = torch.rand(16, 1, 8, 8) * 2 - 1
    x[:, :, 0, 0] = 1.0   # pixels at the bounds must stay inside after the step
    x[:, :, 0, 1] = -1.0
    y = torch.randint(0, 10, (16,))
    adv = fgsm(model, x, y, 0.125)
    delta = adv - x
    assert adv.min() >= -1 and adv.max() <= 1
    interior = (x.abs() < 0.75)
    assert torch.allclose(delta[interior].abs(), torch.full_like(delta[interior], 0.25))
    assert delta.abs().max() <= 0.25 + 1e-7


def test_fgsm_follows_the_sign_of_the_true_label_ce_gradient():
    torch.manual_seed(2)
    model = build_model("vanilla", (1, 8, 8), 10).eval()
    x = (torch.rand(4, 1, 8, 8) * 1.0 - 0.5).requires_grad_(True)
    y = torch.tensor([1, 2, 3, 4])
    torch.nn.functional.cross_entropy(model(x), y).backward()
    adv = fgsm(model, x.detach(), y, 0.01)
    assert torch.equal((adv - x.detach()).sign(), x.grad.sign())


def test_fgsm_leaves_zero_gradient_pixels_and_uses_eval_mode():
    class Masked(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(4, 3)
            self.dropout = torch.nn.Dropout(0.9)

        def forward(self, x):
            return self.linear(self.dropout(x.flatten(1) * torch.tensor([1.0, 1.0, 0.0, 0.0])))

    model = Masked().train()
    x = torch.zeros(5, 1, 2, 2)
    y = torch.zeros(5, dtype=torch.long)
    first, second = fgsm(model, x, y, 0.1), fgsm(model, x, y, 0.1)
    assert torch.equal(first, second)           # eval mode: dropout off, deterministic
    assert torch.equal(first.flatten(1)[:, 2:], torch.zeros(5, 2))  # zero gradient: pixel stays
    assert model.training                       # the caller's mode is restored


@pytest.mark.parametrize("eps", [-0.01, 1.5])
def test_eps_outside_unit_interval_is_a_user_error(eps):
    model = build_model("vanilla", (1, 8, 8), 10)
    with pytest.raises(UserError, match=r"\[0, 1\] pixel units"):
        fgsm(model, torch.zeros(1, 1, 8, 8), torch.zeros(1, dtype=torch.long), eps)


def test_our_fgsm_equals_foolbox_fgsm_on_resnet32(resnet32):
    torch.manual_seed(3)
    x = torch.rand(32, 1, 28, 28) * 2 - 1
    y = torch.randint(0, 10, (32,))
    ours = get_attack("fgsm")(resnet32, x, y, 0.125)
    theirs = get_attack("foolbox-fgsm")(resnet32, x, y, 0.125)
    assert (ours - theirs).abs().max().item() <= 1e-6
    assert (ours - x).abs().max().item() == pytest.approx(0.25)


def test_foolbox_pgd_stays_inside_the_budget():
    torch.manual_seed(4)
    model = build_model("vanilla", (1, 12, 12), 10).eval()
    x = torch.rand(8, 1, 12, 12) * 2 - 1
    y = torch.randint(0, 10, (8,))
    adv = get_attack("foolbox-pgd")(model, x, y, 0.05)
    assert (adv - x).abs().max().item() <= 0.1 + 1e-6
    assert adv.min() >= -1 and adv.max() <= 1
    assert (adv - x).abs().max().item() > 0.05, "PGD must move the images"


@pytest.mark.parametrize("name", ["fgsm", "foolbox-fgsm"])
def test_attacks_leave_a_training_model_as_they_found_it(name):
    model = build_model("vanilla", (1, 8, 8), 10).train()
    model.critic.weight.requires_grad_(False)
    flags = [p.requires_grad for p in model.parameters()]
    x = torch.rand(4, 1, 8, 8) * 2 - 1
    get_attack(name)(model, x, torch.tensor([0, 1, 2, 3]), 0.1)
    assert model.training
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is None for p in model.parameters()), "attacks must not compute weight gradients"


def test_unknown_attack_is_a_user_error():
    with pytest.raises(UserError, match="unknown attack"):
        get_attack("deepfool-9000")
