"""Cross-entropy loss and accuracy of every member of a stacked population on shared data."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from catalog.network import NetworkSpec, population_forward
from weightspace.analysis._population import Params, data_batch, population_size

#: Examples per forward pass of :func:`population_loss_accuracy` (bounds the activations held).
EVAL_BATCH = 1024


def population_loss_accuracy(
    spec: NetworkSpec, params: Params, x: Tensor | Sequence[Tensor], y: Tensor | Sequence[Tensor],
    batch_size: int = EVAL_BATCH,
) -> tuple[Tensor, Tensor]:
    """Mean cross-entropy loss and accuracy of each network on ``(x, y)``, without gradients.

    Args:
        spec: the shared architecture (a classifier: outputs are logits).
        params: ``{name: Tensor[P, *shape]}`` stacked parameters.
        x: inputs ``[N, *input_shape]`` (or a sequence of batches, concatenated).
        y: class labels ``[N]`` (or a sequence of batches).
        batch_size: examples per forward pass (default :data:`EVAL_BATCH`).

    Shapes:
        returns ``(loss [P], accuracy [P])`` in ``float32``; accuracy in ``[0, 1]``.
    """
    n_pop = population_size(spec, params)
    x, y = data_batch(spec, x, y)
    loss = torch.zeros(n_pop, dtype=torch.float64)
    correct = torch.zeros(n_pop, dtype=torch.float64)
    with torch.no_grad():
        for start in range(0, x.shape[0], batch_size):
            xb, yb = x[start:start + batch_size], y[start:start + batch_size]
            out = population_forward(spec, params, xb)  # [P, B, C]
            yy = yb.expand(n_pop, -1)
            ce = F.cross_entropy(out.flatten(0, 1), yy.flatten(), reduction="none")
            loss += ce.view(n_pop, -1).double().sum(1)
            correct += (out.argmax(-1) == yy).double().sum(1)
    return (loss / x.shape[0]).float(), (correct / x.shape[0]).float()
