"""Cross-entropy loss and accuracy of every member of a stacked population on shared data, and
batch-norm statistics recomputed from data."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from catalog.execution import eval_pass_examples, graph_population_forward
from catalog.network import NetworkSpec, population_forward
from weightspace.analysis._population import Params, data_batch, population_size

#: Most examples per forward pass of :func:`population_loss_accuracy`; a population of more
#: than 4 networks takes fewer (:func:`~catalog.execution.eval_pass_examples`), which bounds the
#: activations held.
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
        batch_size: most examples per forward pass (default :data:`EVAL_BATCH`; fewer for
            populations of more than ``EVAL_MEMBER_EXAMPLES / batch_size`` networks, see
            :func:`~catalog.execution.eval_pass_examples`).

    Shapes:
        returns ``(loss [P], accuracy [P])`` in ``float32``; accuracy in ``[0, 1]``, NaN for a
        network whose outputs are not all finite (its loss is not finite either).
    """
    n_pop = population_size(spec, params)
    # The points of 64 paths between ViTs are 704 networks: 1,024 examples at once held
    # gigabytes of activations.
    batch_size = eval_pass_examples(n_pop, batch_size)
    x, y = data_batch(spec, x, y)
    loss = torch.zeros(n_pop, dtype=torch.float64)
    correct = torch.zeros(n_pop, dtype=torch.float64)
    finite = torch.ones(n_pop, dtype=torch.bool)
    with torch.no_grad():
        for start in range(0, x.shape[0], batch_size):
            xb, yb = x[start:start + batch_size], y[start:start + batch_size]
            out = population_forward(spec, params, xb)  # [P, B, C]
            yy = yb.expand(n_pop, -1)
            ce = F.cross_entropy(out.flatten(0, 1), yy.flatten(), reduction="none")
            loss += ce.view(n_pop, -1).double().sum(1)
            correct += (out.argmax(-1) == yy).double().sum(1)
            finite &= torch.isfinite(out).flatten(1).all(1)
    # As zoo_builders.train.evaluate_classifier: argmax of NaN logits is class 0, not a prediction.
    return (loss / x.shape[0]).float(), torch.where(finite, (correct / x.shape[0]).float(), torch.nan)


def recompute_batch_norm(spec: NetworkSpec, params: Params, x: Tensor | Sequence[Tensor],
                         batch_size: int = 128) -> dict[str, Tensor]:
    """Batch-norm running statistics recomputed from data, as Garipov et al.'s ``bn_update``:
    for every batch norm, the mean over ``x``'s batches (weighted by size) of the batch mean and
    unbiased variance it sees in training mode. Networks between two trained ones (the points of
    a path) need this: interpolated statistics are not the statistics of interpolated weights.

    Args:
        spec: the shared architecture.
        params: ``{name: Tensor[P, *shape]}`` stacked parameters (their statistics are ignored).
        x: inputs ``[N, *input_shape]`` (or a sequence of batches), e.g. the training data.
        batch_size: examples per batch (default ``128``).

    Shapes:
        returns ``{buffer name: Tensor[P, *shape]}`` (empty for a spec without batch norm).
    """
    names = [p.name for p in spec.params if not p.trainable]
    if not names:
        return {}
    population_size(spec, params)
    x = torch.cat(list(x)) if isinstance(x, (list, tuple)) else x
    x = x.reshape(-1, *spec.input_shape).to(spec.torch_dtype)
    total = {k: torch.zeros(params[k].shape, dtype=torch.float64) for k in names}
    with torch.no_grad():
        for start in range(0, x.shape[0], batch_size):
            xb = x[start:start + batch_size]
            _, stats = graph_population_forward(spec, params, xb, training=True, batch_stats=True)
            for k in names:
                total[k] += stats[k].double() * xb.shape[0]
    return {k: (v / x.shape[0]).to(params[k].dtype) for k, v in total.items()}
