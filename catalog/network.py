"""The explicit shape contract of a network in a zoo: :class:`NetworkSpec`.

A ``NetworkSpec`` comes in two forms:

- a **chain** (format v1): its layers in order (kind, fan-in/out, kernel, stride, activation,
  ...), each ``y = activation(omega * (W x + b))`` with optional global average pooling - what
  the ``mlp``, ``cnn`` and ``siren`` families build;
- a **graph** (format v2): an ordered list of typed nodes (:mod:`catalog.nodes`: linear,
  convolutions, batch/layer norm, pooling, residual ``add``, attention, ...), each naming its
  inputs - ResNets, VGGs, transformers.

From either it derives its parameters (ordered names, shapes, dtypes). It is stored in
``zoo.json`` for every architecture, and it is everything needed to rebuild the network:
:func:`build_module` gives an ``nn.Module`` whose ``state_dict`` keys are the spec's parameter
names, and :func:`population_forward` runs a whole stacked population in one batched call
(chains by a hand-written fast path, graphs node by node in batched form, see
:mod:`catalog.execution`).

A chain can be expressed as a graph (:meth:`NetworkSpec.as_graph`); the chain form is kept
because its stored JSON and ids predate graphs, and chain-only weight-space code reads it.

No shape is ever parsed from a string: specs round-trip through plain JSON dicts.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import math
import numbers
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from catalog.errors import WeightzooError, ZooFormatError
from catalog.lazy import LazyModule
from catalog.nodes import (  # noqa: F401 (is_finite_number: re-exported, the one finiteness test of spec numbers)
    ACTIVATIONS,
    BUFFER_ROLES,
    INPUT,
    MAX_INT,
    Node,
    activate,
    channels_last,
    check_numel,
    is_finite_number,
    node_from_dict,
    short_repr,
)

if TYPE_CHECKING:
    from torch import Tensor

    from catalog.modules import SpecNetwork, build_module  # noqa: F401 (re-exported lazily below)

# torch is imported at the first computation: a spec parses and validates without it.
torch = LazyModule("torch")
F = LazyModule("torch.nn.functional")

LAYER_KINDS = ("linear", "conv1d", "conv2d")
POOLS = ("none", "global_avg")
#: Most values one input example may have (``math.prod(input_shape)``): 2**24, a 3 x 2048 x 2048
#: image and more. An input shape is read from zoo.json, which anyone can write, and code sizes
#: tensors by it (probe inputs, evaluation batches): ``[1, 30000, 30000]`` in a crafted zoo made
#: ``zoo train --hparam probes=4`` allocate 14 GB. Changes no id (a bound, not a new field).
MAX_INPUT_NUMEL = 2**24
#: Activations that are odd functions: flipping the sign of a hidden neuron's incoming
#: weights and bias and of its outgoing weights leaves the network's function unchanged.
ODD_ACTIVATIONS = frozenset({"identity", "tanh", "sin"})

#: The dtypes a spec may name (torch's names).
DTYPES = ("float32", "float64", "float16", "bfloat16")


def _is_integral(value: object) -> bool:
    """An integer (numpy's too), or a float with an integral value; not a bool or a string."""
    if isinstance(value, float):
        return value.is_integer()
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _layer_int(layer: object, key: str, value: object, low: int) -> int:
    """``value`` of a layer's integer field as an ``int`` >= ``low`` (integral floats count, as
    for graph nodes)."""
    if not _is_integral(value) or value < low:
        raise ZooFormatError(f"layer {layer!r}: {key} must be an integer >= {low}, got {value!r}")
    if value > MAX_INT:
        raise ZooFormatError(f"layer {layer!r}: {key} is {short_repr(value)}, beyond 2**63 - 1, the largest integer "
                             f"torch takes as a size, stride or padding; use a realistic value")
    return int(value)


#: The fields of one layer in a stored chain.
LAYER_KEYS = ("kind", "in_features", "out_features", "weight", "bias", "kernel_size", "stride", "padding",
              "activation", "omega", "pool", "shift")
#: The fields a stored layer must have.
LAYER_REQUIRED = ("kind", "in_features", "out_features", "weight")


@dataclass(frozen=True)
class LayerSpec:
    """One layer: ``y = activation(omega * (W x + b))`` then an optional pooling (and, for the
    last layer only, a constant ``shift`` added to the network's output).

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
        shift: a constant added to the output after the activation and pooling (default
            ``0.0``); only the last layer may have one. It is how an imported INR whose code
            computes ``seq(x) + 0.5`` (DWSNets) keeps its weights bit-identical and its function.
            Stored only when non-zero, so no existing architecture's id changes.
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
    shift: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in LAYER_KINDS:
            raise ZooFormatError(f"unknown layer kind {self.kind!r}; valid kinds: {', '.join(LAYER_KINDS)}")
        if not isinstance(self.weight, str):
            raise ZooFormatError(f"layer weight must be a parameter name (e.g. 'layers.0.weight'), got {self.weight!r}")
        if self.bias is not None and not isinstance(self.bias, str):
            raise ZooFormatError(f"layer {self.weight!r}: bias must be a parameter name or null, got {self.bias!r}")
        kernel = self.kernel_size
        if not isinstance(kernel, list | tuple) or not all(_is_integral(k) and k >= 1 for k in kernel):
            raise ZooFormatError(f"layer {self.weight!r}: kernel_size must be a list of integers >= 1, got {kernel!r}")
        object.__setattr__(self, "kernel_size", tuple(_layer_int(self.weight, "kernel_size", k, 1) for k in kernel))
        for key, low in (("in_features", 1), ("out_features", 1), ("stride", 1), ("padding", 0)):
            object.__setattr__(self, key, _layer_int(self.weight, key, getattr(self, key), low))
        if self.activation not in ACTIVATIONS:
            raise ZooFormatError(
                f"unknown activation {self.activation!r}; valid activations: {', '.join(ACTIVATIONS)}")
        # Checked, not converted: an omega stored as 30 stays 30, so the arch_id it hashes to stays.
        if not is_finite_number(self.omega):
            raise ZooFormatError(f"layer {self.weight!r}: omega must be a finite number, got {self.omega!r}")
        if self.pool not in POOLS:
            raise ZooFormatError(f"unknown pool {self.pool!r}; valid pools: {', '.join(POOLS)}")
        if not is_finite_number(self.shift):
            raise ZooFormatError(f"layer {self.weight!r}: shift must be a finite number, got {self.shift!r}")
        object.__setattr__(self, "shift", float(self.shift))
        n_spatial = {"linear": 0, "conv1d": 1, "conv2d": 2}[self.kind]
        if len(self.kernel_size) != n_spatial:
            raise ZooFormatError(
                f"layer {self.weight!r}: a {self.kind} layer needs {n_spatial} kernel dims, "
                f"got {self.kernel_size}")
        check_numel(f"layer {self.weight!r}: its weight", self.weight_shape)

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
    layer: int  # the layer index (chains) or node index (graphs)
    role: str  # "weight", "bias", "embedding", or a buffer role ("running_mean", "running_var")

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def trainable(self) -> bool:
        """False for buffers (batch-norm running statistics): state, stored but not trained."""
        return self.role not in BUFFER_ROLES


def _last_shape(input_shape: tuple[int, ...], nodes: list[Node]) -> tuple[int, ...]:
    """The output shape of the last of ``nodes`` (run from the network's input)."""
    shapes = {INPUT: tuple(input_shape)}
    for node in nodes:
        shapes[node.name] = tuple(node.out_shape([shapes[i] for i in node.inputs]))
    return shapes[nodes[-1].name]


def _cycle(nodes: tuple[Node, ...], index: dict[str, int], start: str) -> list[str] | None:
    """A path ``start -> ... -> start`` following inputs, or ``None``."""
    path: list[str] = []
    seen: set[str] = set()

    def visit(name: str) -> bool:
        if name == start and path:
            return True
        if name in seen or name not in index:
            return False
        seen.add(name)
        path.append(name)
        if any(visit(i) for i in nodes[index[name]].inputs):
            return True
        path.pop()
        return False

    return [*path, start] if visit(start) else None


_NAME_PART = re.compile(r"[A-Za-z0-9_]+")


def _check_param_names(names: list[str]) -> None:
    """A chain's parameter names: any dotted names (``layers.0.weight``, ``seq.0.weight``,
    ``net.0.linear.weight``, ``fc1.weight``) whose parts are letters, digits and ``_``, unique,
    and none the prefix of another (a module path cannot also be a tensor).

    Raises:
        ZooFormatError: the first bad name.
    """
    seen: set[str] = set()
    for n in names:
        if not isinstance(n, str) or not all(_NAME_PART.fullmatch(p) for p in n.split(".")):
            raise ZooFormatError(f"parameter name {n!r}: use dot-separated parts of letters, digits and '_' "
                                 f"(e.g. 'layers.0.weight')")
        if n in seen:
            raise ZooFormatError(f"two parameters are named {n!r}; parameter names must be unique")
        seen.add(n)
    for n in names:
        parts = n.split(".")
        for k in range(1, len(parts)):
            if ".".join(parts[:k]) in seen:
                raise ZooFormatError(f"parameter {'.'.join(parts[:k])!r} is also the prefix of {n!r}; rename one")


#: Version of the canonical form graph specs' ids hash (see :meth:`NetworkSpec.arch_id`).
GRAPH_ID_VERSION = 2

#: True while :meth:`NetworkSpec.from_dict` reads a stored spec (a zoo's ``zoo.json``, a saved
#: run's config): checks added after such specs were written (graph nodes that feed nothing) are
#: for specs entering weightzoo only, so every zoo written before them still opens.
_READING_STORED: contextvars.ContextVar[bool] = contextvars.ContextVar("_READING_STORED", default=False)


@dataclass(frozen=True)
class NetworkSpec:
    """The explicit description of one architecture: a chain of ``layers`` or a graph of
    ``nodes`` (exactly one of the two).

    Args:
        family: the architecture family it was built from (``mlp``, ``cnn``, ``resnet``, ...).
        input_shape: shape of one input example, e.g. ``(64,)``, ``(1, 8, 8)``, ``(1, 40)``; at
            most :data:`MAX_INPUT_NUMEL` values.
        layers: the layers of a chain, in order (default none: a graph).
        dtype: the parameters' dtype name (default ``float32``).
        meta: free-form JSON-able facts (e.g. a SIREN's image shape); not used to compute.
        nodes: the nodes of a graph, in an order where every node comes after its inputs; the
            last one is the output, a vector (default none: a chain).

    Raises:
        ZooFormatError: one clear message for the first problem: an unknown kind, a node input
            that does not exist, a cycle, an ``add`` of mismatched shapes, shapes that do not
            chain, ...
    """

    family: str
    input_shape: tuple[int, ...]
    layers: tuple[LayerSpec, ...] = ()
    dtype: str = "float32"
    meta: Mapping[str, object] = field(default_factory=dict)
    nodes: tuple[Node, ...] = ()

    def __post_init__(self) -> None:
        shape = self.input_shape
        # A string is iterable too: "64" would be the shape (6, 4).
        if not isinstance(shape, list | tuple) or not all(_is_integral(n) and n >= 1 for n in shape):
            raise ZooFormatError(f"NetworkSpec input_shape must be a list of positive integers, got {shape!r}")
        object.__setattr__(self, "input_shape", tuple(int(n) for n in shape))
        check_numel("the network's input", self.input_shape)
        if math.prod(self.input_shape) > MAX_INPUT_NUMEL:
            raise ZooFormatError(
                f"NetworkSpec input_shape {list(self.input_shape)} is {math.prod(self.input_shape):,} values "
                f"per example, more than the {MAX_INPUT_NUMEL:,} (2**24) weightzoo takes; use smaller inputs (a "
                f"zoo.json or run config.json with this shape is corrupt or was crafted: rebuild or retrain it)")
        if not isinstance(self.family, str):
            raise ZooFormatError(f"NetworkSpec family must be a string, got {self.family!r}")
        if not isinstance(self.meta, Mapping):
            raise ZooFormatError(f"NetworkSpec meta must be an object, got {self.meta!r}")
        object.__setattr__(self, "layers", tuple(self.layers))
        object.__setattr__(self, "nodes", tuple(self.nodes))
        if self.dtype not in DTYPES:
            raise ZooFormatError(f"unknown dtype {self.dtype!r}; valid: {', '.join(DTYPES)}")
        if self.nodes:
            if self.layers:
                raise ZooFormatError("a NetworkSpec is a chain of layers or a graph of nodes, not both")
            self._check_graph()
            return
        if not self.layers:
            raise ZooFormatError("a NetworkSpec needs at least one layer (or node)")
        for prev, nxt in zip(self.layers, self.layers[1:]):
            if prev.out_features != nxt.in_features:
                raise ZooFormatError(
                    f"layer {nxt.weight!r} takes {nxt.in_features} features but the layer before "
                    f"gives {prev.out_features}")
        for layer in self.layers[:-1]:
            if layer.shift != 0.0:
                raise ZooFormatError(f"layer {layer.weight!r} has a shift; only the last layer (the output) may")
        self._check_chain_shapes()
        _check_param_names([p.name for p in self.params])
        self._check_n_params()

    def _check_chain_shapes(self) -> None:
        """A chain's layers against the shapes they read, from ``input_shape`` on, as
        :func:`population_forward` runs them: a linear layer flattens what it reads (all of its
        values are its features); a convolution reads a channel-first map whose channels are its
        in_features and which its kernel fits; the output is a vector (a last convolution pools).
        Without this, a chain whose first layer did not fit the input was stored, and failed in
        torch (``mat1 and mat2 shapes cannot be multiplied``) whenever it computed."""
        shape = self.input_shape
        for i, layer in enumerate(self.layers):
            source = (f"the input (input_shape {list(self.input_shape)})" if i == 0
                      else f"layer {self.layers[i - 1].weight!r} (output shape {list(shape)})")
            if not layer.is_conv:
                if math.prod(shape) != layer.in_features:
                    fix = (f"; make input_shape [{layer.in_features}] (or any shape of {layer.in_features} values) "
                           f"or in_features {math.prod(shape)}") if i == 0 else ""
                    raise ZooFormatError(f"layer {layer.weight!r} (linear) takes {layer.in_features} features but "
                                         f"{source} gives {math.prod(shape)}{fix}")
                shape = (layer.out_features,)
                continue
            n_sp = len(layer.kernel_size)
            if len(shape) != n_sp + 1 or shape[0] != layer.in_features:
                want = "[C, L]" if n_sp == 1 else "[C, H, W]"
                fix = (f"; make input_shape a {want} map with C = {layer.in_features}" if i == 0 else
                       "; a convolution cannot follow a linear or pooled layer" if len(shape) == 1 else "")
                raise ZooFormatError(f"layer {layer.weight!r} ({layer.kind}) takes {want} maps of "
                                     f"{layer.in_features} channels but {source} gives shape {list(shape)}{fix}")
            spatial = tuple((n + 2 * layer.padding - k) // layer.stride + 1
                            for n, k in zip(shape[1:], layer.kernel_size))
            if min(spatial) < 1:
                raise ZooFormatError(f"layer {layer.weight!r}: the kernel {list(layer.kernel_size)} (padding "
                                     f"{layer.padding}) does not fit the {list(shape[1:])} map of {source}")
            shape = (layer.out_features, *spatial)
            check_numel(f"layer {layer.weight!r}: its output", shape)
            if layer.pool == "global_avg":
                shape = (layer.out_features,)
        if len(shape) != 1 and math.prod(shape[1:]) != 1:
            raise ZooFormatError(f"the last layer {self.layers[-1].weight!r} gives a map of shape {list(shape)}; "
                                 f"the output must be a vector: give it pool: global_avg")

    def _check_n_params(self) -> None:
        """Refuse a network of more than :data:`~catalog.nodes.MAX_INT` parameters in all (each
        tensor is checked on its own; their sum is what a zoo's ``n_params`` column holds)."""
        if self.n_params > MAX_INT:
            raise ZooFormatError(f"the network would have {short_repr(self.n_params)} parameters, more than the "
                                 f"2**63 - 1 torch and a zoo's n_params column can count; use realistic sizes")

    def _check_graph(self) -> None:
        """Names, references, order and shapes of the nodes; records every node's shape."""
        index: dict[str, int] = {}
        for i, node in enumerate(self.nodes):
            if not isinstance(node, Node):
                raise ZooFormatError(f"nodes[{i}] is a {type(node).__name__}, not a node")
            if node.name in index:
                raise ZooFormatError(f"two nodes are named {node.name!r}; node names must be unique")
            index[node.name] = i
        for i, node in enumerate(self.nodes):
            for inp in node.inputs:
                if inp == INPUT:
                    continue
                if inp not in index:
                    raise ZooFormatError(
                        f"node {node.name!r} reads {inp!r}, which does not exist (inputs name earlier "
                        f"nodes, or {INPUT!r} for the network's input)")
                if index[inp] >= i:
                    cycle = _cycle(self.nodes, index, node.name)
                    if cycle:
                        raise ZooFormatError(f"the nodes form a cycle: {' -> '.join(cycle)}; a network "
                                             f"must be acyclic")
                    raise ZooFormatError(
                        f"node {node.name!r} reads {inp!r}, which comes after it; list the nodes so "
                        f"that every node follows its inputs")
        shapes: dict[str, tuple[int, ...]] = {INPUT: self.input_shape}
        for node in self.nodes:
            shapes[node.name] = tuple(node.out_shape([shapes[i] for i in node.inputs]))
            check_numel(f"node {node.name!r}: its output", shapes[node.name])
        out = shapes[self.nodes[-1].name]
        if len(out) != 1:
            raise ZooFormatError(
                f"the last node {self.nodes[-1].name!r} is the output and must give a vector; it "
                f"gives shape {list(out)} (add a 'global_pool' or 'flatten' and a 'linear' node)")
        dead = [] if _READING_STORED.get() else self.dead_nodes()
        if dead:
            which = (f"node {dead[0]!r} feeds" if len(dead) == 1
                     else f"nodes {', '.join(map(repr, dead))} feed")
            raise ZooFormatError(f"{which} nothing that reaches the network's output (the last node, "
                                 f"{self.nodes[-1].name!r}); remove {'it' if len(dead) == 1 else 'them'}")
        names = [p.name for p in self.params]
        if len(set(names)) != len(names):
            raise ZooFormatError(f"parameter names collide: {sorted({n for n in names if names.count(n) > 1})}")
        taken = set(names)
        for n in names:
            parts = n.split(".")
            for k in range(1, len(parts)):
                if ".".join(parts[:k]) in taken:
                    raise ZooFormatError(f"parameter {'.'.join(parts[:k])!r} is also the prefix of "
                                         f"{n!r}; rename a node")
        object.__setattr__(self, "_shapes", shapes)
        self._check_n_params()

    def dead_nodes(self) -> list[str]:
        """The graph's nodes whose output reaches nothing that reaches the network's output (the
        last node), in node order: their parameters would be counted and stored, and never train.
        A chain has none. Specs built in Python (and ``from_dict(..., new=True)``) refuse them."""
        by_name = {n.name: n for n in self.nodes}
        live: set[str] = set()
        todo = [self.nodes[-1].name] if self.nodes else []
        while todo:
            name = todo.pop()
            if name != INPUT and name not in live:
                live.add(name)
                todo.extend(by_name[name].inputs)
        return [n.name for n in self.nodes if n.name not in live]

    # ----------------------------------------------------------------------------- graph
    @property
    def is_chain(self) -> bool:
        """True for a chain of layers (format v1), False for a graph of nodes."""
        return not self.nodes

    def require_chain(self, what: str) -> None:
        """Raise a clear error if this is not a chain: ``what`` names the caller (e.g.
        ``"metanetwork 'dws'"``), which understands layer chains only."""
        if not self.is_chain:
            kinds = ", ".join(sorted({n.KIND for n in self.nodes}))
            raise ZooFormatError(
                f"{what} reads layer chains (the mlp, cnn and siren families) only; {self.family} "
                f"architecture {self.arch_id} is a graph of nodes ({kinds}): use a model that reads "
                f"any architecture (statnn, mlp)")

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Per-example shape of every node's output, with ``"input"`` (for a chain: each layer's
        output features, keyed by its weight's name)."""
        if self.is_chain:
            return {INPUT: self.input_shape, **{layer.weight: (layer.out_features,) for layer in self.layers}}
        return dict(self._shapes)

    @property
    def output_shape(self) -> tuple[int, ...]:
        return (self.n_outputs,)

    def as_graph(self, ignore_shift: bool = False) -> NetworkSpec:
        """This network as a graph spec with the same parameter names (a graph is returned as
        is). A chain's linear layer flattens its input, so a ``flatten`` node precedes it where
        the input is a map; activations and pools become their own nodes.

        Args:
            ignore_shift: give the graph of the network without its output shift (default
                ``False``: a shifted chain is an error, graphs cannot express the shift). For
                readers of the structure alone (parameter graphs, neuron symmetries): a constant
                added to the output has no neurons, edges or parameters.

        Raises:
            ZooFormatError: the chain's parameter names do not end in ``.weight``/``.bias`` of
                one prefix per layer (node parameters are ``<node>.weight``, ``<node>.bias``).
        """
        if not self.is_chain:
            return self
        if self.layers[-1].shift != 0.0 and not ignore_shift:
            raise ZooFormatError(
                f"{self.family} architecture {self.arch_id} adds {self.layers[-1].shift:g} to its output "
                f"(an output shift), which graph specs cannot express; use a model that reads layer chains")
        from catalog import nodes as nd

        out: list[Node] = []
        prev, shape = INPUT, self.input_shape
        for layer in self.layers:
            prefix = layer.weight.removesuffix(".weight")
            if prefix == layer.weight or layer.bias not in (None, f"{prefix}.bias"):
                raise ZooFormatError(
                    f"layer {layer.weight!r}: parameters named <prefix>.weight / <prefix>.bias are "
                    f"needed to express a chain as a graph")
            if layer.kind == "linear":
                if len(shape) != 1:
                    out.append(nd.Flatten(f"{prefix}.flatten", (prev,)))
                    prev = out[-1].name
                out.append(nd.Linear(prefix, (prev,), layer.in_features, layer.out_features,
                                     bias=layer.bias is not None))
            else:
                cls = nd.Conv1d if layer.kind == "conv1d" else nd.Conv2d
                out.append(cls(prefix, (prev,), layer.in_features, layer.out_features, layer.kernel_size,
                               stride=layer.stride, padding=layer.padding, bias=layer.bias is not None))
            prev = prefix
            if layer.activation != "identity" or layer.omega != 1.0:
                out.append(nd.Activation(f"{prefix}.act", (prev,), layer.activation, omega=layer.omega))
                prev = out[-1].name
            if layer.pool == "global_avg":
                out.append(nd.GlobalPool(f"{prefix}.pool", (prev,)))
                prev = out[-1].name
            shape = _last_shape(self.input_shape, out)
        return NetworkSpec(self.family, self.input_shape, dtype=self.dtype, meta=dict(self.meta),
                           nodes=tuple(out))

    # ----------------------------------------------------------------------------- params
    @property
    def params(self) -> tuple[ParamSpec, ...]:
        """The parameters (and buffers) in their canonical order: per layer weight, then bias
        (chains); per node in node order, the node's own order (graphs)."""
        out: list[ParamSpec] = []
        if self.nodes:
            for i, node in enumerate(self.nodes):
                for suffix, shape, role in node.param_shapes():
                    out.append(ParamSpec(f"{node.name}.{suffix}", tuple(shape), self.dtype, i, role))
            return tuple(out)
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
        return getattr(torch, self.dtype)

    @property
    def n_outputs(self) -> int:
        if self.nodes:
            return self._shapes[self.nodes[-1].name][0]
        return self.layers[-1].out_features

    @property
    def layer_widths(self) -> list[int]:
        """Neurons per layer, input layer first: ``[n_in, h_1, ..., n_out]`` (chains only)."""
        self.require_chain("layer_widths")
        return [self.layers[0].in_features] + [layer.out_features for layer in self.layers]

    @property
    def activation_numel(self) -> int:
        """Values one example produces inside the network (its activations), for memory
        estimates: every node's output (plus attention scores) for graphs; for chains every
        layer's outputs, times the input's positions for conv nets (an over-estimate)."""
        if self.nodes:
            total = sum(math.prod(self._shapes[n.name]) for n in self.nodes)
            for n in self.nodes:
                if n.KIND == "attention":
                    t = self._shapes[n.inputs[0]][0]
                    total += n.num_heads * t * t
            return total
        spatial = math.prod(self.input_shape[1:])
        return sum(layer.out_features for layer in self.layers) * (spatial if self.layers[0].is_conv else 1)

    def summary(self) -> str:
        """One line that tells architectures apart: family, neurons per layer, the layer kind
        and kernel where not linear, activations, pooling and parameter count, e.g.
        ``"mlp 64-32-32-10, relu, 3,466 params"``. A graph lists its node kinds with counts,
        e.g. ``"resnet 1x8x8 -> 10, conv2d x7, batchnorm x7, add x3, ..., 4,954 params"``.
        """
        if self.nodes:
            counts: dict[str, int] = {}
            for n in self.nodes:
                key = n.fn if n.KIND == "activation" else n.KIND
                counts[key] = counts.get(key, 0) + 1
            kinds = [k if c == 1 else f"{k} x{c}" for k, c in counts.items()]
            shape = "x".join(map(str, self.input_shape))
            parts = [f"{self.family} {shape} -> {self.n_outputs}", *kinds]
            if self.dtype != "float32":
                parts.append(self.dtype)
            parts.append(f"{self.n_params:,} params")
            return ", ".join(parts)
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
        if self.layers[-1].shift != 0.0:
            parts.append(f"output shift {self.layers[-1].shift:+g}")
        if self.dtype != "float32":
            parts.append(self.dtype)
        parts.append(f"{self.n_params:,} params")
        return ", ".join(parts)

    # ----------------------------------------------------------------------------- (de)serialise
    def to_dict(self) -> dict:
        """The JSON form stored in ``zoo.json``. Chains keep their v1 form (``layers``) exactly,
        so their ids never change; graphs store ``nodes`` in canonical form (defaults omitted)
        and ``format: 2``. Both list the derived ``params`` (checked when read back)."""
        if self.nodes:
            d: dict = {"format": 2, "family": self.family, "input_shape": list(self.input_shape),
                       "nodes": [n.to_dict() for n in self.nodes], "dtype": self.dtype,
                       "meta": dict(self.meta)}
            d["params"] = [{"name": p.name, "shape": list(p.shape), "dtype": p.dtype,
                            "node": self.nodes[p.layer].name, "role": p.role} for p in self.params]
            return d
        d = {"family": self.family, "input_shape": list(self.input_shape),
             "layers": [asdict(layer) for layer in self.layers], "dtype": self.dtype,
             "meta": dict(self.meta)}
        for layer in d["layers"]:
            layer["kernel_size"] = list(layer["kernel_size"])
            if layer["shift"] == 0.0:  # stored only when set: every id from before shifts existed stays
                del layer["shift"]
        d["params"] = [
            {"name": p.name, "shape": list(p.shape), "dtype": p.dtype, "layer": p.layer, "role": p.role}
            for p in self.params
        ]
        return d

    def canonical(self) -> dict:
        """What the architecture computes, in a versioned canonical form (the hash behind
        :attr:`arch_id`). Chains: their full v1 dict (the form their ids always hashed).
        Graphs: ``{"id_version": 2, family, input_shape, nodes}`` with every node field at its
        default omitted and ``dtype`` only when not ``float32``; no ``meta``, no derived
        ``params``. An optional field added later, at its default, changes no id."""
        if not self.nodes:
            return self.to_dict()
        d: dict = {"id_version": GRAPH_ID_VERSION, "family": self.family,
                   "input_shape": list(self.input_shape), "nodes": [n.to_dict() for n in self.nodes]}
        if self.dtype != "float32":
            d["dtype"] = self.dtype
        return d

    @property
    def format_version(self) -> int:
        """The zoo format version a zoo holding this architecture needs (1 chains, 2 graphs)."""
        return 2 if self.nodes else 1

    @classmethod
    def from_dict(cls, d: Mapping, *, new: bool = False) -> NetworkSpec:
        """The spec of its JSON dict (the form :meth:`to_dict` writes).

        Args:
            d: the dict.
            new: ``d`` enters weightzoo here (an ``--arch`` file, an import's
                ``architectures.jsonl``) rather than being read back from a zoo or a saved run:
                also refuse graph nodes that feed nothing (see :meth:`dead_nodes`), as a spec
                built in Python does. Default ``False``, so every zoo written before that check
                still opens.
        """
        if isinstance(d, Mapping) and "nodes" in d:
            token = _READING_STORED.set(not new)
            try:
                return cls._graph_from_dict(d)
            finally:
                _READING_STORED.reset(token)
        if not isinstance(d, Mapping):
            raise ZooFormatError(f"a NetworkSpec must be an object with family, input_shape and layers (or nodes), "
                                 f"got {d!r}")
        for key in ("family", "input_shape", "layers"):
            if key not in d:
                raise ZooFormatError(f"malformed NetworkSpec: it lacks {key!r}")
        if not isinstance(d["layers"], list) or not d["layers"]:
            raise ZooFormatError(f"malformed NetworkSpec: layers must be a non-empty list, got {d['layers']!r}")
        layers = []
        for i, layer in enumerate(d["layers"]):
            if not isinstance(layer, Mapping):
                raise ZooFormatError(f"malformed NetworkSpec: layers[{i}] must be an object, got {layer!r}")
            unknown = sorted(set(layer) - set(LAYER_KEYS))
            missing = [k for k in LAYER_REQUIRED if k not in layer]
            if unknown or missing:
                problem = f"unknown keys {unknown}" if unknown else f"lacks {', '.join(missing)}"
                raise ZooFormatError(
                    f"malformed NetworkSpec: layers[{i}] {problem}; a layer has {', '.join(LAYER_KEYS)}")
            layers.append(LayerSpec(**layer))
        meta = d.get("meta", {})
        spec = cls(family=d["family"], input_shape=d["input_shape"], layers=tuple(layers),
                   dtype=d.get("dtype", "float32"), meta=dict(meta) if isinstance(meta, Mapping) else meta)
        if "params" in d:
            try:
                stored = [(p["name"], tuple(p["shape"])) for p in d["params"]]
            except (KeyError, TypeError) as e:
                raise ZooFormatError(f"malformed NetworkSpec params: {e!r}") from e
            derived = [(p.name, p.shape) for p in spec.params]
            if stored != derived:
                raise ZooFormatError(
                    "NetworkSpec params in the manifest disagree with its layers; the manifest "
                    "was edited or is corrupt: rebuild or re-pull the zoo")
        return spec

    @classmethod
    def _graph_from_dict(cls, d: Mapping) -> NetworkSpec:
        unknown = sorted(set(d) - {"format", "family", "input_shape", "nodes", "dtype", "meta", "params"})
        if unknown:
            raise ZooFormatError(f"malformed NetworkSpec: unknown keys {unknown}")
        if d.get("format", 2) != 2:
            raise ZooFormatError(f"a graph NetworkSpec has format 2, got {d.get('format')!r}")
        for key in ("family", "input_shape"):
            if key not in d:
                raise ZooFormatError(f"malformed NetworkSpec: it lacks {key!r}")
        if not isinstance(d["nodes"], list) or not d["nodes"]:
            raise ZooFormatError("malformed NetworkSpec: 'nodes' must be a non-empty list")
        shape = d["input_shape"]
        if not isinstance(shape, list | tuple) or not all(
                isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape):
            raise ZooFormatError(f"malformed NetworkSpec: input_shape must be positive integers, got {shape!r}")
        if not isinstance(d["family"], str) or not isinstance(d.get("meta", {}), Mapping):
            raise ZooFormatError("malformed NetworkSpec: family must be a string and meta an object")
        nodes = tuple(node_from_dict(n, f"nodes[{i}]") for i, n in enumerate(d["nodes"]))
        spec = cls(d["family"], tuple(shape), dtype=d.get("dtype", "float32"),
                   meta=dict(d.get("meta", {})), nodes=nodes)
        if "params" in d:
            try:
                stored = [(p["name"], tuple(p["shape"])) for p in d["params"]]
            except (KeyError, TypeError) as e:
                raise ZooFormatError(f"malformed NetworkSpec params: {e}") from e
            if stored != [(p.name, p.shape) for p in spec.params]:
                raise ZooFormatError(
                    "NetworkSpec params in the manifest disagree with its nodes; the manifest "
                    "was edited or is corrupt: rebuild or re-pull the zoo")
        return spec

    @property
    def arch_id(self) -> str:
        """A stable id: the family plus a hash of the :meth:`canonical` JSON of the spec."""
        blob = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":")).encode()
        return f"{self.family}-{hashlib.sha256(blob).hexdigest()[:10]}"


