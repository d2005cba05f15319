"""The architecture registry: a config dataclass per family, turned into a ``NetworkSpec``.

| name  | what                                                                            |
| ----- | ------------------------------------------------------------------------------- |
| mlp   | fully connected layers, ``hidden`` widths, one activation                       |
| cnn   | the Small-CNN-Zoo layout: 3 convs (stride 2), global average pool, linear head; |
|       | 2-D for images ``[C, H, W]``, 1-D for signals ``[C, L]``                        |
| siren | an implicit neural representation (Sitzmann et al. 2020), see :class:`SirenConfig` |

These three build layer chains; ``resnet``, ``vgg``, ``modelzoo-cnn`` and ``transformer``
build graphs (see :mod:`zoo_builders.graph_architectures`).
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, fields
from typing import Any

from catalog.errors import WeightzooError
from catalog.network import ACTIVATIONS, LayerSpec, NetworkSpec
from zoo_builders.graph_architectures import GRAPH_ARCHITECTURES, positive_int, positive_number


def _check_activation(act: str) -> None:
    if act not in ACTIVATIONS:
        raise WeightzooError(f"unknown activation {act!r}; valid activations: {', '.join(ACTIVATIONS)}")


def _int_list(name: str, value: Any) -> tuple[int, ...]:
    """A list of positive integers (one alone stands for a list of it); integral floats count
    and become ints (see :func:`~zoo_builders.graph_architectures.positive_int`)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list | tuple):
        raise WeightzooError(f"architecture.{name} must be a list of positive integers, got {value!r}")
    try:
        return tuple(positive_int(name, v) for v in value)
    except WeightzooError as e:
        raise WeightzooError(f"architecture.{name} must be a list of positive integers, got {value!r}") from e


@dataclass(frozen=True)
class MLPConfig:
    """A multilayer perceptron.

    Args:
        hidden: hidden layer widths (default ``(32, 32)``); depth is ``len(hidden)``.
        activation: activation after each hidden layer (default ``relu``).
    """

    hidden: tuple[int, ...] = (32, 32)
    activation: str = "relu"

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", _int_list("hidden", self.hidden))
        _check_activation(self.activation)

    def network_spec(self, input_shape: tuple[int, ...], n_outputs: int) -> NetworkSpec:
        n_in = 1
        for s in input_shape:
            n_in *= s
        widths = [n_in, *self.hidden, n_outputs]
        layers = tuple(
            LayerSpec("linear", widths[i], widths[i + 1], f"layers.{i}.weight", f"layers.{i}.bias",
                      activation=self.activation if i < len(widths) - 2 else "identity")
            for i in range(len(widths) - 1))
        return NetworkSpec("mlp", input_shape, layers)


@dataclass(frozen=True)
class CNNConfig:
    """The small CNN of the Small CNN Zoo (Unterthiner et al. 2020).

    Three convolutions with stride 2 and ``padding = kernel_size // 2``, each followed by the
    activation, then a global average pool and a linear classifier. Inputs ``[C, H, W]`` give
    2-D convolutions, inputs ``[C, L]`` 1-D ones.

    Args:
        channels: output channels of the three convolutions (default ``(8, 8, 8)``).
        kernel_size: square kernel size (default ``3``).
        activation: activation after each convolution (default ``relu``).
    """

    channels: tuple[int, ...] = (8, 8, 8)
    kernel_size: int = 3
    activation: str = "relu"

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", _int_list("channels", self.channels))
        if len(self.channels) < 1:
            raise WeightzooError("architecture.channels needs at least one convolution")
        object.__setattr__(self, "kernel_size", positive_int("kernel_size", self.kernel_size))
        _check_activation(self.activation)

    def network_spec(self, input_shape: tuple[int, ...], n_outputs: int) -> NetworkSpec:
        if len(input_shape) not in (2, 3):
            raise WeightzooError(
                f"cnn needs image [C, H, W] or signal [C, L] inputs; this dataset gives {list(input_shape)}: "
                f"use architecture 'mlp' instead")
        kind = "conv2d" if len(input_shape) == 3 else "conv1d"
        n_sp = len(input_shape) - 1
        chans = [input_shape[0], *self.channels]
        layers = [
            LayerSpec(kind, chans[i], chans[i + 1], f"layers.{i}.weight", f"layers.{i}.bias",
                      kernel_size=(self.kernel_size,) * n_sp, stride=2, padding=self.kernel_size // 2,
                      activation=self.activation,
                      pool="global_avg" if i == len(self.channels) - 1 else "none")
            for i in range(len(self.channels))]
        i = len(self.channels)
        layers.append(LayerSpec("linear", chans[-1], n_outputs, f"layers.{i}.weight", f"layers.{i}.bias"))
        return NetworkSpec("cnn", input_shape, tuple(layers))


