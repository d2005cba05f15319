"""The generator registry: weight generators and memorization baselines by name."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from catalog.errors import WeightzooError
from catalog.format import parse_json
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


def parse_hparams(name: str, items: Mapping[str, Any] | list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Hyperparameters given as text (``["sigma=0.1", "k=4"]`` or ``{"sigma": "0.1"}``, e.g.
    from ``--hparam``) as typed values for generator ``name`` (non-text values pass unchanged).

    A value takes the type of the constructor's default for that name (``int``, ``float``,
    ``bool``, ``str``); a value whose default is ``None``, a list or a dict is read as JSON
    (falling back to the plain string). Unknown names and unparsable values are user errors.
    """
    if not isinstance(items, Mapping):
        pairs: dict[str, str] = {}
        for item in items:
            key, sep, value = str(item).partition("=")
            if not sep or not key.strip():
                raise WeightzooError(f"hyperparameter {item!r} is not KEY=VALUE, e.g. hparams=['sigma=0.1'] "
                                     f"(--hparam sigma=0.1)")
            pairs[key.strip()] = value.strip()
        items = pairs
    params = inspect.signature(get_generator(name).__init__).parameters
    valid = generator_hparams(name)
    out: dict[str, Any] = {}
    for key, text in items.items():
        if key not in valid:
            raise WeightzooError(
                f"generator {name!r} has no hyperparameter {key!r}; valid: {', '.join(valid) or 'none'}")
        # Typed values (from Python) pass through; text (from the command line) is typed here.
        out[key] = _coerce(name, key, text, params[key].default) if isinstance(text, str) else text
    return out


def _coerce(name: str, key: str, text: str, default: Any) -> Any:
    try:
        if isinstance(default, bool):
            lowered = text.lower()
            if lowered not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(text)
            return lowered in ("true", "1", "yes")
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float):
            return float(text)
        if isinstance(default, str):
            return text
    except ValueError:
        kind = type(default).__name__
        raise WeightzooError(f"generator {name!r}: hyperparameter {key}={text!r} is not a valid {kind}; "
                             f"give e.g. {key}={default!r}") from None
    try:  # no typed default (None, a list, a dict): JSON if it parses, else the string itself
        return parse_json(text, f"hyperparameter {key}", WeightzooError)
    except WeightzooError:
        return text


def build_generator(name: str, spec: NetworkSpec, **hparams: Any) -> Generator:
    """Build a registered generator, ``Method(spec, **hparams)``; unknown hparams are a user error."""
    cls = get_generator(name)
    valid = generator_hparams(name)
    unknown = sorted(set(hparams) - set(valid))
    if unknown:
        raise WeightzooError(
            f"generator {name!r} has no hyperparameter(s) {unknown}; valid: {', '.join(valid) or 'none'}")
    return cls(spec, **hparams)
