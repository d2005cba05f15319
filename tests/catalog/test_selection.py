"""Selection: loading weights (stacked, state dicts, modules), re-joins, architectures, checksums."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file
from zoo_helpers import flip_weight_byte, write_activation_zoo

from catalog import IntegrityError, QueryEngine, QueryError, RowIndexError, open_zoo, population_forward


def expected_weights(zoo, rows):
    """Weights read independently: whole shard files, indexed by weights_row."""
    cache = {}
    out = {}
    for r in rows:
        shard = cache.setdefault(r["weights_shard"], load_file(str(zoo.root / r["weights_shard"])))
        for k, v in shard.items():
            out.setdefault(k, []).append(v[r["weights_row"]])
    return {k: torch.stack(v) for k, v in out.items()}


def test_stacked_in_query_order(zoo_dir):
    zoo = open_zoo(zoo_dir)
    sel = zoo.select(where="checkpoint = 2", order_by="test_acc DESC, model_id")
    batch = sel.stacked()
    want = expected_weights(zoo, sel.table.to_pylist())
    assert set(batch) == set(sel.network_spec.param_names)
    for k in want:
        assert batch[k].shape == (12, *want[k].shape[1:])
        assert torch.equal(batch[k], want[k])


def test_contiguous_whole_zoo(zoo_dir):
    zoo = open_zoo(zoo_dir)
    sel = zoo.select()
    batch = sel.stacked()
    want = expected_weights(zoo, sel.table.to_pylist())
    assert all(torch.equal(batch[k], want[k]) for k in want)


def test_rejoin_when_weight_columns_missing(zoo_dir):
    zoo = open_zoo(zoo_dir)
    full = zoo.select(where="lr = 0.01", order_by="model_id DESC")
    slim = zoo.sql("SELECT model_id, test_acc FROM models WHERE lr = 0.01 ORDER BY model_id DESC")
    assert "weights_shard" not in slim.columns
    a, b = full.stacked(), slim.stacked()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert slim.column("run_id") == full.column("run_id")  # looked up by model_id


def test_duplicate_rows(zoo_dir):
    zoo = open_zoo(zoo_dir)
    sel = zoo.sql("SELECT * FROM models WHERE model_id = 'tiny-h8-r001-c0' "
                  "UNION ALL SELECT * FROM models WHERE model_id = 'tiny-h8-r001-c0'")
    b = sel.stacked()
    assert torch.equal(b["layers.0.weight"][0], b["layers.0.weight"][1])


def test_aggregate_has_no_weights(zoo_dir):
    sel = open_zoo(zoo_dir).sql("SELECT activation, avg(test_acc) FROM models GROUP BY 1")
    with pytest.raises(QueryError, match="model_id"):
        sel.stacked()


def test_empty_selection(zoo_dir):
    sel = open_zoo(zoo_dir).select(where="false")
    with pytest.raises(QueryError, match="empty"):
        sel.stacked()
    assert sel.state_dicts() == [] and sel.modules() == []


@pytest.mark.parametrize("indices, needle", [
    ([1000], r"row position\(s\) \[1000\] outside this selection of 36 rows \(valid: 0 to 35; negative"),
    ([-1], r"row position\(s\) \[-1\] outside this selection of 36 rows \(valid: 0 to 35"),
    ([0, 36, 5, -2], r"\[36, -2\] outside"),
    ([True, False], r"integer row positions, got 1-D bool; for a boolean mask pass np.flatnonzero\(mask\)"),
    ([0.5], "integer row positions, got 1-D float64"),
])
def test_take_outside_the_selection_names_the_valid_range(zoo_dir, indices, needle):
    """take([1000]) / take([-1]) raised pyarrow's bare ArrowIndexError; a mask took rows 1 and 0."""
    sel = open_zoo(zoo_dir).select()
    with pytest.raises(RowIndexError, match=needle) as e:
        sel.take(indices)
    assert isinstance(e.value, IndexError) and isinstance(e.value, QueryError)  # Python's and the CLI's


