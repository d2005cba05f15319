"""Row reads from a shard (dense, sparse, duplicate, out-of-order) and row checksums."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from catalog.errors import IntegrityError
from catalog.format import weights_sha256
from catalog.loading import ShardFile, check_rows, read_shard_rows, stacked_sha256
from catalog.network import LayerSpec, NetworkSpec


@pytest.fixture
def shard(tmp_path):
    spec = NetworkSpec("mlp", (3,), (LayerSpec("linear", 3, 2, "layers.0.weight", "layers.0.bias"),))
    tensors = {"layers.0.weight": torch.arange(100 * 6, dtype=torch.float32).reshape(100, 2, 3),
               "layers.0.bias": torch.arange(100 * 2, dtype=torch.float32).reshape(100, 2)}
    path = tmp_path / "s.safetensors"
    save_file(tensors, str(path))
    return spec, tensors, ShardFile(path, "s.safetensors")


@pytest.mark.parametrize("rows", [[0, 1, 2, 3], [5, 3, 4], [7, 7, 2], [0, 50, 99], [99], list(range(100))[::-1],
                                  [10, 11, 12, 60, 61, 3], list(range(50, 100)) + list(range(0, 50)),
                                  list(range(20, 40)) * 2])
def test_read_rows_any_order(shard, rows):
    spec, tensors, handle = shard
    out = read_shard_rows(handle, spec, np.array(rows))
    for k, v in tensors.items():
        assert torch.equal(out[k], v[rows])


def test_read_empty_and_out_of_range(shard):
    spec, _, handle = shard
    out = read_shard_rows(handle, spec, np.array([], dtype=np.int64))
    assert out["layers.0.weight"].shape == (0, 2, 3)
    with pytest.raises(IntegrityError, match="100 rows"):
        read_shard_rows(handle, spec, np.array([3, 100]))


def test_row_checksums_match_format():
    g = torch.Generator().manual_seed(0)
    ts = {"a": torch.randn(5, 4, 3, generator=g), "b": torch.randn(5, 4, generator=g)}
    got = stacked_sha256([ts["a"], ts["b"]])
    assert got == [weights_sha256([ts["a"][i], ts["b"][i]]) for i in range(len(got))]
    assert got[2] == weights_sha256([ts["a"][2], ts["b"][2]])
    bf = ts["a"].to(torch.bfloat16)
    assert len(stacked_sha256([bf])) == 5  # any dtype, bytes as stored


def test_check_rows_names_bad_rows():
    ts = [torch.zeros(3, 2)]
    good = stacked_sha256(ts)
    check_rows(ts, good, [0, 1, 2], "shard", "zoo")
    with pytest.raises(IntegrityError, match=r"rows 7\b"):
        check_rows(ts, [good[0], "0" * 64, good[2]], [5, 7, 9], "shard", "zoo")


def test_bad_shard_files(tmp_path, shard):
    spec, tensors, _ = shard
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\xff" * 64)
    with pytest.raises(IntegrityError, match="not a readable safetensors"):
        ShardFile(bad, "bad")
    wrong = NetworkSpec("mlp", (3,), (LayerSpec("linear", 3, 4, "layers.0.weight", "layers.0.bias"),))
    with pytest.raises(IntegrityError, match="architecture says"):
        read_shard_rows(ShardFile(tmp_path / "s.safetensors", "s"), wrong, np.array([0]))
    data = (tmp_path / "s.safetensors").read_bytes()
    (tmp_path / "t.safetensors").write_bytes(data[:-100])
    with pytest.raises(IntegrityError):
        read_shard_rows(ShardFile(tmp_path / "t.safetensors", "t"), spec, np.arange(100))


@pytest.mark.parametrize("header", [b"[" * 100_000 + b"]" * 100_000, b"[" * 500 + b"]" * 500, b"[]", b"7"])
def test_a_shard_header_that_is_no_json_object_is_an_integrity_error(tmp_path, shard, header):
    """A RecursionError (deep nesting) or AttributeError (a list) escaped before."""
    data = (tmp_path / "s.safetensors").read_bytes()
    n = int.from_bytes(data[:8], "little")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(len(header).to_bytes(8, "little") + header + data[8 + n:])
    with pytest.raises(IntegrityError, match="shard weights/bad.safetensors is not a readable safetensors file"):
        ShardFile(bad, "weights/bad.safetensors")
