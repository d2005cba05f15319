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

import os

from catalog.lazy import lazy_exports

#: Intel MKL's conditional numerical reproducibility mode, set for this process (and the
#: workers it starts) unless the environment already names one. Without it MKL's batched matrix
#: products round a matrix differently depending on its memory alignment, so a population
#: member's bits depended on where it sat in the stack (an MLP of widths 5 and 3 on batches of
#: 37: 2 of 7 members differed from the same runs alone). MKL reads the variable when it starts,
#: at the first matrix product, so it must be set before torch computes one
#: (:func:`catalog.kernels.products_depend_on_position` checks).
MKL_CBWR = "AUTO,STRICT"
os.environ.setdefault("MKL_CBWR", MKL_CBWR)

# Modules load on first use of one of their names (``import catalog.errors`` stays cheap).
__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "catalog.dataset": ["WeightDataset"],
    "catalog.errors": ["IntegrityError", "QueryError", "RowIndexError", "WeightzooError", "ZooFormatError",
                       "ZooNotFoundError"],
    "catalog.format": ["FORMAT_VERSION", "Manifest", "read_manifest"],
    "catalog.lock": ["ZooLock", "ZooLockedError"],
    "catalog.network": ["LayerSpec", "NetworkSpec", "ParamSpec", "SpecNetwork", "build_module",
                        "population_forward"],
    "catalog.openers": ["register_opener"],
    "catalog.query": ["QueryEngine", "query_zoos"],
    "catalog.selection": ["Selection"],
    "catalog.sidecar": ["write_sidecar"],
    "catalog.split": ["split_by_run"],
    "catalog.store": ["LocalCatalog"],
    "catalog.verify": ["VerifyReport", "verify_zoo"],
    "catalog.writer": ["ZooWriter"],
    "catalog.zoo": ["Zoo", "open_zoo"],
})
