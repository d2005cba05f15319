"""Representations of a batch of networks: flat vectors, per-layer tensors, PyG graphs."""

from weightspace.representations.flat import flat_to_params, params_to_flat
from weightspace.representations.graph import (
    GraphStructure,
    graph_batch_to_params,
    graph_structure,
    graph_to_params,
    params_to_graph,
    params_to_graph_batch,
    unbatch_params,
)
from weightspace.representations.layers import LayerTensors, layers_to_params, params_to_layers

__all__ = [
    "GraphStructure", "LayerTensors", "flat_to_params", "graph_batch_to_params",
    "graph_structure", "graph_to_params", "layers_to_params", "params_to_flat",
    "params_to_graph", "params_to_graph_batch", "params_to_layers", "unbatch_params",
]
