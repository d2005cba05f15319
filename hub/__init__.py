"""hub: push zoos to and pull them from the Hugging Face Hub (dataset repos).

Quick tour::

    from hub import push_zoo, pull_zoo, load_zoo
    push_zoo("zoos/digits-mlp", "ORG/digits-mlp")                 # zoo push
    pull_zoo("ORG/digits-mlp", "digits", where="test_acc > 0.9")   # zoo pull --where
    zoo = load_zoo("ORG/digits-mlp", revision="v1")                # via the HF cache
    # or: catalog.open_zoo("hf://datasets/ORG/digits-mlp@v1")

All transfers go through the ``huggingface_hub`` client (its endpoint, token and cache
settings apply); every downloaded file is checked against the zoo's manifest.
"""

import catalog.openers as _catalog_openers
from hub.errors import (
    HubError,
    HubIntegrityError,
    HubPermissionError,
    HubUnreachableError,
    NotAZooError,
    RepoNotFoundError,
    RevisionNotFoundError,
)
from hub.load import load_zoo, load_zoo_url, parse_hf_url
from hub.pull import PullResult, pull_zoo
from hub.push import PushResult, push_zoo

# Also registered through the `weightzoo.openers` entry point; registering on import keeps
# hf:// working from a source tree that was never pip-installed.
_catalog_openers.register_opener("hf", load_zoo_url)

__all__ = [
    "HubError", "HubIntegrityError", "HubPermissionError", "HubUnreachableError", "NotAZooError",
    "PullResult", "PushResult", "RepoNotFoundError", "RevisionNotFoundError", "load_zoo",
    "load_zoo_url", "parse_hf_url", "pull_zoo", "push_zoo",
]