def test_take_in_range_keeps_working(zoo_dir):
    sel = open_zoo(zoo_dir).select(order_by="model_id")
    ids = sel.column("model_id")
    assert sel.take([35, 0, 0]).column("model_id") == [ids[35], ids[0], ids[0]]
    assert len(sel.take([])) == 0 and sel.take(range(2)).column("model_id") == ids[:2]
    with pytest.raises(RowIndexError, match=r"valid: none: the selection is empty"):
        sel.take([]).take([0])


def test_arch_ids_are_the_architectures_the_weights_load_as(multi_arch_dir):
    """A query renaming another column AS arch_id: arch_ids listed the renamed values while
    stacked() and by_arch() loaded by the rows' architectures."""
    zoo = open_zoo(multi_arch_dir)
    sel = zoo.sql("SELECT model_id, activation AS arch_id FROM models ORDER BY model_id")
    assert set(sel.column("arch_id")) == {"relu", "tanh"}  # the query's own column is kept
    assert sel.arch_ids == list(sel.positions_by_arch()) == list(sel.by_arch())
    assert set(sel.arch_ids) == set(zoo.manifest.architectures)
    agg = zoo.sql("SELECT arch_id, count(*) AS n FROM models GROUP BY arch_id ORDER BY arch_id")
    assert agg.arch_ids == sorted(zoo.manifest.architectures)  # no model_id: the query's column


def test_state_dicts_and_modules(zoo_dir):
    zoo = open_zoo(zoo_dir)
    sel = zoo.select(where="checkpoint = 1", limit=5)
    sds = sel.state_dicts()
    assert len(sds) == 5
    ref = zoo.state_dict(sel.column("model_id")[2])
    assert all(torch.equal(sds[2][k], ref[k]) for k in ref)
    mods = sel.modules()
    x = torch.randn(7, 4, generator=torch.Generator().manual_seed(0))  # seeded: the test must not depend on order
    out = population_forward(sel.network_spec, sel.stacked(), x)
    for i, m in enumerate(mods):
        assert not m.training
        torch.testing.assert_close(m(x), out[i], rtol=1e-5, atol=1e-6)


def test_several_architectures(multi_arch_dir):
    zoo = open_zoo(multi_arch_dir)
    sel = zoo.select(order_by="model_id")
    assert len(sel.arch_ids) == 2
    with pytest.raises(QueryError) as e:
        sel.stacked()
    msg = str(e.value)
    assert all(a in msg for a in sel.arch_ids) and "by_arch" in msg
    assert "widths" in msg  # what distinguishes them: 4-8-3 vs 4-6-3
    with pytest.raises(QueryError, match="by_arch"):
        _ = sel.network_spec
    groups = sel.by_arch()
    assert sorted(groups) == sorted(sel.arch_ids)
    assert sum(len(g) for g in groups.values()) == len(sel)
    for arch, g in groups.items():
        b = g.stacked()
        assert b["layers.0.bias"].shape[1] == g.network_spec.layers[0].out_features
        assert torch.equal(sel.stacked(arch_id=arch)["layers.0.weight"], b["layers.0.weight"])
    with pytest.raises(QueryError, match="no row"):
        sel.stacked(arch_id="mlp-nope")
    sds = sel.state_dicts()  # mixed architectures, row order kept
    for sd, mid in zip(sds, sel.column("model_id")):
        ref = zoo.state_dict(mid)
        assert all(torch.equal(sd[k], ref[k]) for k in ref)
    assert len(sel.modules()) == len(sel)


def test_weights_from_several_zoos(zoo_dir, multi_arch_dir):
    a, b = open_zoo(zoo_dir), open_zoo(multi_arch_dir)
    engine = QueryEngine.over_zoos([a, b])
    sel = engine.sql("SELECT * FROM models WHERE arch_id IN (SELECT arch_id FROM models WHERE zoo = 'tiny') "
                     "ORDER BY test_acc DESC, zoo, model_id")
    assert set(sel.column("zoo")) == {"tiny", "wide"}  # h8 is the same architecture in both
    batch = sel.stacked()
    for i, (z, mid) in enumerate(zip(sel.column("zoo"), sel.column("model_id"))):
        ref = (a if z == "tiny" else b).state_dict(mid)
        assert all(torch.equal(batch[k][i], ref[k]) for k in ref)
    slim = engine.sql("SELECT model_id FROM models WHERE zoo = 'wide' AND checkpoint = 0")
    assert len(slim.stacked(arch_id=slim.arch_ids[0])["layers.0.bias"]) == 4


