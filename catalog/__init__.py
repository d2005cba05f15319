"""catalog: the on-disk zoo format, reading and writing it, queries and loading weights.

Quick tour::

    from catalog import open_zoo
    zoo = open_zoo("zoos/digits-mlp")
    sel = zoo.select(where="test_acc > 0.9", order_by="test_acc DESC", limit=100)
    sel.table            # pyarrow.Table of the rows
    sel.stacked()        # {param name: Tensor[N, *shape]} (architectures with equal parameter shapes)
    sel.state_dicts()    # [{param name: Tensor[*shape]}]
    sel.modules()        # [nn.Module] rebuilt from the NetworkSpec, weights loaded
    zoo.sql("SELECT activation, avg(test_acc) FROM models GROUP BY ALL").table
    zoo.verify().ok
    write_sidecar(zoo.root, "analysis", "mine", table)   # extra columns keyed by model_id
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
from catalog.lock import ZooLock, ZooLockedError
from catalog.network import (
    LayerSpec,
    NetworkSpec,
    ParamSpec,
    SpecNetwork,
    build_module,
    population_forward,
)
from catalog.openers import register_opener
from catalog.query import QueryEngine, query_zoos
from catalog.selection import Selection
from catalog.sidecar import write_sidecar
from catalog.split import split_by_run
from catalog.store import LocalCatalog
from catalog.verify import VerifyReport, verify_zoo
from catalog.writer import ZooWriter
from catalog.zoo import Zoo, open_zoo

__all__ = [
    "FORMAT_VERSION", "IntegrityError", "LayerSpec", "LocalCatalog", "Manifest", "NetworkSpec",
    "ParamSpec", "QueryEngine", "QueryError", "Selection", "SpecNetwork", "VerifyReport",
    "WeightDataset", "WeightzooError", "Zoo", "ZooFormatError", "ZooLock", "ZooLockedError",
    "ZooNotFoundError", "ZooWriter", "build_module", "open_zoo", "population_forward",
    "query_zoos", "read_manifest", "register_opener", "split_by_run", "verify_zoo",
    "write_sidecar",
]
