"""LocalCatalog: add/list/remove, env overrides, queries with weights, refresh, read-only."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from zoo_helpers import mlp_spec, random_weights, tree_hashes

from catalog import LocalCatalog, QueryError, WeightzooError, ZooNotFoundError, ZooWriter, open_zoo
from catalog.store import default_catalog_path


def test_path_from_environment(tmp_path, monkeypatch, _private_catalog):
    assert default_catalog_path() == _private_catalog / "catalog.duckdb"
    monkeypatch.setenv("WEIGHTZOO_CATALOG", str(tmp_path / "elsewhere.duckdb"))
    assert default_catalog_path() == tmp_path / "elsewhere.duckdb"


def test_add_list_query_remove(zoo_dir, multi_arch_dir):
    cat = LocalCatalog()
    assert cat.list() == []
    with pytest.raises(QueryError, match="empty"):
        cat.engine()
    cat.add(zoo_dir)
    cat.add(multi_arch_dir, name="wide zoo")
    assert [(e.name, e.rows, e.state) for e in cat.list()] == [("tiny", 36, "ok"), ("wide zoo", 16, "ok")]
    engine = cat.engine()
    t = engine.execute("SELECT zoo, count(*) AS n, count(width_note) AS w FROM models GROUP BY zoo ORDER BY zoo")
    assert t.to_pylist() == [{"zoo": "tiny", "n": 36, "w": 0}, {"zoo": "wide zoo", "n": 16, "w": 16}]
    sel = engine.sql("SELECT zoo, model_id FROM models WHERE checkpoint = 0 AND zoo = 'tiny' ORDER BY model_id")
    batch = sel.stacked()
    ref = open_zoo(zoo_dir).state_dict(sel.column("model_id")[3])
    assert all(torch.equal(batch[k][3], ref[k]) for k in ref)
    engine.close()
    cat.remove("wide zoo")
    assert [e.name for e in cat.list()] == ["tiny"]
    with pytest.raises(WeightzooError, match="no zoo named 'nope'.*tiny"):
        cat.remove("nope")


def test_name_clash(zoo_dir, tmp_path):
    cat = LocalCatalog()
    cat.add(zoo_dir)
    cat.add(zoo_dir)  # same path again: a refresh
    other = tmp_path / "other"
    shutil.copytree(zoo_dir, other)
    with pytest.raises(WeightzooError, match="--name"):
        cat.add(other)


def test_catalog_is_read_only(zoo_dir):
    cat = LocalCatalog()
    cat.add(zoo_dir)
    before_zoo, before_cat = tree_hashes(zoo_dir), cat.path.read_bytes()
    engine = cat.engine()
    for sql in ["DELETE FROM models", "UPDATE zoos SET path = 'x'", "DROP VIEW models",
                f"COPY models TO '{zoo_dir}/models/part-00000.parquet'", "ATTACH 'x.duckdb'"]:
        with pytest.raises(QueryError, match="not allowed"):
            engine.execute(sql)
    engine.close()
    assert tree_hashes(zoo_dir) == before_zoo and cat.path.read_bytes() == before_cat


def test_changed_zoo_is_reindexed(zoo_copy):
    cat = LocalCatalog()
    cat.add(zoo_copy)
    spec = mlp_spec()
    w = ZooWriter(zoo_copy, "tiny", {"name": "tiny", "test": True})
    arch = w.add_architecture(spec)
    w.write_part(arch, random_weights(spec, 2, 99), [
        {"model_id": f"new-{i}", "run_id": "new", "checkpoint": i, "status": "ok", "test_acc": 0.5}
        for i in range(2)])
    assert cat.list()[0].state == "changed"
    engine = cat.engine()
    assert engine.execute("SELECT count(*) AS n FROM models").to_pylist() == [{"n": 38}]
    assert len(engine.sql("SELECT * FROM models WHERE run_id = 'new'").stacked()["layers.0.bias"]) == 2
    assert cat.list()[0].state == "ok"


def test_missing_zoo_keeps_rows(zoo_copy):
    cat = LocalCatalog()
    cat.add(zoo_copy)
    shutil.rmtree(zoo_copy)
    assert cat.list()[0].state == "missing"
    with pytest.warns(UserWarning, match="gone"):
        engine = cat.engine()
    sel = engine.sql("SELECT * FROM models LIMIT 2")
    assert len(sel) == 2
    with pytest.raises(ZooNotFoundError, match="catalog remove"):
        sel.stacked()


def test_a_catalog_that_cannot_be_written_is_one_error(zoo_dir, tmp_path, monkeypatch):
    """The catalog's folder cannot be made (a read-only HOME holds the default one; here: a file
    in the way) or written: one error naming it and WEIGHTZOO_HOME (a traceback before)."""
    import catalog.store as store

    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(WeightzooError, match=r"cannot create the catalog's folder .*file/weightzoo: .*; set "
                                             r"WEIGHTZOO_HOME \(a folder\) or WEIGHTZOO_CATALOG"):
        LocalCatalog(tmp_path / "file" / "weightzoo" / "catalog.duckdb").add(zoo_dir)
    (tmp_path / "ro").mkdir()
    real = store.os.access
    monkeypatch.setattr(store.os, "access", lambda p, mode: Path(p) != tmp_path / "ro" and real(p, mode))
    with pytest.raises(WeightzooError, match=r"its folder .*/ro is not writable; set WEIGHTZOO_HOME"):
        LocalCatalog(tmp_path / "ro" / "catalog.duckdb").add(zoo_dir)


def test_a_zoo_whose_parts_lie_behind_a_link_out_of_it_is_not_indexed(zoo_copy, tmp_path):
    """The catalog reads a zoo's parts through safe_join: a models/ folder linking outside the zoo
    (to parts crafted elsewhere) is refused, and nothing is indexed."""
    outside = tmp_path / "outside"
    (zoo_copy / "models").rename(outside)
    (zoo_copy / "models").symlink_to(outside)
    cat = LocalCatalog()
    with pytest.raises(WeightzooError, match="part 'models/part-00000.parquet' leads outside the zoo"):
        cat.add(zoo_copy)
    assert cat.list() == []


def test_a_zoos_own_zoo_column_is_source_zoo(tmp_path):
    from zoo_helpers import write_zoo

    own = write_zoo(tmp_path / "own", "own", range(2), checkpoints=(0,), extra={"zoo": "cifar-zoo"})
    cat = LocalCatalog()
    cat.add(own)  # one zoo: its `zoo` values were hidden by the catalog name
    t = cat.engine().execute("SELECT zoo, source_zoo, count(*) AS n FROM models GROUP BY ALL")
    assert t.to_pylist() == [{"zoo": "own", "source_zoo": "cifar-zoo", "n": 2}]


def test_a_column_of_clashing_types_is_refused_on_add(tmp_path):
    from zoo_helpers import write_zoo

    cat = LocalCatalog()
    cat.add(write_zoo(tmp_path / "lists", "lists", range(2), checkpoints=(0,), extra={"widths": [16]}))
    ints = write_zoo(tmp_path / "ints", "ints", range(2), checkpoints=(0,), extra={"widths": 16})
    with pytest.raises(WeightzooError, match=r"cannot add .*ints.*column 'widths' is BIGINT in zoo 'ints' "
                                             r"but BIGINT\[\] in zoo 'lists'.*query the zoos separately"):
        cat.add(ints)
    assert [e.name for e in cat.list()] == ["lists"]
    assert cat.engine().execute("SELECT count(*) AS n FROM models").to_pylist() == [{"n": 2}]


def test_urls_are_refused_with_the_way_to_pull_them():
    with pytest.raises(WeightzooError, match=r"local zoo directories.*`zoo pull ORG/NAME --out DIR`"):
        LocalCatalog().add("hf://datasets/org/some-zoo")


def test_one_directory_under_two_names_is_refused(zoo_dir):
    cat = LocalCatalog()
    cat.add(zoo_dir)
    with pytest.raises(WeightzooError, match=r"already in the catalog as 'tiny'.*--name tiny.*"
                                             r"`zoo catalog remove tiny`"):
        cat.add(f"{zoo_dir}/./", name="tiny-renamed")
    assert [(e.name, e.rows) for e in cat.list()] == [("tiny", 36)]
    cat.add(zoo_dir, name="tiny")  # re-indexing under its own name still works