# ================================================================================ execution
def _activate(h: Tensor, layer: LayerSpec) -> Tensor:
    return activate(h, layer.activation, layer.omega)


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

    Graph specs run through :func:`catalog.execution.graph_population_forward` in
    evaluation mode; ``dropout_masks`` and ``activations`` are for chains.

    Shapes:
        returns ``[P, B, n_outputs]``.

    Raises:
        WeightzooError: ``x`` is not ``[B, *input_shape]`` or ``[P, B, *input_shape]``, or its
            dtype is not the weights'; ``params`` lacks a parameter of ``spec``, or one's shape
            is not ``[P, *shape]``.
    """
    n_pop = check_population_input(spec, params, x)
    try:
        if not spec.is_chain:
            if dropout_masks is not None or activations is not None:
                spec.require_chain("population_forward with dropout masks or activations")
            from catalog.execution import graph_population_forward

            return graph_population_forward(spec, params, x)[0]
        return _chain_population_forward(spec, params, x, n_pop, dropout_masks, activations)
    except (KeyError, RuntimeError) as e:
        # The parameters are checked only when the computation failed: a valid call (every
        # training step) pays nothing for it, a bad one gets the parameter named, not torch's words.
        problem = params_problem(spec, params, n_pop)
        if problem is None:
            raise
        raise WeightzooError(f"population_forward: {problem}") from e


def check_population_input(spec: NetworkSpec, params: Mapping[str, Tensor], x: Tensor) -> int:
    """The population size ``P`` of ``params``, after checking ``x`` against ``spec`` and ``P``:
    shared ``[B, *input_shape]`` or per member ``[P, B, *input_shape]``, with the weights' dtype.
    A few comparisons (it runs every training step); the parameters are :func:`params_problem`'s.

    Raises:
        WeightzooError: ``x`` has another shape or dtype; ``params`` is empty or lacks the first
            layer's weight (of a chain, whose member count is read from it).
    """
    if spec.is_chain:
        first = params.get(spec.layers[0].weight)
    else:
        first = next(iter(params.values()), None)
    if first is None:
        raise WeightzooError(f"population_forward: {params_problem(spec, params, None)}")
    n_pop = first.shape[0]
    shape = spec.input_shape
    n_in = len(shape)
    if x.dim() not in (n_in + 1, n_in + 2) or tuple(x.shape[x.dim() - n_in:]) != tuple(shape) or \
            (x.dim() == n_in + 2 and x.shape[0] != n_pop):
        dims = ", ".join(str(d) for d in shape)
        raise WeightzooError(
            f"population_forward: x has shape {list(x.shape)}; {spec.family} architecture {spec.arch_id} "
            f"takes [B, {dims}] (one batch for every member) or [{n_pop}, B, {dims}] (one batch per "
            f"member: P = {n_pop}, the members in params)")
    if x.dtype != first.dtype and not _reads_ids(spec):
        wanted = str(first.dtype).removeprefix("torch.")
        raise WeightzooError(
            f"population_forward: x has dtype {str(x.dtype).removeprefix('torch.')} but the weights are "
            f"{wanted}; convert it with x.to(torch.{wanted})")
    return n_pop


def _reads_ids(spec: NetworkSpec) -> bool:
    """Whether only embedding lookups read the input: then ``x`` holds ids, of any dtype."""
    readers = [n for n in spec.nodes if INPUT in n.inputs]
    return bool(readers) and all(n.KIND == "embedding" for n in readers)


def params_problem(spec: NetworkSpec, params: Mapping[str, Tensor], n_pop: int | None) -> str | None:
    """What is wrong with ``params`` as the stacked parameters of ``P = n_pop`` networks of
    ``spec`` (``None``: the first parameter's count): a parameter missing, or a shape other than
    ``[P, *shape]``; ``None`` if nothing is."""
    from catalog.selection import name_some  # error path only

    names = spec.param_names
    missing = [n for n in names if n not in params]
    if missing:
        return (f"params lack {len(missing)} of the {len(names)} parameters of {spec.family} architecture "
                f"{spec.arch_id}: {name_some(missing)}; pass every one, {{name: Tensor[P, *shape]}} "
                f"(e.g. Selection.stacked())")
    for p in spec.params:
        t = params[p.name]
        n_pop = t.shape[0] if n_pop is None else n_pop
        if tuple(t.shape) != (n_pop, *p.shape):
            return (f"params[{p.name!r}] has shape {list(t.shape)}; {spec.family} architecture {spec.arch_id} "
                    f"needs [{n_pop}, {', '.join(str(d) for d in p.shape)}] (P = {n_pop} members, as the "
                    f"first parameter has)")
    return None


def _chain_population_forward(spec: NetworkSpec, params: Mapping[str, Tensor], x: Tensor, n_pop: int,
                              dropout_masks: Mapping[int, Tensor] | None,
                              activations: list[Tensor] | None) -> Tensor:
    """:func:`population_forward` of a chain, its arguments checked."""
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
            if layer.kind == "conv2d":
                # oneDNN's grouped convolution of many small groups runs faster channels last
                # (a digits CNN population trained 1.5x faster); its output stays so.
                h = channels_last(h)
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
    if spec.layers[-1].shift != 0.0:
        h = h + spec.layers[-1].shift
    return h


def __getattr__(name: str):
    # The nn.Module side lives in catalog.modules, imported (with torch) when first asked for.
    if name in ("SpecNetwork", "build_module"):
        from catalog import modules

        return getattr(modules, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
