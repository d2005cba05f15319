"""Optimizers over stacked populations: every hyperparameter is a per-member tensor ``[P]``.

The update rules are exactly those of ``torch.optim.SGD`` (momentum, L2 weight decay),
``torch.optim.Adam`` (L2 weight decay) and ``torch.optim.AdamW`` (decoupled weight decay).
"""

from __future__ import annotations

import torch
from torch import Tensor

from catalog.errors import WeightzooError

OPTIMIZERS = ("sgd", "adam", "adamw")


def _per_member(v: Tensor, p: Tensor) -> Tensor:
    """``[P]`` -> ``[P, 1, ..., 1]`` broadcastable against a stacked parameter."""
    return v.view(-1, *([1] * (p.dim() - 1)))


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
        beta1, beta2 = self.betas
        for p, st in zip(self.params, self.state):
            if p.grad is None:
                continue
            g = p.grad
            lr = _per_member(self.lr, p)
            wd = _per_member(self.wd, p)
            if self.kind == "sgd":
                if self.any_wd:
                    g = g + wd * p
                buf = st.get("momentum")
                if buf is None:
                    buf = st["momentum"] = g.clone()
                else:
                    buf.mul_(_per_member(self.momentum, p)).add_(g)
                p.sub_(lr * buf)
                continue
            if self.kind == "adamw":
                if self.any_wd:
                    p.mul_(1 - lr * wd)
            elif self.any_wd:
                g = g + wd * p
            if not st:
                st["exp_avg"] = torch.zeros_like(p)
                st["exp_avg_sq"] = torch.zeros_like(p)
            m, v = st["exp_avg"], st["exp_avg_sq"]
            m.lerp_(g, 1 - beta1)
            v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
            bias_correction1 = 1 - beta1**t
            bias_correction2_sqrt = (1 - beta2**t) ** 0.5
            denom = (v.sqrt() / bias_correction2_sqrt).add_(self.eps)
            p.sub_((lr / bias_correction1) * m / denom)
