"""`zoo analyze` and `zoo plot` through click's CliRunner, on tiny built zoos."""

from __future__ import annotations

import csv
import io

import pytest
from analyze_helpers import ONE_SEED, TINY_INR, TINY_PHASE, TINY_RESNET, copy_zoo
from zoo_helpers import assert_one_line_error, run_cli, tree_hashes


@pytest.fixture(scope="module")
def analyzed(zoo_factory, tmp_path_factory):
    zoo = copy_zoo(zoo_factory(TINY_PHASE), tmp_path_factory.mktemp("cli") / "zoo")
    r = run_cli("analyze", zoo, "--metrics", "hessian,cka", "--batches", "2", "--quiet")
    assert r.exit_code == 0, r.output
    return zoo, r.output


def test_analyze_prints_summary_and_stores_queryable_columns(analyzed):
    zoo, out = analyzed
    assert "8 models (each run's last checkpoint" in out
    assert "8 other matching rows (other checkpoints or not ok) left out" in out  # either, not both
    lines = out.splitlines()
    metrics = [ln.split() for ln in lines if ln.startswith(("hessian ", "cka "))]
    assert [m[:3] for m in metrics] == [["hessian", "8", "0"], ["cka", "8", "0"]]
    assert any(ln.split()[:2] == ["hessian_trace_train", "8"] for ln in lines)
    assert any(ln.split()[:2] == ["cka_seed", "8"] for ln in lines)
    r = run_cli("verify", zoo)
    assert r.exit_code == 0 and "BAD " not in r.output and ": OK;" in r.output and "0 warning(s)" in r.output
    r = run_cli("query", zoo, "SELECT model_id, hessian_trace_train, cka_seed FROM models "
            "WHERE hessian_trace_train > 0 ORDER BY model_id", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(r.output)))
    assert r.exit_code == 0 and len(rows) == 8
    assert all(float(x["cka_seed"]) > 0 for x in rows)


def test_analyze_again_skips(analyzed):
    zoo, _ = analyzed
    before = tree_hashes(zoo)
    r = run_cli("analyze", zoo, "--metrics", "hessian,cka", "--batches", "2", "-q")
    assert r.exit_code == 0
    assert [ln.split()[:3] for ln in r.output.splitlines() if ln.startswith(("hessian ", "cka "))] == \
        [["hessian", "0", "8"], ["cka", "0", "8"]]
    assert tree_hashes(zoo) == before


def test_chunk_bounds_the_population_not_the_values(analyzed, tmp_path, monkeypatch):
    # The 8 models one at a time (--chunk 1) store the values the 8-model population stored:
    # every model draws its own random vectors, whatever else is computed with it.
    import weightspace.analysis.run as run_mod

    sizes = []
    chunks = run_mod._chunks
    monkeypatch.setattr(run_mod, "_chunks", lambda n, size: sizes.append(size) or chunks(n, size))
    zoo, _ = analyzed
    query = ("SELECT model_id, hessian_top_eig_train, hessian_trace_train, hessian_trace_test FROM models "
             "WHERE hessian_trace_train IS NOT NULL ORDER BY model_id")
    before = list(csv.DictReader(io.StringIO(run_cli("query", zoo, query, "--format", "csv").output)))
    one = copy_zoo(zoo, tmp_path / "one")
    r = run_cli("analyze", one, "--metrics", "hessian", "--batches", "2", "--chunk", "1", "--force", "-q")
    assert r.exit_code == 0, r.output
    assert sizes and set(sizes) == {1}  # the option reached the computation (once per train_fraction)
    after = list(csv.DictReader(io.StringIO(run_cli("query", one, query, "--format", "csv").output)))
    assert len(after) == len(before) == 8
    for a, b in zip(after, before):
        assert a["model_id"] == b["model_id"]
        for col in ("hessian_top_eig_train", "hessian_trace_train", "hessian_trace_test"):
            assert float(a[col]) == pytest.approx(float(b[col]), rel=1e-4, abs=1e-5), col
    r = run_cli("analyze", one, "--metrics", "hessian", "--chunk", "0")
    assert r.exit_code != 0 and "--chunk" in r.output


