"""zoo_builders.datasets: the exact split a zoo was built on, and its bad inputs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from zoo_helpers import write_npz, write_zoo

from catalog.errors import WeightzooError
from catalog.format import MANIFEST_NAME
from zoo_builders import load_dataset, load_zoo_dataset


def test_zoo_dataset_is_the_stratified_split_of_the_spec(tiny_zoo: Path) -> None:
    data = load_zoo_dataset(tiny_zoo)
    # The spec says digits with test_fraction 0.25: 1,797 images -> ceil(0.25 * 1797) = 450 test.
    assert (len(data.y_train), len(data.y_test)) == (1347, 450)
    again = load_dataset({"name": "digits", "test_fraction": 0.25, "split_seed": 0})
    assert torch.equal(data.x_test, again.x_test) and torch.equal(data.y_train, again.y_train)
    # Stratified: every class keeps its share of the test split within one example.
    counts = torch.bincount(data.y_test, minlength=10).float()
    full = torch.bincount(torch.cat([data.y_train, data.y_test]), minlength=10).float()
    assert torch.all((counts - 0.25 * full).abs() <= 1.0)


def test_zoo_without_a_build_spec_is_refused(tmp_path: Path) -> None:
    root = write_zoo(tmp_path / "z", "z", range(2))
    with pytest.raises(WeightzooError, match="not built by `zoo build`"):
        load_zoo_dataset(root)


def test_changed_data_is_detected(tiny_zoo: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tiny_zoo, copy)
    manifest = json.loads((copy / MANIFEST_NAME).read_text())
    manifest["datasets"]["digits"]["n_test"] = 449
    (copy / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(WeightzooError, match="n_test = 450 but zoo .* was built on n_test = 449"):
        load_zoo_dataset(copy)


# ------------------------------------------------------------------ npz files: the data a zoo remembers
#: Two runs, one population each (max_population=1), on an npz file named relative to the cwd.
NPZ_SPEC = {"name": "npzzoo", "dataset": {"name": "npz", "path": "data.npz"},
            "architecture": {"name": "mlp", "hidden": [4]},
            "training": {"epochs": 1, "batch_size": 16, "checkpoints": [1]}, "grid": {"seed": [0, 1]}}


def _weights(root: Path) -> dict[str, str]:
    from catalog import open_zoo

    t = open_zoo(root).table
    return dict(zip(t.column("model_id").to_pylist(), t.column("sha256").to_pylist()))


def test_a_zoo_records_its_npz_file_and_loads_it_from_any_directory(tmp_path: Path, monkeypatch) -> None:
    from zoo_builders import build_zoo

    write_npz(tmp_path / "proj" / "data.npz", 0)
    write_npz(tmp_path / "other" / "data.npz", 1)  # same sizes, other data
    monkeypatch.chdir(tmp_path / "proj")
    build_zoo(NPZ_SPEC, "z", quiet=True)
    facts = json.loads((tmp_path / "proj" / "z" / MANIFEST_NAME).read_text())["datasets"]["npz"]
    # the file relative to the zoo: a pushed zoo.json names no directory of the builder's machine
    assert facts["path"] == "data.npz" and facts["file"] == os.path.join("..", "data.npz")
    assert str(tmp_path) not in (tmp_path / "proj" / "z" / MANIFEST_NAME).read_text()
    from catalog.format import sha256_file

    assert facts["sha256"] == sha256_file(tmp_path / "proj" / "data.npz")
    built = load_dataset(NPZ_SPEC["dataset"])
    monkeypatch.chdir(tmp_path / "other")  # data.npz here is another file
    data = load_zoo_dataset(tmp_path / "proj" / "z")
    assert torch.equal(data.x_train, built.x_train) and torch.equal(data.y_test, built.y_test)


def test_a_zoo_moved_with_its_npz_file_still_loads_it(tmp_path: Path, monkeypatch) -> None:
    from zoo_builders import build_zoo

    write_npz(tmp_path / "proj" / "data.npz", 0)
    monkeypatch.chdir(tmp_path / "proj")
    build_zoo(NPZ_SPEC, "zoos/z", quiet=True)
    built = load_dataset(NPZ_SPEC["dataset"])
    os.rename(tmp_path / "proj", tmp_path / "moved")  # zoo and data together, as a copied project
    monkeypatch.chdir(tmp_path)  # no data.npz here: only the recorded ../../data.npz finds it
    data = load_zoo_dataset(tmp_path / "moved" / "zoos" / "z")
    assert torch.equal(data.x_train, built.x_train) and torch.equal(data.y_test, built.y_test)


def test_a_resume_from_another_directory_trains_on_the_zoo_s_own_npz(tmp_path: Path, monkeypatch) -> None:
    import zoo_builders.build as build
    from zoo_builders import build_zoo

    write_npz(tmp_path / "proj" / "data.npz", 0)
    write_npz(tmp_path / "other" / "data.npz", 1)
    monkeypatch.chdir(tmp_path / "proj")
    build_zoo(NPZ_SPEC, "full", quiet=True, max_population=1)
    real = build.commit_population

    def interrupted(writer, pop, trained):  # stopped after the first population is written
        if writer.manifest.part_files():
            raise KeyboardInterrupt
        real(writer, pop, trained)

    monkeypatch.setattr(build, "commit_population", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build_zoo(NPZ_SPEC, "part", quiet=True, max_population=1)
    monkeypatch.setattr(build, "commit_population", real)
    monkeypatch.chdir(tmp_path / "other")
    build_zoo(NPZ_SPEC, tmp_path / "proj" / "part", quiet=True, max_population=1)
    assert _weights(tmp_path / "proj" / "part") == _weights(tmp_path / "proj" / "full")


def test_a_changed_npz_file_is_refused_by_loads_and_resumes(tmp_path: Path, monkeypatch) -> None:
    from zoo_builders import build_zoo

    monkeypatch.chdir(tmp_path)
    write_npz(tmp_path / "data.npz", 0)
    build_zoo(NPZ_SPEC, "z", quiet=True)
    write_npz(tmp_path / "data.npz", 1)  # replaced in place by other data of the same sizes
    with pytest.raises(WeightzooError, match=r"built on the npz file .*data\.npz \(sha256 \w{12}\.\.\.\), but "
                                             r".*data\.npz holds other data .*refusing to use other data"):
        load_zoo_dataset(tmp_path / "z")
    with pytest.raises(WeightzooError, match="refusing to resume it on other data: put that file back"):
        build_zoo(NPZ_SPEC, "z", quiet=True)
    (tmp_path / "data.npz").unlink()
    with pytest.raises(WeightzooError, match=r"data\.npz is missing"):
        load_zoo_dataset(tmp_path / "z")


def test_a_moved_npz_file_is_found_by_its_sha256_from_the_spec_s_path(tmp_path: Path, monkeypatch) -> None:
    from zoo_builders import build_zoo

    monkeypatch.chdir(tmp_path)
    write_npz(tmp_path / "data.npz", 0)
    build_zoo(NPZ_SPEC, "z", quiet=True)
    (tmp_path / "moved").mkdir()
    (tmp_path / "data.npz").rename(tmp_path / "moved" / "data.npz")
    monkeypatch.chdir(tmp_path / "moved")  # the spec's relative path names the same data here
    data = load_zoo_dataset(tmp_path / "z")
    assert data.info["file"] == str(tmp_path / "moved" / "data.npz")


def test_zoos_without_an_npz_fingerprint_load_from_the_current_directory_as_before(tmp_path: Path,
                                                                                   monkeypatch) -> None:
    from zoo_builders import build_zoo

    monkeypatch.chdir(tmp_path)
    write_npz(tmp_path / "data.npz", 0)
    build_zoo(NPZ_SPEC, "z", quiet=True)
    manifest = json.loads((tmp_path / "z" / MANIFEST_NAME).read_text())
    manifest["datasets"]["npz"] = {k: v for k, v in manifest["datasets"]["npz"].items()
                                   if k not in ("file", "sha256")}  # as zoos built before
    (tmp_path / "z" / MANIFEST_NAME).write_text(json.dumps(manifest))
    write_npz(tmp_path / "data.npz", 1)
    assert torch.equal(load_zoo_dataset(tmp_path / "z").x_train, load_dataset(NPZ_SPEC["dataset"]).x_train)
