"""`zoo drop`: remove a sidecar table from the command line."""

from __future__ import annotations

import pyarrow as pa
from zoo_helpers import assert_one_line_error, run_cli

from catalog import open_zoo, verify_zoo
from catalog.sidecar import write_sidecar


def test_drop_prints_and_removes(zoo_copy) -> None:
    ids = sorted(open_zoo(zoo_copy).table.column("model_id").to_pylist())[:2]
    write_sidecar(zoo_copy, "embeddings", "statnn", pa.table({"model_id": ids, "score": [1.0, 2.0]}))
    r = run_cli("drop", zoo_copy, "embeddings/statnn")
    assert r.exit_code == 0 and f"dropped embeddings/statnn.parquet (2 rows) from {zoo_copy}" in r.output
    assert "score" not in open_zoo(zoo_copy).table.column_names and verify_zoo(zoo_copy).ok
    assert_one_line_error(run_cli("drop", zoo_copy, "embeddings/statnn"),
                          "has no sidecar table embeddings/statnn.parquet; its tables: none")
    assert_one_line_error(run_cli("drop", zoo_copy, "statnn"), "is not <group>/<name> (e.g. analysis/cka)")


def test_a_writer_refuses_a_symlinked_lock_file_and_leaves_its_target_alone(zoo_copy, tmp_path) -> None:
    """A zoo whose .weightzoo.lock links to a file outside it: writing the lock record would truncate
    and overwrite that file (and releasing it delete the link). One error line; nothing changes."""
    from catalog.lock import LOCK_NAME

    ids = sorted(open_zoo(zoo_copy).table.column("model_id").to_pylist())[:2]
    write_sidecar(zoo_copy, "embeddings", "statnn", pa.table({"model_id": ids, "score": [1.0, 2.0]}))
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious user data\n")
    (zoo_copy / LOCK_NAME).symlink_to(victim)
    assert_one_line_error(run_cli("drop", zoo_copy, "embeddings/statnn"),
                          f"the lock file {zoo_copy / LOCK_NAME} of zoo {zoo_copy} is a symbolic link (to {victim})")
    assert victim.read_bytes() == b"precious user data\n"
    assert (zoo_copy / LOCK_NAME).is_symlink() and (zoo_copy / "embeddings" / "statnn.parquet").is_file()
