"""split_by_run: whole runs per split, seeded, order-independent, validated fractions; runs
that share a network (equal sha256) in one split."""

from __future__ import annotations

import hashlib
import json

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


def _assignment_hash(t: pa.Table, **kw) -> str:
    out = {}
    for seed in range(5):
        for fr in [(0.8, 0.1, 0.1), (0.5, 0.25, 0.25), (0.6, 0.4, 0.0)]:
            s = split_by_run(t, fr, seed, **kw)
            out[f"{seed}-{fr}"] = {k: v.tolist() for k, v in s.items()}
    return hashlib.sha256(json.dumps(out, sort_keys=True).encode()).hexdigest()[:16]


#: The assignment of runs_table() for 5 seeds x 3 fractions as split_by_run made it before
#: runs were linked by sha256 (published figures depend on it): it must never change.
PINNED = "63b2f90d6ced897b"


def test_runs_without_shared_networks_split_exactly_as_before():
    t = runs_table()
    assert _assignment_hash(t) == PINNED
    unique = t.append_column("sha256", pa.array([f"h{i}" for i in range(t.num_rows)]))
    assert _assignment_hash(unique) == PINNED
    assert _assignment_hash(unique.append_column("lr", pa.array([0.1] * t.num_rows)), link=None) == PINNED
    nulls = t.append_column("sha256", pa.array(["same"] * 3 + [None] * (t.num_rows - 3)))  # no checksums
    assert _assignment_hash(nulls) == PINNED


def _shared_init_table(n_runs: int = 40, seeds: int = 8) -> pa.Table:
    """Run r has seed r % seeds; its checkpoint 0 is the seed's initialization (the same network
    for every run of that seed), its checkpoints 1 and 2 its own."""
    rows = [{"run_id": f"r{r}", "checkpoint": c, "sha256": f"init{r % seeds}" if c == 0 else f"r{r}c{c}"}
            for r in range(n_runs) for c in range(3)]
    return pa.Table.from_pylist(rows)


@pytest.mark.parametrize("seed", range(5))
def test_rows_with_equal_sha256_fall_in_one_split(seed):
    t = _shared_init_table()
    s = split_by_run(t, (0.5, 0.25, 0.25), seed)
    sha = np.asarray(t["sha256"].to_pylist())
    runs = np.asarray(t["run_id"].to_pylist())
    hashes = {k: set(sha[v]) for k, v in s.items()}
    assert not (hashes["train"] & hashes["val"] or hashes["train"] & hashes["test"] or hashes["val"] & hashes["test"])
    assert sorted(np.concatenate(list(s.values())).tolist()) == list(range(t.num_rows))
    # 8 groups of 5 runs: each split gets whole groups, in proportion
    assert [len(set(runs[s[k]])) for k in ("train", "val", "test")] == [20, 10, 10]
    # without the link (or with checkpoint 0 left out) it is the split by run alone
    unlinked = split_by_run(t.drop_columns(["sha256"]), (0.5, 0.25, 0.25), seed)
    assert all(np.array_equal(split_by_run(t, (0.5, 0.25, 0.25), seed, link=None)[k], unlinked[k]) for k in s)
    later = t.filter(pa.compute.not_equal(t["checkpoint"], 0))
    assert all(np.array_equal(split_by_run(later, (0.5, 0.25, 0.25), seed)[k],
                              split_by_run(later.drop_columns(["sha256"]), (0.5, 0.25, 0.25), seed)[k]) for k in s)


def test_links_are_transitive_and_order_independent():
    # r0-r1 share one network, r1-r2 another: r0, r1 and r2 are one group
    rows = [{"run_id": f"r{r}", "sha256": f"u{r}"} for r in range(20)]
    rows += [{"run_id": "r0", "sha256": "x"}, {"run_id": "r1", "sha256": "x"},
             {"run_id": "r1", "sha256": "y"}, {"run_id": "r2", "sha256": "y"}]
    t = pa.Table.from_pylist(rows)
    for seed in range(10):
        s = split_by_run(t, (0.5, 0.25, 0.25), seed)
        runs = np.asarray(t["run_id"].to_pylist())
        where = {k for k, v in s.items() if {"r0", "r1", "r2"} & set(runs[v])}
        assert len(where) == 1
        perm = np.random.default_rng(seed).permutation(t.num_rows)
        shuffled = t.take(pa.array(perm))
        b = split_by_run(shuffled, (0.5, 0.25, 0.25), seed)
        srun = np.asarray(shuffled["run_id"].to_pylist())
        assert all(set(runs[s[k]]) == set(srun[b[k]]) for k in s)
