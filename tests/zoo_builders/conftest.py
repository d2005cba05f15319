from __future__ import annotations

import pytest
import yaml

#: The spec from the foundation issue, verbatim.
ISSUE_SPEC = """\
name: tiny-digits-mlp
dataset: {name: digits, test_fraction: 0.25}
architecture: {name: mlp, hidden: [16, 16], activation: relu}
training: {epochs: 6, batch_size: 32, optimizer: adam, checkpoints: [0, 3, 6]}
grid:
  lr: [0.001, 0.01]
  weight_decay: [0.0, 0.001]
  seed: [0, 1, 2, 3]
"""


@pytest.fixture(scope="session")
def issue_spec_path(tmp_path_factory):
    p = tmp_path_factory.mktemp("spec") / "tiny.yaml"
    p.write_text(ISSUE_SPEC)
    return p


@pytest.fixture(scope="session")
def tiny_zoo(zoo_factory):
    return zoo_factory(yaml.safe_load(ISSUE_SPEC))
