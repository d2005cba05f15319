"""What the estimators and probes read from a population: each model's penultimate features
and its outputs on a set of inputs, in one batched pass.

The penultimate features are the neuron values entering the last layer: the last hidden
layer of an MLP, the globally pooled channels of a CNN (for a single-layer network, the
flattened input itself); for a graph network (ResNet, VGG, ViT, ...), the input of its last
node, flattened (a ResNet's pooled channels, a ViT's pooled token).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from catalog.execution import graph_population_values
from catalog.network import NetworkSpec, population_forward
from retrieval._checks import ArrayLike, as_inputs, check_params

#: Examples per forward pass (bounds memory at ``P * CHUNK * width`` floats per layer).
CHUNK = 1024


@dataclass(frozen=True)
class ModelReadout:
    """Features and outputs of ``P`` models on ``N`` inputs.

    Shapes:
        ``features [P, N, D]`` (penultimate neuron values), ``logits [P, N, C]``.
    """

    features: Tensor
    logits: Tensor

    @property
    def probs(self) -> Tensor:
        """Softmax of the logits, ``[P, N, C]``."""
        return torch.softmax(self.logits, dim=-1)

    @property
    def predictions(self) -> Tensor:
        """Argmax of the logits, ``[P, N]`` int64."""
        return self.logits.argmax(-1)


@torch.no_grad()
def read_models(spec: NetworkSpec, params: Mapping[str, Tensor], x: ArrayLike,
                chunk: int = CHUNK) -> ModelReadout:
    """Run a stacked population on inputs and keep its penultimate features and logits.

    Args:
        spec: the population's architecture.
        params: ``{name: Tensor[P, *shape]}`` stacked parameters (``Selection.stacked()``).
        x: ``[N, *input_shape]`` inputs (examples with the same number of values in another
            layout are reshaped; others raise :class:`~catalog.errors.WeightzooError`).
        chunk: examples per forward pass (default :data:`CHUNK`).

    Shapes:
        returns features ``[P, N, D]`` and logits ``[P, N, C]`` (float32, or the spec's dtype).
    """
    n_pop = check_params(spec, params)
    xs = as_inputs(spec, x)
    params = {k: v.detach().to(spec.torch_dtype) for k, v in params.items()}
    feats, logits = [], []
    for start in range(0, xs.shape[0], chunk):
        xb = xs[start:start + chunk]
        if not spec.is_chain:  # a graph: the last node's input
            last = spec.nodes[-1]
            values = graph_population_values(spec, params, xb, [last.inputs[0], last.name])
            feats.append(values[last.inputs[0]].flatten(2))
            logits.append(values[last.name])
            continue
        acts: list[Tensor] = []
        out = population_forward(spec, params, xb, activations=acts)
        if len(spec.layers) > 1:
            feats.append(acts[-2])
        else:
            feats.append(xb.reshape(1, xb.shape[0], -1).expand(n_pop, -1, -1))
        logits.append(out)
    return ModelReadout(torch.cat(feats, 1), torch.cat(logits, 1))
