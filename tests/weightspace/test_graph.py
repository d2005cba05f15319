import pytest
import torch
from torch_geometric.data import Batch
from ws_helpers import cnn_spec, mlp_spec, random_params, siren_spec

from weightspace import (
    graph_batch_to_params,
    graph_structure,
    graph_to_params,
    params_to_graph,
    params_to_graph_batch,
    unbatch_params,
)


def _one(params, i):
    return {k: v[i] for k, v in params.items()}


@pytest.mark.parametrize(
    "spec",
    [mlp_spec(), cnn_spec(1), cnn_spec(2), siren_spec()],
    ids=["mlp", "cnn1d", "cnn2d", "siren"],
)
def test_round_trip_exact(spec):
    params = random_params(spec, 3, seed=1)
    g = params_to_graph(spec, _one(params, 0))
    st = graph_structure(spec)
    assert g.num_nodes == sum(spec.layer_widths) == st.num_nodes
    assert g.edge_index.shape == (2, st.num_edges)
    assert g.edge_attr.shape == (st.num_edges, st.edge_dim)
    assert g.x.shape == (st.num_nodes, 2)  # bias, layer index
    back = graph_to_params(spec, g)
    assert list(back) == spec.param_names
    for name, t in back.items():
        assert torch.equal(t, params[name][0])
    # batched, vectorised path
    batch = params_to_graph_batch(spec, params)
    assert batch.num_graphs == 3
    back = graph_batch_to_params(spec, batch.x, batch.edge_attr)
    for name, t in back.items():
        assert torch.equal(t, params[name])


def test_mlp_graph_by_hand():
    spec = mlp_spec((2, 3, 1))
    params = random_params(spec, 1)
    g = params_to_graph(spec, _one(params, 0))
    # nodes 0-1 inputs, 2-4 hidden, 5 output; edge (o, i) of layer 0 goes i -> 2 + o
    assert g.edge_index[:, :6].tolist() == [[0, 1, 0, 1, 0, 1], [2, 2, 3, 3, 4, 4]]
    assert g.edge_index[:, 6:].tolist() == [[2, 3, 4], [5, 5, 5]]
    assert torch.equal(g.edge_attr[:6, 0], params["layers.0.weight"][0].reshape(-1))
    assert torch.equal(g.x[2:5, 0], params["layers.0.bias"][0])
    assert g.x[:2, 0].abs().sum() == 0
    assert g.x[:, 1].tolist() == [0, 0, 1, 1, 1, 2]
    assert g.node_kind.tolist() == [0, 0, 1, 1, 1, 2]


def test_structure_is_cached():
    assert graph_structure(mlp_spec()) is graph_structure(mlp_spec())


def test_heterogeneous_batch():
    groups = [
        (mlp_spec(), random_params(mlp_spec(), 3, seed=2)),
        (cnn_spec(2), random_params(cnn_spec(2), 2, seed=3)),
        (siren_spec(), random_params(siren_spec(), 2, seed=4)),
        (mlp_spec((5, 11, 9, 8, 3)), random_params(mlp_spec((5, 11, 9, 8, 3)), 1, seed=5)),
        (cnn_spec(1), random_params(cnn_spec(1), 1, seed=6)),
    ]
    batch = params_to_graph_batch(groups)
    assert batch.edge_attr.shape[1] == 9  # the 3x3 kernels
    specs = [s for s, p in groups for _ in range(p["layers.0.weight"].shape[0])]
    assert batch.num_graphs == len(specs) == 9
    # same as PyG's own batching of per-network graphs
    data = [
        params_to_graph(s, _one(p, i), edge_dim=9)
        for s, p in groups
        for i in range(p["layers.0.weight"].shape[0])
    ]
    ref = Batch.from_data_list(data)
    for key in (
        "x",
        "edge_index",
        "edge_attr",
        "batch",
        "ptr",
        "layer",
        "node_kind",
        "io_pos",
        "edge_layer",
    ):
        assert torch.equal(batch[key], ref[key]), key
    # exact way back, network by network
    back = unbatch_params(batch, specs)
    flat = [_one(p, i) for _, p in groups for i in range(p["layers.0.weight"].shape[0])]
    for got, want in zip(back, flat):
        assert got.keys() == want.keys()
        assert all(torch.equal(got[k], want[k]) for k in want)
    # and through PyG's to_data_list as well
    for d, s, want in zip(ref.to_data_list(), specs, flat):
        got = graph_to_params(s, d)
        assert all(torch.equal(got[k], want[k]) for k in want)