def test_hessian_chunk_is_capped_by_memory_with_the_same_values(analyzed, tmp_path, monkeypatch):
    # With memory for 3 models' gradient graphs, --chunk 64 computes 3 at a time, says so, and
    # stores the values the 8-model population stored; without memory for one, a clear error.
    import weightspace.analysis.run as run_mod
    import zoo_builders.build as build_mod
    from catalog import open_zoo

    zoo, _ = analyzed
    specs = list(open_zoo(zoo).architectures.values())  # two widths: the larger one sets the cap
    per_model = max(run_mod.hessian_model_bytes(spec, 2 * 64) for spec in specs)  # --batches 2 of 64
    sizes = []
    chunks = run_mod._chunks
    monkeypatch.setattr(run_mod, "_chunks", lambda n, size: sizes.append(size) or chunks(n, size))
    available = int(per_model * 2 * 3.5)
    monkeypatch.setattr(build_mod, "available_memory", lambda: available)
    query = ("SELECT model_id, hessian_top_eig_train, hessian_trace_test FROM models "
             "WHERE hessian_trace_train IS NOT NULL ORDER BY model_id")
    before = list(csv.DictReader(io.StringIO(run_cli("query", zoo, query, "--format", "csv").output)))
    capped = copy_zoo(zoo, tmp_path / "capped")
    r = run_cli("analyze", capped, "--metrics", "hessian", "--batches", "2", "--force", "-q")
    assert r.exit_code == 0, r.output
    assert "warning: hessian: 3 mlp models at a time, not 64" in r.output
    assert set(sizes) == {run_mod.hessian_chunk(spec, 2 * 64, 64, available) for spec in specs} == {3, 5}
    after = list(csv.DictReader(io.StringIO(run_cli("query", capped, query, "--format", "csv").output)))
    assert [a["model_id"] for a in after] == [b["model_id"] for b in before] and len(after) == 8
    for a, b in zip(after, before):
        for col in ("hessian_top_eig_train", "hessian_trace_test"):
            assert float(a[col]) == pytest.approx(float(b[col]), rel=1e-4, abs=1e-5), col
    monkeypatch.setattr(build_mod, "available_memory", lambda: per_model)  # half of it: not one model
    r = run_cli("analyze", capped, "--metrics", "hessian", "--batches", "2", "--force", "-q")
    assert_one_line_error(r, "examples need about", "--batches or --batch-size")


def test_hessian_chunk_by_hand():
    # An MLP 4 -> 3 -> 2: activations 3 + 2 = 5 values per example, 4*3 + 3 + 3*2 + 2 = 23 trained
    # parameters. On 10 examples a model plans 32 * 5 * 10 + (16 + 2 * 20) * 4 * 23 = 1,600 + 5,152
    # = 6,752 bytes (20 Lanczos vectors, held twice); half of 7 * 2 * 6,752 + 100 bytes holds 7.
    from catalog.errors import WeightzooError
    from catalog.network import LayerSpec, NetworkSpec
    from weightspace.analysis.run import hessian_chunk, hessian_model_bytes

    spec = NetworkSpec("mlp", (4,), (LayerSpec("linear", 4, 3, "a.weight", "a.bias", activation="relu"),
                                     LayerSpec("linear", 3, 2, "b.weight", "b.bias")))
    assert hessian_model_bytes(spec, 10) == 6752
    assert hessian_chunk(spec, 10, 64, 7 * 2 * 6752 + 100) == 7
    assert hessian_chunk(spec, 10, 5, 7 * 2 * 6752 + 100) == 5
    with pytest.raises(WeightzooError, match="use fewer examples"):
        hessian_chunk(spec, 10, 64, 6752)


def test_plot_writes_png(analyzed, tmp_path):
    zoo, _ = analyzed
    out = tmp_path / "trace.png"
    r = run_cli("plot", zoo, "--x", "width", "--y", "train_fraction", "--metric", "hessian_trace_train",
            "--log", "--out", out)
    assert r.exit_code == 0 and "heatmap of log10 mean hessian_trace_train over" in r.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = tmp_path / "acc.png"
    r = run_cli("plot", zoo, "--kind", "line", "--x", "checkpoint", "--y", "width", "--metric", "test_acc",
            "--out", out)
    assert r.exit_code == 0 and out.stat().st_size > 0
    out = tmp_path / "figs" / "noext"  # no suffix: a PNG at exactly the reported path
    r = run_cli("plot", zoo, "--kind", "line", "--x", "checkpoint", "--metric", "test_acc", "--out", out)
    assert r.exit_code == 0 and f"to {out}" in r.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and [p.name for p in out.parent.iterdir()] == ["noext"]


def test_bad_input_is_one_error_line(analyzed, zoo_factory, tmp_path):
    zoo, _ = analyzed
    assert_one_line_error(run_cli("analyze", zoo, "--metrics", "hessian,curvature", "-q"),
                          "unknown metric 'curvature'; valid metrics: hessian, cka, connectivity")
    assert_one_line_error(run_cli("analyze", zoo_factory(ONE_SEED), "--metrics", "connectivity", "-q"),
                          "no seed pairs")
    assert_one_line_error(run_cli("analyze", zoo_factory(TINY_INR), "--metrics", "hessian", "-q"),
                          "not classifiers")
    assert_one_line_error(run_cli("analyze", zoo, "--checkpoint", "5", "-q"),
                          "no selected row is at checkpoint 5")
    assert_one_line_error(run_cli("plot", zoo, "--x", "width", "--y", "depthh", "--metric", "test_acc",
                              "--out", tmp_path / "x.png"), "unknown column 'depthh'")
    assert_one_line_error(run_cli("plot", zoo, "--x", "width", "--metric", "test_acc",
                              "--out", tmp_path / "x.png"), "a heatmap needs a y column")
    assert not (tmp_path / "x.png").exists()


