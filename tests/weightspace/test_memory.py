"""weightspace.memory: sizes from files checked against memory before torch allocates them."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import zoo_builders.build as build_mod
from catalog.errors import WeightzooError
from weightspace.memory import AllocationLimitError, allocation_limit, check_bytes


@pytest.fixture
def one_kib(monkeypatch):
    """1 KiB of memory available: 512 bytes (128 float32 values) a step may use."""
    monkeypatch.setattr(build_mod, "available_memory", lambda: 1024)


def test_check_bytes_refuses_more_than_half_the_memory(one_kib):
    check_bytes(512, "x", "fix")
    with pytest.raises(WeightzooError, match=r"^probes=9 need about 513.0 B, more than half the 1.0 KiB of memory "
                                             r"available; use fewer$"):
        check_bytes(513, "probes=9", "use fewer")


@pytest.mark.parametrize("make", [
    lambda: nn.Linear(12, 12),  # torch.empty((12, 12)): parameters
    lambda: torch.zeros(200),
    lambda: torch.randn((10, 20)),
    lambda: torch.full([129], 1.0),
    lambda: torch.randint(0, 9, (65,)),  # int64
    lambda: torch.ones(1).new_zeros(129),
    lambda: torch.eye(12),
    lambda: [torch.empty(100) for _ in range(2)],  # each fits, together not
], ids=["linear", "zeros", "randn-tuple", "full", "randint", "new_zeros", "eye", "sum"])
def test_allocation_limit_refuses_before_the_tensor_is_made(one_kib, make):
    with pytest.raises(AllocationLimitError, match=r"^the thing \(size=3\) needs more than 512.0 B, half the 1.0 KiB "
                                                   r"of memory available \(it asked for a tensor of shape \[.*; fix$"):
        with allocation_limit("the thing (size=3)", "fix"):
            make()


def test_allocation_limit_lets_what_fits_through(one_kib):
    with allocation_limit("x", "fix"):
        layer = nn.Linear(5, 5)  # 30 values
        torch.arange(1000)  # not counted: no size argument
    assert layer.weight.shape == (5, 5)
    torch.zeros(1000)  # outside the block: no limit
