"""The explicit shape contract of a network in a zoo: :class:`NetworkSpec`.

A ``NetworkSpec`` lists a network's layers in order (kind, fan-in/out, kernel, stride,
activation, ...) and, from them, its parameters (ordered names, shapes, dtypes). It is stored
in ``zoo.json`` for every architecture, and it is everything needed to rebuild the network:
:func:`build_module` gives an ``nn.Module`` whose ``state_dict`` keys are the spec's parameter
names, and :func:`population_forward` runs a whole stacked population in one batched call.

No shape is ever parsed from a string: specs round-trip through plain JSON dicts.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from catalog.errors import ZooFormatError

LAYER_KINDS = ("linear", "conv1d", "conv2d")
ACTIVATIONS = ("identity", "relu", "tanh", "sigmoid", "gelu", "leaky_relu", "sin")
POOLS = ("none", "global_avg")
#: Activations that are odd functions: flipping the sign of a hidden neuron's incoming
#: weights and bias and of its outgoing weights leaves the network's function unchanged.
ODD_ACTIVATIONS = frozenset({"identity", "tanh", "sin"})

DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16,
          "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class LayerSpec:
    """One layer: ``y = activation(omega * (W x + b))`` then an optional pooling.

    Args:
        kind: ``linear``, ``conv1d`` or ``conv2d``.
        in_features: input features (input channels for convolutions).
        out_features: output features (output channels for convolutions).
        weight: the parameter name of the weight.
        bias: the parameter name of the bias, or ``None``.
        kernel_size: kernel size per spatial dim (empty for linear layers).
        stride: convolution stride (default ``1``).
        padding: convolution zero padding (default ``0``).
        activation: one of :data:`ACTIVATIONS`, applied after the affine map (default identity).
        omega: pre-activation scale (``sin(omega * z)`` for SIRENs; default ``1.0``).
        pool: ``global_avg`` averages all spatial positions after the activation
            (default ``none``).
    """

    kind: str
    in_features: int
    out_features: int
    weight: str
    bias: str | None = None
    kernel_size: tuple[int, ...] = ()
    stride: int = 1
    padding: int = 0
    activation: str = "identity"
    omega: float = 1.0
    pool: str = "none"

    def __post_init__(self) -> None:
        if self.kind not in LAYER_KINDS:
            raise ZooFormatError(f"unknown layer kind {self.kind!r}; valid kinds: {', '.join(LAYER_KINDS)}")
        if self.activation not in ACTIVATIONS:
            raise ZooFormatError(
                f"unknown activation {self.activation!r}; valid activations: {', '.join(ACTIVATIONS)}")
        if self.pool not in POOLS:
            raise ZooFormatError(f"unknown pool {self.pool!r}; valid pools: {', '.join(POOLS)}")
        object.__setattr__(self, "kernel_size", tuple(int(k) for k in self.kernel_size))
        n_spatial = {"linear": 0, "conv1d": 1, "conv2d": 2}[self.kind]
        if len(self.kernel_size) != n_spatial:
            raise ZooFormatError(
                f"layer {self.weight!r}: a {self.kind} layer needs {n_spatial} kernel dims, "
                f"got {self.kernel_size}")

    @property
    def weight_shape(self) -> tuple[int, ...]:
        return (self.out_features, self.in_features, *self.kernel_size)

    @property
    def is_conv(self) -> bool:
        return self.kind != "linear"


@dataclass(frozen=True)
class ParamSpec:
    """One parameter tensor of a network: its name, shape, dtype, layer index and role."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    layer: int
    role: str  # "weight" or "bias"

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class NetworkSpec:
    """The explicit description of one architecture.

    Args:
        family: the architecture family it was built from (``mlp``, ``cnn``, ``siren``, ...).
        input_shape: shape of one input example, e.g. ``(64,)``, ``(1, 8, 8)``, ``(1, 40)``.
        layers: the layers in order.
        dtype: the parameters' dtype name (default ``float32``).
        meta: free-form JSON-able facts (e.g. a SIREN's image shape); not used to compute.
    """

    family: str
    input_shape: tuple[int, ...]
    layers: tuple[LayerSpec, ...]
    dtype: str = "float32"
    meta: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_shape", tuple(int(s) for s in self.input_shape))
        object.__setattr__(self, "layers", tuple(self.layers))
        if not self.layers:
            raise ZooFormatError("a NetworkSpec needs at least one layer")
        if self.dtype not in DTYPES:
            raise ZooFormatError(f"unknown dtype {self.dtype!r}; valid: {', '.join(DTYPES)}")
        for prev, nxt in zip(self.layers, self.layers[1:]):
            if prev.out_features != nxt.in_features:
                raise ZooFormatError(
                    f"layer {nxt.weight!r} takes {nxt.in_features} features but the layer before "
                    f"gives {prev.out_features}")

    # ----------------------------------------------------------------------------- params
    @property
    def params(self) -> tuple[ParamSpec, ...]:
        """The parameters in their canonical order (per layer: weight, then bias)."""
        out: list[ParamSpec] = []
        for i, layer in enumerate(self.layers):
            out.append(ParamSpec(layer.weight, layer.weight_shape, self.dtype, i, "weight"))
            if layer.bias is not None:
                out.append(ParamSpec(layer.bias, (layer.out_features,), self.dtype, i, "bias"))
        return tuple(out)

    @property
    def param_names(self) -> list[str]:
        return [p.name for p in self.params]

    @property
    def n_params(self) -> int:
        return sum(p.numel for p in self.params)

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    @property
    def n_outputs(self) -> int:
        return self.layers[-1].out_features

    @property
    def layer_widths(self) -> list[int]:
        """Neurons per layer, input layer first: ``[n_in, h_1, ..., n_out]``."""
        return [self.layers[0].in_features] + [layer.out_features for layer in self.layers]

    def summary(self) -> str:
        """One line that tells architectures apart: family, neurons per layer, the layer kind
        and kernel where not linear, activations, pooling and parameter count, e.g.
        ``"mlp 64-32-32-10, relu, 3,466 params"``.
        """
        widths = "-".join(str(w) for w in self.layer_widths)
        kinds = sorted({f"{layer.kind} k{'x'.join(map(str, layer.kernel_size))}"
                        + (f" s{layer.stride}" if layer.stride != 1 else "")
                        for layer in self.layers if layer.is_conv})
        hidden_acts = list(dict.fromkeys(layer.activation for layer in self.layers[:-1]))
        acts = "/".join(hidden_acts) or "identity"
        if self.layers[-1].activation != "identity":
            acts += f", output {self.layers[-1].activation}"
        omegas = sorted({layer.omega for layer in self.layers if layer.omega != 1.0})
        pools = sorted({layer.pool for layer in self.layers if layer.pool != "none"})
        parts = [f"{self.family} {widths}", *kinds, acts]
        parts += [f"omega {'/'.join(f'{o:g}' for o in omegas)}"] if omegas else []
        parts += [f"{p} pool" for p in pools]
        if self.dtype != "float32":
            parts.append(self.dtype)
        parts.append(f"{self.n_params:,} params")
        return ", ".join(parts)

    # ----------------------------------------------------------------------------- (de)serialise
    def to_dict(self) -> dict:
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        d["meta"] = dict(self.meta)
        for layer in d["layers"]:
            layer["kernel_size"] = list(layer["kernel_size"])
        d["params"] = [
            {"name": p.name, "shape": list(p.shape), "dtype": p.dtype, "layer": p.layer, "role": p.role}
            for p in self.params
        ]
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> NetworkSpec:
        try:
            layers = tuple(LayerSpec(**{**layer, "kernel_size": tuple(layer.get("kernel_size", ()))})
                           for layer in d["layers"])
            spec = cls(family=d["family"], input_shape=tuple(d["input_shape"]), layers=layers,
                       dtype=d.get("dtype", "float32"), meta=dict(d.get("meta", {})))
        except (KeyError, TypeError) as e:
            raise ZooFormatError(f"malformed NetworkSpec in manifest: {e}") from e
        if "params" in d:
            stored = [(p["name"], tuple(p["shape"])) for p in d["params"]]
            derived = [(p.name, p.shape) for p in spec.params]
            if stored != derived:
                raise ZooFormatError(
                    "NetworkSpec params in the manifest disagree with its layers; the manifest "
                    "was edited or is corrupt: rebuild or re-pull the zoo")
        return spec

    @property
    def arch_id(self) -> str:
        """A stable id: the family plus a hash of the canonical JSON of the spec."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode()
        return f"{self.family}-{hashlib.sha256(blob).hexdigest()[:10]}"


# ================================================================================ execution
def _activate(h: Tensor, layer: LayerSpec) -> Tensor:
    if layer.omega != 1.0:
        h = h * layer.omega
    act = layer.activation
    if act == "identity":
        return h
    if act == "relu":
        return torch.relu(h)
    if act == "tanh":
        return torch.tanh(h)
    if act == "sigmoid":
        return torch.sigmoid(h)
    if act == "gelu":
        return F.gelu(h)
    if act == "leaky_relu":
        return F.leaky_relu(h, 0.01)
    return torch.sin(h)  # "sin"; the activation name was validated at construction


def population_forward(
    spec: NetworkSpec,
    params: Mapping[str, Tensor],
    x: Tensor,
    dropout_masks: Mapping[int, Tensor] | None = None,
    activations: list[Tensor] | None = None,
) -> Tensor:
    """Run a population of ``P`` networks of one spec in a single batched computation.

    Args:
        spec: the shared architecture.
        params: ``{name: Tensor[P, *shape]}`` stacked parameters.
        x: inputs, either shared ``[B, *input_shape]`` or per member ``[P, B, *input_shape]``.
        dropout_masks: optional ``{layer_index: Tensor[P, B, in_features]}`` multiplied onto the
            input of that (linear) layer; masks are pre-scaled by ``1 / (1 - p)``.
        activations: if given, receives one ``[P, B, out_features]`` tensor per layer: the value
            of every neuron of the layer (after its activation; a convolution channel's map is
            averaged over positions) - the neuron-level view that probe features use.

    Shapes:
        returns ``[P, B, n_outputs]``.
    """
    first = params[spec.layers[0].weight]
    n_pop = first.shape[0]
    n_in = len(spec.input_shape)
    shared = x.dim() == n_in + 1
    if shared:
        batch = x.shape[0]
    else:
        batch = x.shape[1]
    # Conv layers run as one grouped convolution: members become channel groups, laid out
    # [B, P*C, *spatial]; linear layers run as bmm over [P, B, F].
    h = x
    layout = "shared" if shared else "pbf"
    for i, layer in enumerate(spec.layers):
        w = params[layer.weight]
        b = params[layer.bias] if layer.bias is not None else None
        if layer.is_conv:
            if layout == "shared":
                h = h.repeat(1, n_pop, *([1] * (h.dim() - 2)))  # [B, P*C, *sp]
            elif layout == "pbf":
                h = h.transpose(0, 1).reshape(batch, n_pop * h.shape[2], *h.shape[3:])
            conv = F.conv1d if layer.kind == "conv1d" else F.conv2d
            h = conv(h, w.reshape(n_pop * layer.out_features, *w.shape[2:]),
                     None if b is None else b.reshape(-1), stride=layer.stride,
                     padding=layer.padding, groups=n_pop)
            h = _activate(h, layer)
            layout = "grouped"
            if activations is not None:
                activations.append(h.flatten(2).mean(-1).reshape(batch, n_pop, -1).transpose(0, 1))
            if layer.pool == "global_avg":
                h = h.flatten(2).mean(-1).reshape(batch, n_pop, layer.out_features).transpose(0, 1)
                layout = "pbf"
        else:
            if layout == "grouped":
                h = h.reshape(batch, n_pop, -1).transpose(0, 1)
                layout = "pbf"
            if layout == "shared":
                h = h.reshape(batch, -1)
                if dropout_masks is not None and i in dropout_masks:
                    h = h.unsqueeze(0) * dropout_masks[i]
                    layout = "pbf"
            else:
                h = h.reshape(n_pop, batch, -1)
                if dropout_masks is not None and i in dropout_masks:
                    h = h * dropout_masks[i]
            if layout == "shared":
                # Broadcast the shared batch to every member (a view): the same batched kernel
                # then runs whatever the population size, so a member's numbers do not depend on P.
                h = h.unsqueeze(0).expand(n_pop, -1, -1)
            if layer.out_features == 1:
                # A one-output layer is a row-wise dot product; BLAS would take a different
                # (gemv) path for a population of one, so compute it elementwise instead.
                h = (h * w).sum(-1, keepdim=True)
                if b is not None:
                    h = h + b.unsqueeze(1)
            elif b is not None:
                h = torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))
            else:
                h = torch.bmm(h, w.transpose(1, 2))
            layout = "pbf"
            h = _activate(h, layer)
            if activations is not None:
                activations.append(h)
    if layout == "grouped":
        h = h.reshape(batch, n_pop, -1).transpose(0, 1)
    return h


class _Activation(nn.Module):
    def __init__(self, layer: LayerSpec) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, h: Tensor) -> Tensor:
        return _activate(h, self.layer)


class SpecNetwork(nn.Module):
    """A plain ``nn.Module`` rebuilt from a :class:`NetworkSpec`.

    Its ``state_dict`` keys are exactly the spec's parameter names (``layers.{i}.weight``,
    ``layers.{i}.bias``) and its forward computes what :func:`population_forward` computes for
    one member.

    Shapes:
        input ``[B, *input_shape]`` (or anything that reshapes to it) -> ``[B, n_outputs]``.
    """

    def __init__(self, spec: NetworkSpec) -> None:
        super().__init__()
        self.spec = spec
        mods: list[nn.Module] = []
        for layer in spec.layers:
            if layer.kind == "linear":
                mods.append(nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None))
            else:
                conv_cls = nn.Conv1d if layer.kind == "conv1d" else nn.Conv2d
                mods.append(conv_cls(layer.in_features, layer.out_features, layer.kernel_size,
                                     stride=layer.stride, padding=layer.padding,
                                     bias=layer.bias is not None))
        self.layers = nn.ModuleList(mods)
        self._acts = [_Activation(layer) for layer in spec.layers]
        expected = spec.param_names
        got = list(self.state_dict().keys())
        if got != expected:
            raise ZooFormatError(
                f"NetworkSpec parameter names {expected} do not follow the layers.{{i}}.weight/bias "
                f"convention ({got}); such a spec cannot be rebuilt as a SpecNetwork")
        self.to(spec.torch_dtype)

    def forward(self, x: Tensor) -> Tensor:
        h = x.reshape(x.shape[0], *self.spec.input_shape)
        for layer_spec, mod, act in zip(self.spec.layers, self.layers, self._acts):
            if layer_spec.kind == "linear":
                h = h.reshape(h.shape[0], -1)
            h = act(mod(h))
            if layer_spec.pool == "global_avg":
                h = h.flatten(2).mean(-1)
        return h


def build_module(spec: NetworkSpec, state_dict: Mapping[str, Tensor] | None = None) -> SpecNetwork:
    """Build an ``nn.Module`` for ``spec`` and, if given, load ``state_dict`` into it (strictly)."""
    module = SpecNetwork(spec)
    if state_dict is not None:
        module.load_state_dict(dict(state_dict), strict=True)
    return module.eval()