@dataclass(frozen=True)
class SirenConfig:
    """A SIREN implicit neural representation of a grayscale image.

    Definition (fixed, following Sitzmann et al. 2020, "Implicit Neural Representations with
    Periodic Activation Functions"):

    - input: pixel coordinates ``(row, col)`` scaled to ``[-1, 1]`` (``linspace(-1, 1, H)`` by
      ``linspace(-1, 1, W)``, row-major), so one image is ``H * W`` points of 2 features;
    - hidden layers: ``h = sin(omega0 * (W h + b))`` with ``omega0 = 30`` for every sine layer,
      the first one included;
    - output: a linear layer giving the pixel intensity in ``[0, 1]`` (no activation, 1 channel);
    - initialization (init scheme ``siren``): first layer ``W ~ U(-1/n_in, 1/n_in)``; every
      later layer ``W ~ U(-sqrt(6/n_in)/omega0, sqrt(6/n_in)/omega0)``; biases
      ``b ~ U(-1/sqrt(n_in), 1/sqrt(n_in))`` (PyTorch's ``nn.Linear`` default, as in the
      reference code).

    Args:
        hidden: hidden widths (default ``(32, 32)``).
        omega0: the frequency factor (default ``30.0``).
    """

    hidden: tuple[int, ...] = (32, 32)
    omega0: float = 30.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", _int_list("hidden", self.hidden))
        object.__setattr__(self, "omega0", positive_number("omega0", self.omega0))

    def network_spec(self, input_shape: tuple[int, ...], n_outputs: int) -> NetworkSpec:
        widths = [2, *self.hidden, 1]
        layers = tuple(
            LayerSpec("linear", widths[i], widths[i + 1], f"layers.{i}.weight", f"layers.{i}.bias",
                      activation="sin" if i < len(widths) - 2 else "identity",
                      omega=self.omega0 if i < len(widths) - 2 else 1.0)
            for i in range(len(widths) - 1))
        return NetworkSpec("siren", (2,), layers, meta={"image_shape": list(input_shape),
                                                        "coordinates": "[-1,1]^2 row-major",
                                                        "output": "intensity in [0,1]"})


ARCHITECTURES: dict[str, type] = {"mlp": MLPConfig, "cnn": CNNConfig, "siren": SirenConfig,
                                   **GRAPH_ARCHITECTURES}
DEFAULT_INIT: dict[str, str] = {"mlp": "default", "cnn": "default", "siren": "siren",
                                **{name: "default" for name in GRAPH_ARCHITECTURES}}


def arch_fields(name: str) -> list[str]:
    return [f.name for f in fields(ARCHITECTURES[name])]


def make_architecture(d: dict) -> tuple[str, Any]:
    """``{name: mlp, hidden: [...], ...}`` -> ``("mlp", MLPConfig(...))``, validated."""
    if not isinstance(d, dict) or "name" not in d:
        raise WeightzooError("spec 'architecture' must be a mapping with a 'name', e.g. {name: mlp}")
    name = d["name"]
    if not isinstance(name, str):
        raise WeightzooError(f"architecture name must be a string, one of {', '.join(sorted(ARCHITECTURES))}; "
                             f"got {name!r}")
    if name not in ARCHITECTURES:
        raise WeightzooError(f"unknown architecture {name!r}; valid architectures: {', '.join(sorted(ARCHITECTURES))}")
    opts = {k: v for k, v in d.items() if k != "name"}
    valid = arch_fields(name)
    unknown = sorted(set(opts) - set(valid))
    if unknown:
        raise WeightzooError(f"unknown option(s) {unknown} for architecture {name!r}; "
                             f"valid options: {', '.join(valid)}")
    try:
        return name, ARCHITECTURES[name](**opts)
    except TypeError as e:
        raise WeightzooError(f"architecture {name!r}: {e}") from e


def arch_to_dict(name: str, cfg: Any) -> dict:
    """``{name, **fields}``: the architecture's part of a run's identity. Families with
    ``ID_OMITS_DEFAULTS`` (every family after mlp, cnn and siren, whose run ids predate the
    rule) leave out fields at their default, so a field added later renames no run."""
    omit = getattr(cfg, "ID_OMITS_DEFAULTS", False)
    out: dict[str, Any] = {"name": name}
    for f in fields(cfg):
        v = getattr(cfg, f.name)
        if omit and f.default is not MISSING and v == f.default:
            continue
        out[f.name] = list(v) if isinstance(v, tuple) else v
    return out


