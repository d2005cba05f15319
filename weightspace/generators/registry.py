"""The generator registry: weight generators and memorization baselines by name."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from catalog.errors import WeightzooError
from catalog.network import NetworkSpec
from weightspace.generators.base import Generator

_REGISTRY: dict[str, type[Generator]] = {}
G = TypeVar("G", bound=type[Generator])


def register_generator(name: str) -> Callable[[G], G]:
    """Class decorator: register a :class:`Generator` subclass under ``name``."""

    def deco(cls: G) -> G:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"generator name {name!r} is already registered")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def _ensure_loaded() -> None:
    import weightspace.generators  # noqa: F401  (imports every built-in method, which registers it)


def generator_names() -> list[str]:
    """The registered generator names, sorted."""
    _ensure_loaded()
    return sorted(_REGISTRY)


def get_generator(name: str) -> type[Generator]:
    """The generator class registered as ``name``; the error lists the valid names."""
    _ensure_loaded()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise WeightzooError(
            f"unknown generator {name!r}; valid names: {', '.join(sorted(_REGISTRY))}") from None


def generator_hparams(name: str) -> list[str]:
    """The hyperparameter names ``name``'s constructor takes (for help texts and errors)."""
    params = inspect.signature(get_generator(name).__init__).parameters
    return [p for p, v in params.items()
            if p not in ("self", "spec") and v.kind in (v.POSITIONAL_OR_KEYWORD, v.KEYWORD_ONLY)]


def build_generator(name: str, spec: NetworkSpec, **hparams: Any) -> Generator:
    """Build a registered generator, ``Method(spec, **hparams)``; unknown hparams are a user error."""
    cls = get_generator(name)
    valid = generator_hparams(name)
    unknown = sorted(set(hparams) - set(valid))
    if unknown:
        raise WeightzooError(
            f"generator {name!r} has no hyperparameter(s) {unknown}; valid: {', '.join(valid) or 'none'}")
    return cls(spec, **hparams)
