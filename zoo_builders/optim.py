"""Optimizers over stacked populations: every hyperparameter is a per-member tensor ``[P]``.

The update rules are exactly those of ``torch.optim.SGD`` (momentum, L2 weight decay),
``torch.optim.Adam`` (L2 weight decay) and ``torch.optim.AdamW`` (decoupled weight decay).
"""

from __future__ import annotations

import torch
from torch import Tensor

from catalog.errors import WeightzooError

OPTIMIZERS = ("sgd", "adam", "adamw")


class PopulationOptimizer:
    """One optimizer state for a stack of ``P`` independent models.

    Args:
        kind: ``sgd``, ``adam`` or ``adamw``.
        params: stacked parameters ``Tensor[P, *shape]`` (leaf tensors with grads).
        lr: learning rates ``Tensor[P]``.
        weight_decay: weight decays ``Tensor[P]``.
        momentum: SGD momenta ``Tensor[P]`` (ignored by Adam).
        betas: Adam betas (default ``(0.9, 0.999)``).
        eps: Adam epsilon (default ``1e-8``).
    """

    def __init__(self, kind: str, params: list[Tensor], lr: Tensor, weight_decay: Tensor,
                 momentum: Tensor, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        if kind not in OPTIMIZERS:
            raise WeightzooError(f"unknown optimizer {kind!r}; valid optimizers: {', '.join(OPTIMIZERS)}")
        self.kind = kind
        self.params = params
        self.lr, self.wd, self.momentum = lr, weight_decay, momentum
        self.betas, self.eps = betas, eps
        self.step_count = 0
        self.state: list[dict[str, Tensor]] = [{} for _ in params]
        self.any_wd = bool((weight_decay != 0).any())

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        self.step_count += 1
        t = self.step_count
        params = self.params
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        shapes = [(-1, *([1] * (p.dim() - 1))) for p in params]
        if self.kind == "sgd":
            if self.any_wd:
                grads = torch._foreach_add(grads, torch._foreach_mul(params, [self.wd.view(s) for s in shapes]))
            if "momentum" not in self.state[0]:
                bufs = [g.clone() for g in grads]
                for st, b in zip(self.state, bufs):
                    st["momentum"] = b
            else:
                bufs = [st["momentum"] for st in self.state]
                torch._foreach_mul_(bufs, [self.momentum.view(s) for s in shapes])
                torch._foreach_add_(bufs, grads)
            torch._foreach_sub_(params, torch._foreach_mul(bufs, [self.lr.view(s) for s in shapes]))
            return
        beta1, beta2 = self.betas
        if self.kind == "adamw":
            if self.any_wd:
                torch._foreach_mul_(params, [(1 - self.lr * self.wd).view(s) for s in shapes])
        elif self.any_wd:
            grads = torch._foreach_add(grads, torch._foreach_mul(params, [self.wd.view(s) for s in shapes]))
        if not self.state[0]:
            for st, p in zip(self.state, params):
                st["exp_avg"] = torch.zeros_like(p)
                st["exp_avg_sq"] = torch.zeros_like(p)
        ms = [st["exp_avg"] for st in self.state]
        vs = [st["exp_avg_sq"] for st in self.state]
        torch._foreach_lerp_(ms, grads, 1 - beta1)
        torch._foreach_mul_(vs, beta2)
        torch._foreach_addcmul_(vs, grads, grads, 1 - beta2)
        bias_correction1 = 1 - beta1**t
        bias_correction2_sqrt = (1 - beta2**t) ** 0.5
        denom = torch._foreach_sqrt(vs)
        torch._foreach_div_(denom, bias_correction2_sqrt)
        torch._foreach_add_(denom, self.eps)
        step_size = self.lr / bias_correction1  # [P]
        updates = torch._foreach_mul(ms, [step_size.view(s) for s in shapes])
        torch._foreach_addcdiv_(params, updates, denom, value=-1.0)
