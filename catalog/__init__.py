"""catalog: the on-disk zoo format, reading and writing it, queries and loading weights.

Quick tour::

    from catalog import open_zoo
    zoo = open_zoo("zoos/digits-mlp")
    sel = zoo.select(where="test_acc > 0.9", order_by="test_acc DESC", limit=100)
    sel.table            # pyarrow.Table of the rows
    sel.stacked()        # {param name: Tensor[N, *shape]} (one architecture)
    sel.state_dicts()    # [{param name: Tensor[*shape]}]
    sel.modules()        # [nn.Module] rebuilt from the NetworkSpec, weights loaded
    zoo.sql("SELECT activation, avg(test_acc) FROM models GROUP BY ALL").table
    zoo.verify().ok
"""

from catalog.dataset import WeightDataset
from catalog.errors import (
    IntegrityError,
    QueryError,
    WeightzooError,
    ZooFormatError,
    ZooNotFoundError,
)
from catalog.format import FORMAT_VERSION, Manifest, read_manifest
from catalog.network import (
    LayerSpec,
    NetworkSpec,
    ParamSpec,
    SpecNetwork,
    build_module,
    population_forward,
)
from catalog.query import QueryEngine, query_zoos
from catalog.selection import Selection
from catalog.split import split_by_run
from catalog.store import LocalCatalog
from catalog.verify import VerifyReport, verify_zoo
from catalog.writer import ZooWriter
from catalog.zoo import Zoo, open_zoo

__all__ = [
    "FORMAT_VERSION", "IntegrityError", "LayerSpec", "LocalCatalog", "Manifest", "NetworkSpec",
    "ParamSpec", "QueryEngine", "QueryError", "Selection", "SpecNetwork", "VerifyReport",
    "WeightDataset", "WeightzooError", "Zoo", "ZooFormatError", "ZooNotFoundError", "ZooWriter",
    "build_module", "open_zoo", "population_forward", "query_zoos", "read_manifest",
    "split_by_run", "verify_zoo",
]
