"""Metanetworks: models that read (and edit) other networks' weights, registered by name."""

from weightspace.models.base import Metanetwork
from weightspace.models.dws import DWSNet, HiddenNeuronPermutationLinear
from weightspace.models.gmn import GMN, NeuronGraphLayer
from weightspace.models.mlp import FlatMLP
from weightspace.models.nfn import NFN, NeuronPermutationLinear
from weightspace.models.registry import (
    build_metanetwork,
    get_metanetwork,
    metanetwork_names,
    register_metanetwork,
)
from weightspace.models.statnn import StatNN

__all__ = [
    "DWSNet", "FlatMLP", "GMN", "HiddenNeuronPermutationLinear", "Metanetwork", "NFN",
    "NeuronGraphLayer", "NeuronPermutationLinear", "StatNN", "build_metanetwork",
    "get_metanetwork", "metanetwork_names", "register_metanetwork",
]