@pytest.mark.slow
def test_graph_zoo_gets_every_metric(zoo_factory, tmp_path):
    zoo = copy_zoo(zoo_factory(TINY_RESNET), tmp_path / "zoo")
    r = run_cli("analyze", zoo, "--batches", "1", "--batch-size", "16", "--out", tmp_path / "figs", "-q")
    assert r.exit_code == 0, r.output
    assert [ln.split()[:2] for ln in r.output.splitlines()
            if ln.startswith(("hessian ", "cka ", "connectivity ", "averaging ", "subspace "))] \
        == [["hessian", "2"], ["cka", "2"], ["connectivity", "2"], ["averaging", "2"], ["subspace", "2"]]
    assert any(ln.startswith("figure: ") and ln.endswith(".png") for ln in r.output.splitlines())
    # --cka-layer: a node's output (a graph) by name; an index is refused with the node names
    r = run_cli("analyze", zoo, "--metrics", "cka", "--cka-layer", "layer1.0.relu2", "-q")
    assert r.exit_code == 0 and "cka_seed_node_layer1_0_relu2" in r.output, r.output
    assert_one_line_error(run_cli("analyze", zoo, "--metrics", "cka", "--cka-layer", "1", "-q"),
                          "give a node name, one of conv1, bn1")


def test_option_names_are_the_registries() -> None:
    from weightspace.analysis.phase import AGGREGATIONS
    from weightspace.analysis.run import METRICS, PLOT_KINDS
    from zoo_cli import analyze_cmds

    assert analyze_cmds.METRIC_NAMES == tuple(METRICS)
    assert analyze_cmds.PLOT_KIND_NAMES == tuple(PLOT_KINDS)
    assert analyze_cmds.AGGREGATION_NAMES == tuple(AGGREGATIONS)


def test_subspace_leaves_out_a_single_model_architecture_and_writes_nothing_when_all_are(
        zoo_factory, tmp_path, monkeypatch):
    from analyze_helpers import TINY_FAMILIES

    from catalog import open_zoo
    zoo = copy_zoo(zoo_factory(TINY_FAMILIES), tmp_path / "fam")
    z = open_zoo(zoo)
    small, big = sorted(z.architectures, key=lambda a: z.architectures[a].n_params, reverse=True)
    lone = z.select(where=f"arch_id = '{small}'").table.column("model_id")[0].as_py()
    # every architecture has a single model: an error before anything is written
    before = tree_hashes(zoo)
    r = run_cli("analyze", zoo, "--metrics", "subspace", "--where", f"model_id = '{lone}'", "-q",
                "--out", tmp_path / "figs")
    errors = [ln for ln in r.output.splitlines() if ln.startswith("error: ")]  # (torch may warn on import)
    assert r.exit_code == 1 and len(errors) == 1
    assert all(k in errors[0] for k in ("single selected model", small, "--where"))
    assert tree_hashes(zoo) == before and not (tmp_path / "figs").exists()
    # one architecture with one model among others: left out, said so; the rest analyzed
    monkeypatch.chdir(zoo)  # the zoo given as "." names the figure by the zoo directory
    r = run_cli("analyze", ".", "--metrics", "subspace", "--where", f"arch_id = '{big}' or model_id = '{lone}'",
                "-q", "--batches", "2")
    assert r.exit_code == 0, r.output
    assert f"subspace: left out {small}" in r.output
    assert (tmp_path / f"fam-subspace-{big}.png").exists()
    assert not list(tmp_path.glob("-subspace-*"))


def test_plot_log_message_and_help_say_log10_of_the_aggregate(tmp_path):
    """The heatmap's message said "mean log10 metric" (the mean of log10 values) while the cells
    were log10 of the mean; message, figure labels and --help now say the same: log10 of the mean."""
    from zoo_helpers import write_zoo

    zoo = write_zoo(tmp_path / "z", "z", range(12), checkpoints=(0, 2), parts=1)
    args = ("plot", zoo, "--x", "lr", "--y", "activation", "--metric", "test_loss", "--log")
    r = run_cli(*args, "--out", tmp_path / "h.png")
    want = f"wrote a heatmap of log10 mean test_loss over lr x activation to {tmp_path / 'h.png'}"
    assert r.exit_code == 0 and want in r.output, r.output
    r = run_cli(*args, "--kind", "line", "--agg", "median", "--out", tmp_path / "l.png")
    assert r.exit_code == 0 and "wrote a line plot of log10 median test_loss vs lr per activation" in r.output, r.output
    r = run_cli(*args, "--kind", "scatter", "--out", tmp_path / "s.png")
    assert r.exit_code == 0 and "wrote a scatter plot of log10 test_loss vs lr per activation" in r.output, r.output
    text = " ".join(run_cli("plot", "--help").output.split())
    assert "log10 of the plotted aggregate" in text

