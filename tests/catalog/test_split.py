"""split_by_run: whole runs per split, seeded, order-independent, validated fractions."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from catalog import WeightzooError, split_by_run


def runs_table(n_runs: int = 40, ckpts: int = 3, zoo: str | None = None) -> pa.Table:
    rows = [{"run_id": f"r{r}", "checkpoint": c, **({"zoo": zoo} if zoo else {})}
            for r in range(n_runs) for c in range(ckpts)]
    return pa.Table.from_pylist(rows)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("fractions", [(0.8, 0.1, 0.1), (0.5, 0.25, 0.25), (0.6, 0.4, 0.0)])
def test_no_run_in_two_splits(seed, fractions):
    t = runs_table()
    s = split_by_run(t, fractions, seed)
    runs = {k: set(np.asarray(t["run_id"].to_pylist())[v]) for k, v in s.items()}
    assert not (runs["train"] & runs["val"]) and not (runs["train"] & runs["test"]) and not (runs["val"] & runs["test"])
    assert sorted(np.concatenate(list(s.values())).tolist()) == list(range(t.num_rows))
    assert [len(runs[k]) for k in ("train", "val", "test")] == [round(f * 40) for f in fractions]


def test_seeded_and_order_independent():
    t = runs_table()
    a = split_by_run(t, seed=3)
    assert all(np.array_equal(a[k], split_by_run(t, seed=3)[k]) for k in a)
    assert not np.array_equal(a["train"], split_by_run(t, seed=4)["train"])
    perm = np.random.default_rng(0).permutation(t.num_rows)
    shuffled = t.take(pa.array(perm))
    b = split_by_run(shuffled, seed=3)
    ids = np.asarray(t["run_id"].to_pylist())
    sids = np.asarray(shuffled["run_id"].to_pylist())
    assert all(set(ids[a[k]]) == set(sids[b[k]]) for k in a)
    # selecting fewer checkpoints of the same runs keeps each run in its split
    last = t.filter(pa.compute.equal(t["checkpoint"], 2))
    c = split_by_run(last, seed=3)
    lids = np.asarray(last["run_id"].to_pylist())
    assert all(set(lids[c[k]]) == set(ids[a[k]]) for k in a)


def test_zoo_key_separates_colliding_run_ids():
    t = pa.concat_tables([runs_table(10, 1, "a"), runs_table(10, 1, "b")])
    s = split_by_run(t, (0.5, 0.25, 0.25), 0, key=("run_id", "zoo"))
    assert sum(len(v) for v in s.values()) == 20
    assert len(s["train"]) == 10


@pytest.mark.parametrize("bad", [(0.8, 0.1), (0.8, 0.3, 0.1), (1.2, -0.1, -0.1), ("a", 0, 0)])
def test_bad_fractions(bad):
    with pytest.raises(WeightzooError, match="fractions"):
        split_by_run(runs_table(), bad)


def test_missing_column_and_empty():
    with pytest.raises(WeightzooError, match="run_id"):
        split_by_run(pa.table({"x": [1]}))
    s = split_by_run(pa.table({"run_id": pa.array([], pa.string())}))
    assert all(len(v) == 0 for v in s.values())


def test_negative_seeds_split_like_any_other_seed():
    t = runs_table()
    a = split_by_run(t, seed=-3)
    assert all(np.array_equal(a[k], split_by_run(t, seed=-3)[k]) for k in a)  # reproducible
    for other in (-4, 3, 0):  # another seed, its absolute value, zero: another split
        assert not np.array_equal(a["train"], split_by_run(t, seed=other)["train"])
    assert [len(a[k]) for k in ("train", "val", "test")] == [96, 12, 12]
