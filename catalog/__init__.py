"""catalog: the on-disk zoo format, reading and writing it, queries and loading weights."""

from catalog.errors import (
    IntegrityError,
    QueryError,
    WeightzooError,
    ZooFormatError,
    ZooNotFoundError,
)
from catalog.format import FORMAT_VERSION, Manifest, read_manifest
from catalog.network import LayerSpec, NetworkSpec, ParamSpec, SpecNetwork, build_module, population_forward
from catalog.writer import ZooWriter
from catalog.zoo import Zoo, open_zoo

__all__ = [
    "FORMAT_VERSION", "IntegrityError", "LayerSpec", "Manifest", "NetworkSpec", "ParamSpec",
    "QueryError", "SpecNetwork", "WeightzooError", "Zoo", "ZooFormatError", "ZooNotFoundError",
    "ZooWriter", "build_module", "open_zoo", "population_forward", "read_manifest",
]
