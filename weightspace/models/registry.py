"""The metanetwork registry: metanetworks by name."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
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


def metanetworks_help() -> str:
    """The ``zoo train --model`` help: every registered name, and which architectures each reads
    together (:attr:`Metanetwork.multi_arch`), so a new model shows up without editing the CLI."""
    names = metanetwork_names()
    reads: dict[str, list[str]] = {}
    for name in names:
        reads.setdefault(_REGISTRY[name].multi_arch, []).append(name)
    how = {"any": "read any", "same_params": "those with the same parameter shapes",
           "one": "one (select it with --where \"arch_id = '...'\")"}
    parts = [f"{'/'.join(reads[k])} {how[k]}" for k in how if k in reads]
    return f"Metanetwork: {', '.join(names)}. Several architectures in the selection: {', '.join(parts)}."


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
    return get_metanetwork(name)(spec, out_dim, **check_hparams(name, hparams))


#: Integer hyperparameters that may be 0 (the others must be >= 1), and those in [0, 1].
_ZERO_OK = frozenset({"probes"})
_UNIT_INTERVAL = frozenset({"dropout", "quantiles"})


def check_hparams(name: str, hparams: Mapping[str, Any]) -> dict[str, Any]:
    """Metanetwork ``name``'s hyperparameters, checked against its constructor's defaults.

    Like the generators' ``--hparam`` typing (:func:`weightspace.generators.registry.parse_hparams`),
    a value must have the type of the default: an ``int`` default takes an integer (>= 1; >= 0 for
    ``probes``), a ``float`` one a number, a ``str`` one text, a tuple one a list of numbers or
    comma-separated text (``quantiles=0.1,0.9``); dropout and quantiles lie in [0, 1]. A ``None``
    default takes anything (the model checks it).

    Returns:
        the hyperparameters, a comma-separated list as a list of floats.

    Raises:
        WeightzooError: an unknown name (listing the valid ones), or a value of the wrong type or
            range (naming the hyperparameter and the expected form).
    """
    params = inspect.signature(get_metanetwork(name).__init__).parameters
    valid = [p for p in params if p not in ("self", "spec", "out_dim")]
    unknown = sorted(set(hparams) - set(valid))
    if unknown:
        raise WeightzooError(
            f"metanetwork {name!r} has no hyperparameter(s) {unknown}; valid: {', '.join(valid)}")
    out: dict[str, Any] = {}
    for key, value in hparams.items():
        out[key] = _check_hparam(name, key, value, params[key].default)
    return out


def _check_hparam(name: str, key: str, value: Any, default: Any) -> Any:
    def bad(form: str) -> WeightzooError:
        return WeightzooError(f"metanetwork {name!r}: hyperparameter {key}={value!r} is not {form}; "
                              f"give e.g. {key}={_example(default)} (hparams=, --hparam)")

    def number(v: Any) -> bool:
        return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)

    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise bad("true or false")
    elif isinstance(default, int):
        low = 0 if key in _ZERO_OK else 1
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise bad(f"an integer >= {low}")
    elif isinstance(default, float):
        if not number(value) or value < 0 or (key in _UNIT_INTERVAL and value >= 1):
            raise bad("a number in [0, 1)" if key in _UNIT_INTERVAL else "a number >= 0")
    elif isinstance(default, str):
        if not isinstance(value, str):
            raise bad("text")
    elif isinstance(default, tuple | list):
        items = value
        if isinstance(value, str):
            try:
                items = [float(x) for x in value.split(",")]
            except ValueError:
                raise bad("a comma-separated list of numbers") from None
        elif number(value):
            items = [value]
        if (not isinstance(items, list | tuple) or not items or not all(number(x) for x in items)
                or (key in _UNIT_INTERVAL and not all(0 <= x <= 1 for x in items))):
            raise bad("a comma-separated list of numbers" + (" in [0, 1]" if key in _UNIT_INTERVAL else ""))
        return [float(x) for x in items]
    return value


def _example(default: Any) -> str:
    if isinstance(default, tuple | list):
        return ",".join(str(x) for x in default)
    return str(default).lower() if isinstance(default, bool) else str(default)


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
