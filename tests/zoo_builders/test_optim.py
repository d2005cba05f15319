"""zoo_builders.optim: each member of a population optimizer takes the steps torch.optim takes for
that member alone, with its own learning rate, weight decay and momentum."""

from __future__ import annotations

import pytest
import torch

from catalog.errors import WeightzooError
from zoo_builders.optim import PopulationOptimizer

SHAPES = [(3, 4, 5), (3, 4), (3, 2, 4, 3, 3)]  # a linear map, its bias, a conv kernel; 3 members
LR = torch.tensor([1e-3, 3e-2, 1e-1])
WD = torch.tensor([0.0, 1e-2, 0.5])
MOMENTUM = torch.tensor([0.0, 0.9, 0.5])


def reference(kind: str, member: int, params: list[torch.Tensor]) -> torch.optim.Optimizer:
    lr, wd = float(LR[member]), float(WD[member])
    if kind == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=float(MOMENTUM[member]), weight_decay=wd)
    return (torch.optim.Adam if kind == "adam" else torch.optim.AdamW)(params, lr=lr, weight_decay=wd)


@pytest.mark.parametrize("kind", ["sgd", "adam", "adamw"])
def test_each_member_steps_as_torch_optim_alone(kind: str) -> None:
    g = torch.Generator().manual_seed(0)
    start = [torch.randn(s, generator=g) for s in SHAPES]
    grads = [[torch.randn(s, generator=g) for s in SHAPES] for _ in range(6)]
    stacked = [p.clone().requires_grad_() for p in start]
    opt = PopulationOptimizer(kind, stacked, LR, WD, MOMENTUM)
    alone = [[p[i].clone().requires_grad_() for p in start] for i in range(3)]
    refs = [reference(kind, i, alone[i]) for i in range(3)]
    for step_grads in grads:
        for p, grad in zip(stacked, step_grads):
            p.grad = grad.clone()
        opt.step()
        opt.zero_grad()
        for i in range(3):
            for p, grad in zip(alone[i], step_grads):
                p.grad = grad[i].clone()
            refs[i].step()
    for i in range(3):
        for p, q in zip(stacked, alone[i]):
            # the same rule; products taken in another order round differently in the last bits
            torch.testing.assert_close(p.detach()[i], q.detach(), rtol=1e-6, atol=1e-7)
    moved = [not torch.equal(p.detach(), s) for p, s in zip(stacked, start)]
    assert all(moved)


def test_a_parameter_without_gradient_steps_as_with_zero_gradient() -> None:
    # torch.optim skips it; a population steps it as if its gradient were zero, so that weight
    # decay and momentum still act on it (members share one computation graph).
    p = torch.ones(2, 3, requires_grad=True)
    PopulationOptimizer("sgd", [p], torch.tensor([0.1, 0.1]), torch.tensor([0.5, 0.0]), torch.zeros(2)).step()
    # SGD with L2 decay 0.5, lr 0.1, gradient 0: 1 - 0.1 * 0.5 * 1 = 0.95 for member 0, 1 for member 1
    assert torch.equal(p.detach(), torch.tensor([[0.95] * 3, [1.0] * 3]))


def test_unknown_optimizer_is_refused() -> None:
    with pytest.raises(WeightzooError, match="valid optimizers: sgd, adam, adamw"):
        PopulationOptimizer("rmsprop", [], torch.zeros(1), torch.zeros(1), torch.zeros(1))
