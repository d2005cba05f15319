"""Small building blocks shared by the metanetworks (private)."""

from __future__ import annotations

from torch import nn

from catalog.errors import WeightzooError


def make_mlp(in_dim: int, hidden: int, out_dim: int, depth: int, dropout: float = 0.0) -> nn.Sequential:
    """``depth`` hidden layers of width ``hidden`` with ReLU, then a linear output layer.

    Shapes:
        ``[*, in_dim]`` -> ``[*, out_dim]``.
    """
    mods: list[nn.Module] = []
    width = in_dim
    for _ in range(depth):
        mods += [nn.Linear(width, hidden), nn.ReLU()]
        if dropout > 0:
            mods.append(nn.Dropout(dropout))
        width = hidden
    mods.append(nn.Linear(width, out_dim))
    return nn.Sequential(*mods)


def check_positive(**values: float) -> None:
    """Raise a user error naming the first hyperparameter that is not positive."""
    for name, value in values.items():
        if not value > 0:
            raise WeightzooError(f"hyperparameter {name} must be positive, got {value}")


def check_dropout(dropout: float) -> None:
    if not 0.0 <= dropout < 1.0:
        raise WeightzooError(f"dropout must be in [0, 1), got {dropout}")
