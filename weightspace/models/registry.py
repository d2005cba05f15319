"""The metanetwork registry: metanetworks by name."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from catalog.errors import WeightzooError
from catalog.network import NetworkSpec
from weightspace.models.base import Metanetwork

_REGISTRY: dict[str, type[Metanetwork]] = {}
M = TypeVar("M", bound=type[Metanetwork])


def register_metanetwork(name: str) -> Callable[[M], M]:
    """Class decorator: register a :class:`Metanetwork` subclass under ``name``."""

    def deco(cls: M) -> M:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"metanetwork name {name!r} is already registered")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def _ensure_loaded() -> None:
    import weightspace.models  # noqa: F401  (imports every built-in model, which registers it)


def metanetwork_names() -> list[str]:
    """The registered metanetwork names, sorted."""
    _ensure_loaded()
    return sorted(_REGISTRY)


def get_metanetwork(name: str) -> type[Metanetwork]:
    """The metanetwork class registered as ``name``; the error lists the valid names."""
    _ensure_loaded()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise WeightzooError(
            f"unknown metanetwork {name!r}; valid names: {', '.join(sorted(_REGISTRY))}") from None


def build_metanetwork(name: str, spec: NetworkSpec, out_dim: int, **hparams: Any) -> Metanetwork:
    """Build a registered metanetwork, ``Model(spec, out_dim, **hparams)``.

    Args:
        name: registry name (``statnn``, ``mlp``, ``dws``, ``nfn``, ``gmn``).
        spec: the architecture of the input networks.
        out_dim: output size.
        **hparams: model hyperparameters; unknown ones are a user error listing the valid ones.
    """
    cls = get_metanetwork(name)
    params = inspect.signature(cls.__init__).parameters
    valid = [p for p in params if p not in ("self", "spec", "out_dim")]
    unknown = sorted(set(hparams) - set(valid))
    if unknown:
        raise WeightzooError(
            f"metanetwork {name!r} has no hyperparameter(s) {unknown}; valid: {', '.join(valid)}")
    return cls(spec, out_dim, **hparams)


#: Named hyperparameter presets per metanetwork. ``"default"`` is the same-budget setting every
#: model gets in our benchmark (the constructor defaults); other names reproduce a published
#: configuration. Filled in next to each model (see ``register_preset``).
_PRESETS: dict[str, dict[str, dict[str, Any]]] = {}
DEFAULT_PRESET = "default"


def register_preset(model_name: str, preset: str, hparams: dict[str, Any]) -> None:
    """Register ``hparams`` as the preset ``preset`` of metanetwork ``model_name``."""
    _PRESETS.setdefault(model_name, {})[preset] = dict(hparams)


def preset_names(model_name: str) -> list[str]:
    """The presets of ``model_name`` (always including ``"default"``), sorted."""
    _ensure_loaded()
    return sorted({DEFAULT_PRESET, *_PRESETS.get(model_name, {})})


def preset_hparams(model_name: str, preset: str | None) -> dict[str, Any]:
    """The hyperparameters of a named preset (``None`` or ``"default"``: none, the defaults).

    Raises:
        WeightzooError: unknown model or preset; the message lists the valid presets.
    """
    get_metanetwork(model_name)
    if preset is None or preset == DEFAULT_PRESET:
        return {}
    try:
        return dict(_PRESETS[model_name][preset])
    except KeyError:
        raise WeightzooError(
            f"metanetwork {model_name!r} has no preset {preset!r}; valid presets: "
            f"{', '.join(preset_names(model_name))}") from None