def test_corrupt_row_fails_to_load(zoo_copy):
    zoo = open_zoo(zoo_copy)
    row = next(r for r in zoo.table.to_pylist() if r["weights_row"] == 3)
    flip_weight_byte(zoo_copy / row["weights_shard"], "layers.1.weight", 3)
    zoo = open_zoo(zoo_copy)
    sel = zoo.select(order_by="model_id")
    with pytest.raises(IntegrityError) as e:
        sel.stacked()
    assert row["weights_shard"] in str(e.value) and "3" in str(e.value)
    with pytest.raises(IntegrityError):
        zoo.state_dict(row["model_id"])
    with pytest.raises(IntegrityError):
        zoo.select(where=f"model_id = '{row['model_id']}'").modules()
    assert sel.stacked(verify=False)["layers.1.weight"].shape[0] == 36
    # rows that are intact still load
    ok = zoo.select(where=f"model_id != '{row['model_id']}'")
    assert len(ok.stacked()["layers.0.bias"]) == 35


def test_stacked_across_architectures_with_the_same_parameters(tmp_path):
    """ReLU and tanh MLPs of one shape stack into one batch, in selection order; what tells
    them apart is in the error of anything that needs one architecture."""
    zoo = open_zoo(write_activation_zoo(tmp_path / "acts"))
    sel = zoo.select(where="checkpoint > 0", order_by="test_acc DESC, model_id")
    assert len(sel.arch_ids) == 2
    batch = sel.stacked()
    assert batch["layers.0.weight"].shape == (len(sel), 8, 4)
    for i, mid in enumerate(sel.column("model_id")):
        ref = zoo.state_dict(mid)
        assert all(torch.equal(batch[k][i], ref[k]) for k in ref)
    assert sorted(sel.network_specs) == sorted(sel.arch_ids)
    with pytest.raises(QueryError) as e:
        _ = sel.network_spec
    assert "activation" in str(e.value) and "relu" in str(e.value) and "tanh" in str(e.value)


def test_differences_of_many_architectures_are_counted_not_listed() -> None:
    from zoo_helpers import mlp_spec

    from catalog import nodes as nd
    from catalog.network import NetworkSpec
    from catalog.selection import describe_differences, name_some

    assert name_some(["a", "b", "c"]) == "a, b, c"
    assert name_some(list("abcdef")) == "a, b, c and 3 more"
    # Few architectures: each named with its value.
    two = {s.arch_id: s for s in (mlp_spec(8), mlp_spec(6))}
    a, b = two
    assert describe_differences(two) == f"widths ({a}: 4-8-3; {b}: 4-6-3)"
    # Six MLPs of widths 2, 2, 3, 4, 5, 6 and a graph: each value once, with how many have it and
    # one of them; five distinct widths (with the graph's "-") show four and count the rest.
    mlps = [mlp_spec(w) for w in (2, 2, 3, 4, 5, 6)]
    mlps[1] = mlp_spec(2, activation="tanh")  # same widths as mlps[0], another architecture
    graph = NetworkSpec("t", (4,), nodes=(nd.Linear("fc", ("input",), 4, 3),))
    specs = {s.arch_id: s for s in (*mlps, graph)}
    text = describe_differences(specs)
    assert text.startswith(f"family (mlp: 6 architectures, e.g. {mlps[0].arch_id}; t: {graph.arch_id}), "
                           f"widths (4-2-3: 2 architectures, e.g. {mlps[0].arch_id}; 4-3-3: {mlps[2].arch_id}; ")
    assert "; 2 more values)" in text  # 4-2-3, 4-3-3, 4-4-3, 4-5-3 shown; 4-6-3 and "-" counted
    # Properties with one value per family are said by the family line: the graph's "-" for
    # layer kinds, strides, ... (MLPs all "linear") does not make them differences.
    assert "kind (" not in text and "stride (" not in text
    assert "activation (" in text  # differs within the MLPs (relu / tanh)
