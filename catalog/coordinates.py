"""The input convention of implicit neural representations (SIRENs) stored in zoos.

An INR of an ``H x W`` image maps a pixel's coordinates to its intensity. Its inputs are the
pixel coordinates ``(row, col)`` scaled to ``[-1, 1]``, row-major: the builder trains on them,
and anything that renders a stored INR (editing, probes, plots) must feed the same grid.
"""

from __future__ import annotations

import torch
from torch import Tensor


def image_coordinates(height: int, width: int) -> Tensor:
    """Pixel coordinates in ``[-1, 1]^2``, row-major (``linspace(-1, 1, H) x linspace(-1, 1, W)``).

    Shapes:
        returns ``[height * width, 2]``.
    """
    rows = torch.linspace(-1, 1, height)
    cols = torch.linspace(-1, 1, width)
    return torch.stack(torch.meshgrid(rows, cols, indexing="ij"), dim=-1).reshape(-1, 2)
