"""weightspace.representations.param_graph: parameter graphs of graph architectures (Lim et al.
2024), exact both ways, with the structure counted by hand on small cases."""

from __future__ import annotations

import pytest
import torch
from zoo_helpers import graph_specs, mlp_spec, random_weights

from catalog import nodes as nd
from catalog.network import NetworkSpec
from weightspace.representations.param_graph import (
    EDGE_TYPES,
    NODE_TYPES,
    param_graph_structure,
    param_graph_to_params,
    params_to_param_graph,
)
from zoo_builders.architectures import MLPConfig

SPECS = {
    **graph_specs(),
    "mlp-chain": mlp_spec(hidden=5),
    "mlp-on-images": MLPConfig(hidden=(6,)).network_spec((1, 8, 8), 10),
    "embedding": NetworkSpec("e", (3,), nodes=(
        nd.Embedding("emb", ("input",), 5, 2), nd.GlobalPool("p", ("emb",), over="tokens"),
        nd.Linear("fc", ("p",), 2, 2))),
}


@pytest.mark.parametrize("name", list(SPECS))
def test_round_trip_is_exact(name) -> None:
    spec = SPECS[name]
    params = random_weights(spec, 3, seed=0)
    g = params_to_param_graph(spec, params, edge_dim=40)
    back = param_graph_to_params(spec, g.x, g.edge_attr)
    assert list(back) == spec.param_names
    for k, v in params.items():
        assert torch.equal(back[k], v), k
    st = param_graph_structure(spec)
    assert g.num_graphs == 3 and g.x.shape == (3 * st.num_nodes, 2) and g.edge_attr.shape == (3 * st.num_edges, 40)


def test_structure_by_hand() -> None:
    # conv 1->2 (3x3) -> bn -> relu, skip-add with a 1x1 conv 1->2, flatten of [2, 2, 2], linear 8->3
    spec = NetworkSpec("t", (1, 2, 2), nodes=(
        nd.Conv2d("c", ("input",), 1, 2, (3, 3), padding=1), nd.BatchNorm("bn", ("c",), 2),
        nd.Activation("r", ("bn",), "relu"), nd.Conv2d("s", ("input",), 1, 2, (1, 1), bias=False),
        nd.Add("add", ("r", "s")), nd.Flatten("f", ("add",)), nd.Linear("fc", ("f",), 8, 3)))
    st = param_graph_structure(spec)
    # neurons: 1 input, 2 conv, 2 bn, 2 shortcut, 2 add, 3 output
    assert st.num_nodes == 12 and st.node_kind.tolist().count(0) == 1 and st.node_kind.tolist().count(2) == 3
    # edges: 2 conv + 2 bn + 2 shortcut + 4 residual + 2*3 linear (each with the 4 positions)
    assert st.num_edges == 16 and st.edge_dim == 9
    types = [EDGE_TYPES[t] for t in st.edge_type.tolist()]
    assert types.count("residual") == 4 and types.count("linear") == 6 and types.count("batchnorm") == 2
    params = random_weights(spec, 1, seed=1)
    g = params_to_param_graph(spec, params)
    e = g.edge_attr[st.edge_type == EDGE_TYPES.index("linear")]
    # the linear edge from the add's first neuron to the first output holds fc.weight[0, 0:4]
    torch.testing.assert_close(e[0, :4], params["fc.weight"][0, 0, :4])
    bn = g.edge_attr[st.edge_type == EDGE_TYPES.index("batchnorm")]
    torch.testing.assert_close(bn[:, :3], torch.stack([params[f"bn.{s}"][0] for s in
                                                       ("weight", "running_mean", "running_var")], 1))
    assert (g.edge_attr[st.constant_edges, 0] == 1).all()


def test_uncovered_layouts_say_so() -> None:
    from catalog.errors import WeightzooError

    tokens = NetworkSpec("e", (3,), nodes=(nd.Embedding("emb", ("input",), 5, 2), nd.Flatten("f", ("emb",)),
                                           nd.Linear("fc", ("f",), 6, 2)))
    with pytest.raises(WeightzooError, match="flatten 'f' of a token sequence is not covered"):
        param_graph_structure(tokens)


def test_input_values_and_tokens_are_positioned_neurons() -> None:
    # an MLP on 1x8x8 images only flattens its input: 64 input neurons, as in a layer chain
    st = param_graph_structure(SPECS["mlp-on-images"])
    inputs = st.node_kind == 0
    assert int(inputs.sum()) == 64 and st.io_pos[inputs].tolist() == list(range(64))
    assert st.edge_dim == 1 and st.num_edges == 64 * 6 + 6 * 10
    # embedding tokens are input neurons numbered by their id (the network input's 3 come first)
    st = param_graph_structure(SPECS["embedding"])
    tokens = st.node_type == NODE_TYPES.index("token")
    assert st.io_pos[tokens].tolist() == [0, 1, 2, 3, 4] and (st.node_kind[tokens] == 0).all()
