"""Representations of a batch of networks: flat vectors, per-layer tensors, PyG graphs (neuron
graphs of layer chains; parameter graphs of graph architectures)."""

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
from weightspace.representations.param_graph import (
    ParamGraphStructure,
    param_graph_structure,
    param_graph_to_params,
    params_to_param_graph,
    params_to_param_graph_batch,
)

__all__ = [
    "GraphStructure", "LayerTensors", "ParamGraphStructure", "flat_to_params",
    "graph_batch_to_params", "graph_structure", "graph_to_params", "layers_to_params",
    "param_graph_structure", "param_graph_to_params", "params_to_flat", "params_to_graph",
    "params_to_graph_batch", "params_to_layers", "params_to_param_graph", "params_to_param_graph_batch",
    "unbatch_params",
]
