"""Lazy package exports: ``from catalog import open_zoo`` without importing every module.

A command that needs only ``catalog.errors`` (every CLI command does, to print user errors)
should not pay for torch, DuckDB and PyG at start-up. A package lists its public names per
module; each module is imported the first time one of its names is used (PEP 562).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, Sequence[str]]
                 ) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """``(__getattr__, __dir__, __all__)`` for a package exporting ``{module: [names]}``.

    Usage, in a package's ``__init__.py``::

        __getattr__, __dir__, __all__ = lazy_exports(__name__, {"pkg.mod": ["name", ...]})
    """
    where = {name: module for module, names in exports.items() for name in names}
    namespace = importlib.import_module(package).__dict__

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value  # later lookups skip __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(where))

    return __getattr__, __dir__, sorted(where)


class LazyModule:
    """A module imported at its first attribute access: ``torch = LazyModule("torch")`` lets a
    module whose functions use torch be imported (e.g. to parse a spec for ``zoo query``) without
    paying for torch's import, about a second."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        module = self.__dict__.get("_module")
        if module is None:
            module = self.__dict__["_module"] = importlib.import_module(self._name)
        return getattr(module, attr)

    def __repr__(self) -> str:
        return f"<lazy module {self._name!r}>"
