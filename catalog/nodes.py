"""The typed nodes of a graph :class:`~catalog.network.NetworkSpec` (format v2).

A graph network is an ordered list of nodes. Every node has a ``kind``, a unique ``name`` and
the names of its ``inputs``: earlier nodes, or ``"input"`` (the network's input). The last
node is the output. A node's parameters are named ``"<node name>.<suffix>"`` (``weight``,
``bias``, ``running_mean``, ...), so a node named ``layer1.0.conv1`` owns
``layer1.0.conv1.weight`` exactly as in a PyTorch ``state_dict``.

Shapes are per example (no batch dimension): images ``[C, H, W]``, signals ``[C, L]``, token
sequences ``[T, D]``, vectors ``[F]``. ``linear``, ``layernorm`` and ``attention`` act on the
last dimension; convolutions, pools and ``batchnorm`` on channel-first maps.

| kind | computes | parameters |
| --- | --- | --- |
| ``linear`` | ``x W^T + b`` over the last dim | ``weight [out, in]``, ``bias [out]`` |
| ``conv1d``/``conv2d`` | convolution (stride, padding, groups) | ``weight [out, in/groups, *k]``, ``bias`` |
| ``batchnorm`` | per-channel batch normalization | ``weight``, ``bias``, buffers ``running_mean``, ``running_var`` |
| ``layernorm`` | normalization over the last dim | ``weight``, ``bias`` |
| ``activation`` | ``fn(omega * x)`` | |
| ``maxpool``/``avgpool`` | local pooling of a channel-first map | |
| ``global_pool`` | mean/max over all positions (``over: spatial``) or tokens (``over: tokens``) | |
| ``flatten`` | ``[*] -> [prod]`` | |
| ``dropout`` | drops entries with probability ``p`` while training | |
| ``add`` | the sum of its inputs (residual connections) | |
| ``embedding`` | looks up integer ids: ``[*] -> [*, dim]`` | ``weight [num, dim]`` |
| ``pos_embedding`` | adds a learned position embedding to ``[T, D]`` | ``weight [T, D]`` |
| ``attention`` | multi-head self-attention, ``[T, E]`` | ``in_proj_weight [3E, E]``, ``in_proj_bias``, ``out_proj`` |
| ``patchify`` | non-overlapping patches: ``[C, H, W] -> [HW/p^2, C p^2]`` | |

Every node round-trips through plain JSON (:func:`node_from_dict`, :meth:`Node.to_dict`);
:meth:`Node.to_dict` omits fields at their default, so adding an optional field later
changes no stored spec and no id.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields
from typing import TYPE_CHECKING, ClassVar

from catalog.errors import ZooFormatError
from catalog.lazy import LazyModule

if TYPE_CHECKING:
    from torch import Tensor

# torch is imported at the first computation: parsing and validating specs (every zoo.json a
# command reads, `zoo query` included) needs none of it.
torch = LazyModule("torch")
F = LazyModule("torch.nn.functional")
kernels = LazyModule("catalog.kernels")

ACTIVATIONS = ("identity", "relu", "tanh", "sigmoid", "gelu", "leaky_relu", "sin")
#: Roles of parameters that are state, not trained: updated by the forward pass while training.
BUFFER_ROLES = frozenset({"running_mean", "running_var"})
#: The name by which nodes refer to the network's input.
INPUT = "input"
#: The largest integer torch takes as a size, stride or padding (a C ``int64``). A node field,
#: or a parameter's or output's number of entries, beyond it can never run: torch fails with
#: "Overflow when unpacking long" when the network is built or first computes.
MAX_INT = 2**63 - 1
#: The largest kernel size, stride or padding torch's pooling takes (a C ``int``).
MAX_POOL_INT = 2**31 - 1

Shape = tuple[int, ...]


def activate(h: Tensor, fn: str, omega: float = 1.0) -> Tensor:
    """``fn(omega * h)`` for a name of :data:`ACTIVATIONS`."""
    if omega != 1.0:
        h = h * omega
    if fn == "identity":
        return h
    if fn == "relu":
        return torch.relu(h)
    if fn == "tanh":
        return torch.tanh(h)
    if fn == "sigmoid":
        return torch.sigmoid(h)
    if fn == "gelu":
        return F.gelu(h)
    if fn == "leaky_relu":
        return F.leaky_relu(h, 0.01)
    return torch.sin(h)  # "sin"; names are validated at construction


@dataclass
class Context:
    """What one forward pass of a graph needs besides weights and inputs.

    Args:
        training: batch statistics for ``batchnorm`` and dropout masks apply (default ``False``).
        masks: ``{dropout node name: Tensor[B, *shape]}`` (``[P, B, *shape]`` in a population
            pass), pre-scaled by ``1 / (1 - p)``; a training pass without a node's mask draws
            none (the node passes its input through).
        updates: filled by the pass: ``{buffer name: new value}`` (batch-norm running stats;
            ``[P, *shape]`` in a population pass).
        batch_stats: while training, ``updates`` get each batch norm's batch statistics (mean
            and unbiased variance) themselves, as with momentum 1 (default ``False``).
    """

    training: bool = False
    masks: Mapping[str, Tensor] = field(default_factory=dict)
    updates: dict[str, Tensor] = field(default_factory=dict)
    batch_stats: bool = False


# ================================================================================ population layout
# A population pass carries every value as ``[P, B, *shape]``. Convolutions, pools and batch
# norm run on the members as channel groups, ``[B, P*C, *S]`` (one grouped kernel for all
# members); their outputs are split back as a transposed *view*, so the next such node merges
# them again without a copy, and elementwise nodes keep that memory layout.
def merge_members(x: Tensor) -> Tensor:
    """``[P, B, C, *S] -> [B, P*C, *S]``: members as channel groups (a view after :func:`split_members`)."""
    return x.transpose(0, 1).flatten(1, 2)


def channels_last(x: Tensor) -> Tensor:
    """``[B, C, H, W]`` in channels-last memory: a copy unless it already is. Written with
    permutes, not ``memory_format``, which torch.func transforms (vmap, hessian) refuse."""
    return x.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)


def split_members(y: Tensor, n_pop: int) -> Tensor:
    """``[B, P*C, *S] -> [P, B, C, *S]``, a view."""
    return y.unflatten(1, (n_pop, -1)).transpose(0, 1)


def _member_linear(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """Each member's ``x W^T + b`` over the last dim: ``x [P, B, *, F]``, ``weight [P, O, F]``,
    ``bias [P, O]`` -> ``[P, B, *, O]``, as one batched matrix product."""
    flat = x.reshape(x.shape[0], -1, x.shape[-1])                            # [P, N, F]
    w = weight.transpose(1, 2)                                               # [P, F, O]
    out = torch.bmm(flat, w) if bias is None else torch.baddbmm(bias.unsqueeze(1), flat, w)
    return out.view(*x.shape[:-1], weight.shape[1])


def _per_example(node: Node, p: Mapping[str, Tensor], xs: Sequence[Tensor], ctx: Context) -> Tensor:
    """A parameter-free node's population pass: its one-member pass over the ``P * B`` examples."""
    n_pop, batch = xs[0].shape[:2]
    return node.forward(p, [x.flatten(0, 1) for x in xs], ctx).unflatten(0, (n_pop, batch))


@dataclass(frozen=True)
class FeatureAffine:
    """A per-member affine map over the last dimension, ``x * scale + shift``, not yet applied
    to a population value: ``scale, shift [P, F]``."""

    scale: Tensor
    shift: Tensor

    def apply(self, x: Tensor) -> Tensor:
        """``x [P, B, *, F] -> x * scale + shift``, each member with its own."""
        view = (x.shape[0], *[1] * (x.dim() - 2), x.shape[-1])
        return x * self.scale.view(view) + self.shift.view(view)

    def fold_into_linear(self, weight: Tensor, bias: Tensor | None) -> tuple[Tensor, Tensor]:
        """``(W', b')`` with ``x W'^T + b' = (x * scale + shift) W^T + b``: ``W' = W diag(scale)``,
        ``b' = W shift + b``. ``weight [P, O, F]``, ``bias [P, O]`` or ``None``."""
        folded_bias = torch.bmm(weight, self.shift.unsqueeze(2)).squeeze(2)      # [P, O]
        if bias is not None:
            folded_bias = folded_bias + bias
        return weight * self.scale.unsqueeze(1), folded_bias


# ================================================================================ validation
def is_finite_number(value: object) -> bool:
    """An int or float with a finite value: not a bool or a string, not inf or nan, and not an
    int beyond a float's range (``math.isfinite`` raises on those)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _fail(node: str, problem: str) -> ZooFormatError:
    return ZooFormatError(f"node {node!r}: {problem}")


def _value(node: str, key: str, ftype: str, value: object) -> object:
    """``value`` checked against a field type written as in the dataclasses below."""
    if ftype.endswith(" | None"):
        if value is None:
            return None
        ftype = ftype[: -len(" | None")]
    if ftype == "int":
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(node, f"{key} must be an integer, got {value!r}")
        _check_int_range(node, key, value)
        return value
    if ftype == "float":
        if not is_finite_number(value):
            raise _fail(node, f"{key} must be a finite number, got {short_repr(value)}")
        return float(value)
    if ftype == "bool":
        if not isinstance(value, bool):
            raise _fail(node, f"{key} must be true or false, got {value!r}")
        return value
    if ftype == "str":
        if not isinstance(value, str):
            raise _fail(node, f"{key} must be a string, got {value!r}")
        return value
    if ftype == "tuple[int, ...]":
        if isinstance(value, int) and not isinstance(value, bool):
            value = (value,)
        if not isinstance(value, list | tuple) or not all(
                isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise _fail(node, f"{key} must be a list of integers, got {value!r}")
        for v in value:
            _check_int_range(node, key, v)
        return tuple(value)
    if ftype == "tuple[str, ...]":
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise _fail(node, f"{key} must be a list of node names, got {value!r}")
        return tuple(value)
    raise TypeError(f"unhandled field type {ftype}")  # pragma: no cover - a programming error


def short_repr(value: object) -> str:
    """``repr(value)`` for a message, an integer of 31 digits or more as ``about 1e+400``
    (``repr`` of a huge int is as long as its digits, and a float cannot hold it)."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and abs(int(value)) >= 10**30:
        return f"about {'-' if value < 0 else ''}1e+{len(str(abs(int(value)))) - 1}"
    return repr(value)


def _check_int_range(node: str, key: str, value: int) -> None:
    """Refuse an integer field torch cannot take (beyond :data:`MAX_INT` either way)."""
    if not -MAX_INT <= value <= MAX_INT:
        raise _fail(node, f"{key} is {short_repr(value)}, beyond 2**63 - 1 ({MAX_INT:,}), the largest integer torch "
                          f"takes as a size, stride or padding; use a realistic value")


def check_numel(what: str, shape: Sequence[int]) -> None:
    """Refuse a tensor shape of more than :data:`MAX_INT` entries (``what`` names it in the
    message, e.g. ``"node 'fc': its weight"``).

    Raises:
        ZooFormatError: the shape could never be allocated by torch.
    """
    n = math.prod(shape)
    if n > MAX_INT:
        raise ZooFormatError(f"{what} would have {short_repr(n)} entries ({' x '.join(map(short_repr, shape))}), more "
                             f"than the 2**63 - 1 a torch tensor can hold; use realistic sizes")


def _positive(node: str, **values: int) -> None:
    for key, v in values.items():
        if v < 1:
            raise _fail(node, f"{key} must be >= 1, got {v}")


def _map(n_spatial: int) -> str:
    """``[C, H, W]`` / ``[C, L]``: how messages name a channel-first map."""
    return {1: "[C, L]", 2: "[C, H, W]"}.get(n_spatial, f"[C, +{n_spatial} dims]")


# ================================================================================ nodes
@dataclass(frozen=True)
class Node:
    """Base of every node kind.

    Args:
        name: unique name; its parameters are ``"<name>.<suffix>"``.
        inputs: names of the nodes (or ``"input"``) it reads, in order.
    """

    name: str
    inputs: tuple[str, ...]

    KIND: ClassVar[str] = ""
    #: How many inputs the node takes (``None``: two or more).
    N_INPUTS: ClassVar[int | None] = 1

    def __post_init__(self) -> None:
        for f in fields(self):
            object.__setattr__(self, f.name, _value(str(self.name), f.name, f.type, getattr(self, f.name)))
        if not self.name or any(not part for part in self.name.split(".")) or self.name == INPUT:
            raise ZooFormatError(
                f"node name {self.name!r} is not valid: use dot-separated, non-empty parts "
                f"(e.g. 'layer1.0.conv1'), and not {INPUT!r}, which names the network's input")
        if self.N_INPUTS is None:
            if len(self.inputs) < 2:
                raise _fail(self.name, f"a {self.KIND} node needs two or more inputs, got {list(self.inputs)}")
        elif len(self.inputs) != self.N_INPUTS:
            raise _fail(self.name, f"a {self.KIND} node takes {self.N_INPUTS} input(s), got {list(self.inputs)}")
        self.check()
        for suffix, shape, _ in self.param_shapes():
            check_numel(f"node {self.name!r}: its {suffix}", shape)

    def check(self) -> None:
        """Validate the kind's own fields (raises :class:`ZooFormatError`)."""

    def out_shape(self, shapes: Sequence[Shape]) -> Shape:
        """The output shape for these input shapes; a clear error if they do not fit."""
        return shapes[0]

    def param_shapes(self) -> list[tuple[str, Shape, str]]:
        """``(suffix, shape, role)`` of each parameter and buffer, in storage order."""
        return []

    def forward(self, p: Mapping[str, Tensor], xs: Sequence[Tensor], ctx: Context) -> Tensor:
        """One member's computation on a batch.

        Args:
            p: this node's tensors by suffix (``weight``, ``bias``, ...).
            xs: the inputs, each ``[B, *in_shape]``.

        Shapes:
            returns ``[B, *out_shape]``.
        """
        raise NotImplementedError

    def population_forward(self, p: Mapping[str, Tensor], xs: Sequence[Tensor], ctx: Context) -> Tensor:
        """``P`` members at once, each computing what :meth:`forward` computes for it alone.

        Args:
            p: this node's tensors by suffix, stacked ``[P, *shape]``.
            xs: the inputs, each ``[P, B, *in_shape]``.
            ctx: as for :meth:`forward`, with masks ``[P, B, *shape]``; updates get ``[P, *shape]``.

        Shapes:
            returns ``[P, B, *out_shape]``.
        """
        raise NotImplementedError

    def population_parts(self, p: Mapping[str, Tensor], xs: Sequence[Tensor],
                         ctx: Context) -> tuple[Tensor, FeatureAffine | None]:
        """:meth:`population_forward` as a value and a per-member affine map still to apply to
        it, ``(value, None)`` by default. A layer norm returns its normalized input and its
        ``(weight, bias)``, which :func:`catalog.execution.graph_population_forward` folds into
        the linear maps that read it (:meth:`fold_input_affine`) instead of applying it."""
        return self.population_forward(p, xs, ctx), None

    def fold_input_affine(self, p: Mapping[str, Tensor], affine: FeatureAffine) -> dict[str, Tensor] | None:
        """This node's population tensors with a per-member affine map of its input folded in:
        with them, :meth:`population_forward` computes on ``x`` what it computes with ``p`` on
        ``affine.apply(x)`` (the same values up to float rounding). ``None`` (the default): not
        foldable, the input is mapped first."""
        return None

    def passes_feature_affine(self) -> bool:
        """Whether ``f(affine.apply(x)) == affine.apply(f(x))`` for every per-member affine map
        over the last dimension, so that the map can wait past this node (default ``False``)."""
        return False

    def to_dict(self) -> dict:
        """The canonical JSON form: ``kind``, ``name``, ``inputs`` and every field that is not
        at its default (so a field added later, at its default, changes nothing)."""
        d: dict = {"kind": self.KIND, "name": self.name, "inputs": list(self.inputs)}
        for f in fields(self)[2:]:
            v = getattr(self, f.name)
            if f.default is not MISSING and v == f.default:
                continue
            d[f.name] = list(v) if isinstance(v, tuple) else v
        return d


@dataclass(frozen=True)
class Linear(Node):
    """``y = x W^T + b`` over the last dimension (``nn.Linear``)."""

    in_features: int
    out_features: int
    bias: bool = True
    KIND: ClassVar[str] = "linear"

    def check(self) -> None:
        _positive(self.name, in_features=self.in_features, out_features=self.out_features)

    def out_shape(self, shapes: Sequence[Shape]) -> Shape:
        (s,) = shapes
        if not s or s[-1] != self.in_features:
            raise _fail(self.name, f"linear takes {self.in_features} features in its last dim but "
                                   f"its input {self.inputs[0]!r} has shape {list(s)} (add a 'flatten' "
                                   f"node to flatten a map)")
        return (*s[:-1], self.out_features)

    def param_shapes(self) -> list[tuple[str, Shape, str]]:
        out = [("weight", (self.out_features, self.in_features), "weight")]
        return out + ([("bias", (self.out_features,), "bias")] if self.bias else [])

    def forward(self, p, xs, ctx):
        return F.linear(xs[0], p["weight"], p.get("bias"))

    def population_forward(self, p, xs, ctx):
        return _member_linear(xs[0], p["weight"], p.get("bias"))

    def fold_input_affine(self, p, affine):
        weight, bias = affine.fold_into_linear(p["weight"], p.get("bias"))
        return {"weight": weight, "bias": bias}


@dataclass(frozen=True)
class _Conv(Node):
    in_channels: int
    out_channels: int
    kernel_size: tuple[int, ...]
    stride: int = 1
    padding: int = 0
    groups: int = 1
    bias: bool = True
    N_SPATIAL: ClassVar[int] = 0

    def check(self) -> None:
        _positive(self.name, in_channels=self.in_channels, out_channels=self.out_channels,
                  stride=self.stride, groups=self.groups)
        if len(self.kernel_size) != self.N_SPATIAL or min(self.kernel_size) < 1:
            raise _fail(self.name, f"a {self.KIND} needs {self.N_SPATIAL} positive kernel dims, got "
                                   f"{list(self.kernel_size)}")
        if self.padding < 0:
            raise _fail(self.name, f"padding must be >= 0, got {self.padding}")
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise _fail(self.name, f"groups={self.groups} must divide in_channels={self.in_channels} "
                                   f"and out_channels={self.out_channels}")

    def out_shape(self, shapes: Sequence[Shape]) -> Shape:
        (s,) = shapes
        if len(s) != self.N_SPATIAL + 1 or s[0] != self.in_channels:
            raise _fail(self.name, f"a {self.KIND} needs a {_map(self.N_SPATIAL)} map with C = "
                                   f"{self.in_channels}; input {self.inputs[0]!r} has shape {list(s)}")
        spatial = tuple((n + 2 * self.padding - k) // self.stride + 1 for n, k in zip(s[1:], self.kernel_size))
        if min(spatial) < 1:
            raise _fail(self.name, f"the kernel {list(self.kernel_size)} does not fit the input map "
                                   f"{list(s[1:])} (padding {self.padding})")
        return (self.out_channels, *spatial)

    def param_shapes(self) -> list[tuple[str, Shape, str]]:
        w = (self.out_channels, self.in_channels // self.groups, *self.kernel_size)
        return [("weight", w, "weight")] + ([("bias", (self.out_channels,), "bias")] if self.bias else [])

    def forward(self, p, xs, ctx):
        conv = F.conv1d if self.N_SPATIAL == 1 else F.conv2d
        return conv(xs[0], p["weight"], p.get("bias"), stride=self.stride, padding=self.padding,
                    groups=self.groups)

    def population_forward(self, p, xs, ctx):
        # One grouped convolution: member m's channels are groups m*g ... m*g + g - 1.
        n_pop = xs[0].shape[0]
        conv = F.conv1d if self.N_SPATIAL == 1 else F.conv2d
        bias = p["bias"].flatten() if "bias" in p else None                  # [P*O]
        x = merge_members(xs[0])                                             # [B, P*C, *S]
        if self.N_SPATIAL == 2:
            # Channels last: oneDNN's grouped convolution of many small groups runs ~2x faster
            # so (its output stays channels last, as do the batch norm and pools after it).
            x = channels_last(x)
        out = conv(x, p["weight"].flatten(0, 1), bias, stride=self.stride,
                   padding=self.padding, groups=n_pop * self.groups)        # [B, P*O, *S]
        return split_members(out, n_pop)                                     # [P, B, O, *S]


@dataclass(frozen=True)
class Conv1d(_Conv):
    """1-D convolution of ``[C, L]`` maps (``nn.Conv1d``)."""

    KIND: ClassVar[str] = "conv1d"
    N_SPATIAL: ClassVar[int] = 1


@dataclass(frozen=True)
class Conv2d(_Conv):
    """2-D convolution of ``[C, H, W]`` maps (``nn.Conv2d``)."""

    KIND: ClassVar[str] = "conv2d"
    N_SPATIAL: ClassVar[int] = 2


@dataclass(frozen=True)
class BatchNorm(Node):
    """Batch normalization over the channel dim of ``[C]``, ``[C, L]`` or ``[C, H, W]``.

    While training it normalizes with the batch's statistics (biased variance) and moves the
    running statistics toward them, ``r <- (1 - momentum) r + momentum * stat`` (unbiased
    variance), as ``nn.BatchNorm*d`` does; otherwise it uses the running statistics. The running
    statistics are buffers: stored in the zoo like parameters, never trained.
    """

    num_features: int
    eps: float = 1e-5
    momentum: float = 0.1
    affine: bool = True
    KIND: ClassVar[str] = "batchnorm"

    def check(self) -> None:
        _positive(self.name, num_features=self.num_features)
        if self.eps <= 0 or not 0 <= self.momentum <= 1:
            raise _fail(self.name, f"needs eps > 0 and momentum in [0, 1], got {self.eps}, {self.momentum}")

    def out_shape(self, shapes):
        (s,) = shapes
        if not s or s[0] != self.num_features:
            raise _fail(self.name, f"batchnorm of {self.num_features} channels got input "
                                   f"{self.inputs[0]!r} of shape {list(s)} (channels first)")
        return s

    def param_shapes(self):
        c = (self.num_features,)
        affine = [("weight", c, "weight"), ("bias", c, "bias")] if self.affine else []
        return affine + [("running_mean", c, "running_mean"), ("running_var", c, "running_var")]

    def forward(self, p, xs, ctx):
        out, updates = self._normalize(xs[0], p, ctx)
        ctx.updates.update({f"{self.name}.{k}": v for k, v in updates.items()})
        return out

    def population_forward(self, p, xs, ctx):
        # Members as channels: per-channel statistics of [B, P*C, *S] are per member.
        x = xs[0]
        n_pop = x.shape[0]
        p = {k: v.flatten() for k, v in p.items()}
        if x.dim() == 3:
            # Features [P, B, C] go as [1, P*C, B] (statistics over dims 0 and 2 are those over
            # B), so that the gradient handed back is member-major: as [B, P*C] it came back
            # [B, P, C]-strided, and the previous linear node's bias gradient, a sum over B,
            # then ran over P*C lanes at once and depended on the member's position.
            n_feat, batch = x.shape[2], x.shape[1]
            out, updates = self._normalize(x.transpose(1, 2).reshape(1, n_pop * n_feat, batch), p, ctx,
                                           kernels.batch_norm_training)
            out = out.view(n_pop, n_feat, batch).transpose(1, 2)               # [P, B, C]
        else:
            out, updates = self._normalize(merge_members(x), p, ctx, kernels.batch_norm_training)
            out = split_members(out, n_pop)                                    # [P, B, C, *S]
        ctx.updates.update({f"{self.name}.{k}": v.view(n_pop, -1) for k, v in updates.items()})
        return out

    def _normalize(self, x: Tensor, p: Mapping[str, Tensor], ctx: Context,
                   batch_norm: Callable[..., Tensor] | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        """Normalize ``x [B, C, *S]`` with ``p``'s ``[C]`` tensors; returns the output and, while
        training, the new running statistics by suffix. ``batch_norm`` replaces
        ``F.batch_norm``'s training pass (same arguments, in :func:`~catalog.kernels.batch_norm_training`'s order)."""
        n = x.numel() // x.shape[1]
        m = 1.0 if ctx.batch_stats else self.momentum
        if ctx.training and n > 1:
            # torch's fused kernel: normalizes with the biased batch variance and moves the
            # running statistics (updated in place, so on copies) toward the unbiased one.
            stats = {"running_mean": p["running_mean"].clone(), "running_var": p["running_var"].clone()}
            if batch_norm is None:
                out = F.batch_norm(x, stats["running_mean"], stats["running_var"], p.get("weight"), p.get("bias"),
                                   training=True, momentum=m, eps=self.eps)
            else:
                out = batch_norm(x, p.get("weight"), p.get("bias"), stats["running_mean"], stats["running_var"], m,
                                 self.eps)
            return out, stats
        updates = {}
        if ctx.training:  # one value per channel (torch refuses): batch variance 0, running variance decays
            dims = [0, *range(2, x.dim())]
            mean, var = x.mean(dims), x.var(dims, unbiased=False)
            with torch.no_grad():
                updates = {"running_mean": (1 - m) * p["running_mean"] + m * mean.detach(),
                           "running_var": (1 - m) * p["running_var"] + m * var.detach()}
        elif not (p["running_mean"].requires_grad or p["running_var"].requires_grad):
            # torch's own evaluation kernel, so an imported network computes what its nn.BatchNorm*d
            # does bit for bit (the formula below rounds differently in the last bits). Statistics
            # that carry gradients (a generator's output, as mip trains) take the formula: torch's
            # kernel is not differentiable in them.
            return F.batch_norm(x, p["running_mean"], p["running_var"], p.get("weight"), p.get("bias"),
                                training=False, eps=self.eps), updates
        else:
            mean, var = p["running_mean"], p["running_var"]
        view = (1, -1, *([1] * (x.dim() - 2)))
        out = (x - mean.view(view)) * torch.rsqrt(var.view(view) + self.eps)
        if self.affine:
            out = out * p["weight"].view(view) + p["bias"].view(view)
        return out, updates


@dataclass(frozen=True)
class LayerNorm(Node):
    """Layer normalization over the last dimension (``nn.LayerNorm(dim)``)."""

    dim: int
    eps: float = 1e-5
    affine: bool = True
    KIND: ClassVar[str] = "layernorm"

    def check(self) -> None:
        _positive(self.name, dim=self.dim)
        if self.eps <= 0:
            raise _fail(self.name, f"eps must be > 0, got {self.eps}")

    def out_shape(self, shapes):
        (s,) = shapes
        if not s or s[-1] != self.dim:
            raise _fail(self.name, f"layernorm over {self.dim} features got input {self.inputs[0]!r} "
                                   f"of shape {list(s)}")
        return s

    def param_shapes(self):
        return [("weight", (self.dim,), "weight"), ("bias", (self.dim,), "bias")] if self.affine else []

    def forward(self, p, xs, ctx):
        return F.layer_norm(xs[0], (self.dim,), p.get("weight"), p.get("bias"), self.eps)

    def population_forward(self, p, xs, ctx):
        out, affine = self.population_parts(p, xs, ctx)
        return out if affine is None else affine.apply(out)

    def population_parts(self, p, xs, ctx):
        out = kernels.normalize(xs[0], self.eps)                                     # [P, B, *, D]
        return out, (FeatureAffine(p["weight"], p["bias"]) if self.affine else None)


@dataclass(frozen=True)
class Activation(Node):
    """``fn(omega * x)`` elementwise; ``fn`` one of :data:`ACTIVATIONS`."""

    fn: str
    omega: float = 1.0
    KIND: ClassVar[str] = "activation"

    def check(self) -> None:
        if self.fn not in ACTIVATIONS:
            raise _fail(self.name, f"unknown activation {self.fn!r}; valid activations: {', '.join(ACTIVATIONS)}")

    def forward(self, p, xs, ctx):
        return activate(xs[0], self.fn, self.omega)

    def population_forward(self, p, xs, ctx):
        return self.forward(p, xs, ctx)  # elementwise: any leading dims


@dataclass(frozen=True)
class _Pool(Node):
    kernel_size: tuple[int, ...]
    stride: int | None = None
    padding: int = 0

    def check(self) -> None:
        if not 1 <= len(self.kernel_size) <= 2 or min(self.kernel_size) < 1:
            raise _fail(self.name, f"kernel_size must be 1 or 2 positive sizes, got {list(self.kernel_size)}")
        if self.stride is not None and self.stride < 1 or self.padding < 0:
            raise _fail(self.name, "stride must be >= 1 and padding >= 0")
        # torch's pooling takes C ints: larger values fail only when the network first computes.
        big = {k: v for k, v in (("kernel_size", max(self.kernel_size)), ("stride", self.stride or 0),
                                 ("padding", self.padding)) if v > MAX_POOL_INT}
        if big:
            key, value = next(iter(big.items()))
            raise _fail(self.name, f"{key} is {short_repr(value)}, beyond 2**31 - 1 ({MAX_POOL_INT:,}), the largest "
                                   f"torch's pooling takes; use a realistic value")
        if self.padding > min(self.kernel_size) // 2:
            raise _fail(self.name, f"padding {self.padding} is more than half the kernel {list(self.kernel_size)}; "
                                   f"torch pads a pooling window by at most half its size: use padding <= "
                                   f"{min(self.kernel_size) // 2}")

    def _stride(self) -> tuple[int, ...]:
        return self.kernel_size if self.stride is None else (self.stride,) * len(self.kernel_size)

    def out_shape(self, shapes):
        (s,) = shapes
        n = len(self.kernel_size)
        if len(s) != n + 1:
            raise _fail(self.name, f"a {n}-D {self.KIND} needs a {_map(n)} map; input "
                                   f"{self.inputs[0]!r} has shape {list(s)}")
        spatial = tuple((x + 2 * self.padding - k) // st + 1
                        for x, k, st in zip(s[1:], self.kernel_size, self._stride()))
        if min(spatial) < 1:
            raise _fail(self.name, f"the window {list(self.kernel_size)} does not fit the map {list(s[1:])}")
        return (s[0], *spatial)

    def forward(self, p, xs, ctx):
        n = len(self.kernel_size)
        name = ("max" if self.KIND == "maxpool" else "avg") + f"_pool{n}d"
        return getattr(F, name)(xs[0], self.kernel_size, self._stride(), self.padding)

    def population_forward(self, p, xs, ctx):
        # Pooling is per channel: the members' channels pool as one map.
        return split_members(self.forward(p, [merge_members(xs[0])], ctx), xs[0].shape[0])


@dataclass(frozen=True)
class MaxPool(_Pool):
    """Max pooling of a ``[C, L]`` or ``[C, H, W]`` map; ``stride`` defaults to the kernel size."""

    KIND: ClassVar[str] = "maxpool"


@dataclass(frozen=True)
class AvgPool(_Pool):
    """Average pooling (zero padding counted) of a ``[C, L]`` or ``[C, H, W]`` map."""

    KIND: ClassVar[str] = "avgpool"


@dataclass(frozen=True)
class GlobalPool(Node):
    """Mean (``op: avg``) or max (``op: max``) over every position of a channel-first map
    (``over: spatial``: ``[C, *S] -> [C]``) or over the tokens of a sequence (``over: tokens``:
    ``[T, D] -> [D]``)."""

    op: str = "avg"
    over: str = "spatial"
    KIND: ClassVar[str] = "global_pool"

    def check(self) -> None:
        if self.op not in ("avg", "max") or self.over not in ("spatial", "tokens"):
            raise _fail(self.name, f"op must be avg or max and over spatial or tokens, got {self.op!r}, {self.over!r}")

    def out_shape(self, shapes):
        (s,) = shapes
        if self.over == "tokens":
            if len(s) != 2:
                raise _fail(self.name, f"pooling over tokens needs a [T, D] sequence, got {list(s)}")
            return (s[1],)
        if len(s) < 2:
            raise _fail(self.name, f"pooling over positions needs a [C, *S] map, got {list(s)}")
        return (s[0],)

    def forward(self, p, xs, ctx):
        x = xs[0]
        h = x if self.over == "tokens" else x.flatten(2).transpose(1, 2)  # [B, positions, C]
        return h.mean(1) if self.op == "avg" else h.amax(1)

    def population_forward(self, p, xs, ctx):
        x = xs[0]
        h = x if self.over == "tokens" else x.flatten(3).transpose(2, 3)  # [P, B, positions, C]
        return h.mean(2) if self.op == "avg" else h.amax(2)

    def passes_feature_affine(self) -> bool:
        # a mean over tokens keeps the feature dim last; a max would not commute with a negative scale
        return self.op == "avg" and self.over == "tokens"


@dataclass(frozen=True)
class Flatten(Node):
    """``[*] -> [prod(*)]``."""

    KIND: ClassVar[str] = "flatten"

    def out_shape(self, shapes):
        return (math.prod(shapes[0]),)

    def forward(self, p, xs, ctx):
        return xs[0].flatten(1)

    def population_forward(self, p, xs, ctx):
        return xs[0].flatten(2)


@dataclass(frozen=True)
class Dropout(Node):
    """Zeroes entries with probability ``p`` while training (scaling the rest by
    ``1 / (1 - p)``); the identity otherwise."""

    p: float = 0.0
    KIND: ClassVar[str] = "dropout"

    def check(self) -> None:
        if not 0.0 <= self.p < 1.0:
            raise _fail(self.name, f"p must be in [0, 1), got {self.p}")

    def forward(self, p, xs, ctx):
        mask = ctx.masks.get(self.name) if ctx.training else None
        return xs[0] if mask is None else xs[0] * mask

    def population_forward(self, p, xs, ctx):
        return self.forward(p, xs, ctx)  # the population's masks are [P, B, *shape]


@dataclass(frozen=True)
class Add(Node):
    """The elementwise sum of two or more inputs of one shape (a residual connection)."""

    KIND: ClassVar[str] = "add"
    N_INPUTS: ClassVar[int | None] = None

    def out_shape(self, shapes):
        if len(set(shapes)) > 1:
            listed = ", ".join(f"{n!r} {list(s)}" for n, s in zip(self.inputs, shapes))
            raise _fail(self.name, f"add needs inputs of one shape, got {listed}")
        return shapes[0]

    def forward(self, p, xs, ctx):
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out

    def population_forward(self, p, xs, ctx):
        return self.forward(p, xs, ctx)  # elementwise


@dataclass(frozen=True)
class Embedding(Node):
    """Looks up integer ids (given as numbers): ``[*] -> [*, dim]`` (``nn.Embedding``)."""

    num_embeddings: int
    dim: int
    KIND: ClassVar[str] = "embedding"

    def check(self) -> None:
        _positive(self.name, num_embeddings=self.num_embeddings, dim=self.dim)

    def out_shape(self, shapes):
        return (*shapes[0], self.dim)

    def param_shapes(self):
        return [("weight", (self.num_embeddings, self.dim), "embedding")]

    def forward(self, p, xs, ctx):
        return p["weight"][xs[0].long()]

    def population_forward(self, p, xs, ctx):
        ids = xs[0].long()                                                   # [P, B, *]
        member = torch.arange(ids.shape[0], device=ids.device).view(-1, *[1] * (ids.dim() - 1))
        return p["weight"][member, ids]                                      # [P, B, *, D]


@dataclass(frozen=True)
class PosEmbedding(Node):
    """Adds a learned embedding per position to a ``[length, dim]`` sequence."""

    length: int
    dim: int
    KIND: ClassVar[str] = "pos_embedding"

    def check(self) -> None:
        _positive(self.name, length=self.length, dim=self.dim)

    def out_shape(self, shapes):
        (s,) = shapes
        if s != (self.length, self.dim):
            raise _fail(self.name, f"a position embedding of [{self.length}, {self.dim}] got input "
                                   f"{self.inputs[0]!r} of shape {list(s)}")
        return s

    def param_shapes(self):
        return [("weight", (self.length, self.dim), "embedding")]

    def forward(self, p, xs, ctx):
        return xs[0] + p["weight"]

    def population_forward(self, p, xs, ctx):
        return xs[0] + p["weight"].unsqueeze(1)                              # [P, B, T, D]


@dataclass(frozen=True)
class Attention(Node):
    """Multi-head self-attention over a ``[T, E]`` sequence, as ``nn.MultiheadAttention``
    (``batch_first``) computes it: ``q, k, v`` from one in-projection, softmax of
    ``q k^T / sqrt(E / heads)`` per head, then the out-projection. ``causal`` masks future tokens."""

    embed_dim: int
    num_heads: int
    bias: bool = True
    causal: bool = False
    KIND: ClassVar[str] = "attention"

    def check(self) -> None:
        _positive(self.name, embed_dim=self.embed_dim, num_heads=self.num_heads)
        if self.embed_dim % self.num_heads:
            raise _fail(self.name, f"num_heads={self.num_heads} must divide embed_dim={self.embed_dim}")

    def out_shape(self, shapes):
        (s,) = shapes
        if len(s) != 2 or s[1] != self.embed_dim:
            raise _fail(self.name, f"attention over [T, {self.embed_dim}] got input {self.inputs[0]!r} "
                                   f"of shape {list(s)}")
        return s

    def param_shapes(self):
        e = self.embed_dim
        out = [("in_proj_weight", (3 * e, e), "weight")]
        out += [("in_proj_bias", (3 * e,), "bias")] if self.bias else []
        out += [("out_proj.weight", (e, e), "weight")]
        return out + ([("out_proj.bias", (e,), "bias")] if self.bias else [])

    def forward(self, p, xs, ctx):
        x = xs[0]
        qkv = F.linear(x, p["in_proj_weight"], p.get("in_proj_bias"))       # [B, T, 3E]
        out = self._attend(*qkv.chunk(3, -1), kernels.oriented_bmm)                  # [B, T, E]
        return F.linear(out, p["out_proj.weight"], p.get("out_proj.bias"))

    def population_forward(self, p, xs, ctx):
        x = xs[0]
        n_pop, b, t, e = x.shape
        # q, k and v by three products (not one, then split): the backward of splitting a
        # [P*B, T, 3, H, d] tensor into heads was a quarter of a ViT population's step.
        w, bias = list(p["in_proj_weight"].chunk(3, 1)), p.get("in_proj_bias")
        bias = [None] * 3 if bias is None else list(bias.chunk(3, 1))
        # q's 1 / sqrt(d) scaling folded into its projection ([P, E, E] values, not [P, B, T, E])
        scale = 1 / math.sqrt(e // self.num_heads)
        w[0], bias[0] = w[0] * scale, None if bias[0] is None else bias[0] * scale
        q, k, v = (_member_linear(x, wi, bi).view(n_pop * b, t, e) for wi, bi in zip(w, bias))
        out = self._attend(q, k, v, kernels.small_bmm, q_scaled=True).view(n_pop, b, t, e)
        return _member_linear(out, p["out_proj.weight"], p.get("out_proj.bias"))

    def fold_input_affine(self, p, affine):
        weight, bias = affine.fold_into_linear(p["in_proj_weight"], p.get("in_proj_bias"))
        return {**p, "in_proj_weight": weight, "in_proj_bias": bias}

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, bmm: Callable[[Tensor, Tensor], Tensor],
                q_scaled: bool = False) -> Tensor:
        """``softmax(q k^T / sqrt(d)) v`` per head: ``q, k, v [N, T, E]`` (heads side by side
        in ``E``) -> ``[N, T, E]``, the heads of all ``N`` sequences as one batch of small
        matrices (``q`` already divided by ``sqrt(d)`` if ``q_scaled``). ``bmm`` is
        :func:`~catalog.kernels.small_bmm` for a population (its backward is what makes attention
        fast there) or :func:`~catalog.kernels.oriented_bmm` for one network (the same forward
        values). (torch's fused ``scaled_dot_product_attention`` measured 1.2x slower per training
        step on the CPU: its backward is slow for thousands of 16-token heads.)"""
        n, t, e = q.shape
        h = self.num_heads
        d = e // h

        # Each sequence's heads side by side in the batch (not all sequences of head 0 first): the
        # products' outputs come transposed ([d, T], see kernels.oriented_bmm), and [N, H, d, T] goes
        # back to [N, T, E] as one small transpose per sequence. From [H, N, d, T] the copy took
        # 1.1 ms per million values, against 0.4 ms (one thread); a ViT step 86 -> 82 ms.
        def by_sequence(z: Tensor) -> Tensor:
            return z.reshape(n, t, h, d).transpose(1, 2).reshape(n * h, t, d)      # [N*H, T, d]

        # Scaling q (not the scores) as PyTorch's attention does: T / d times fewer multiplications.
        q, k, v = by_sequence(q if q_scaled else q * (1 / math.sqrt(d))), by_sequence(k), by_sequence(v)
        scores = bmm(q, k.transpose(1, 2))                                   # [N*H, T, T]
        if self.causal:
            future = torch.ones(t, t, dtype=torch.bool, device=q.device).triu(1)
            scores = scores.masked_fill(future, float("-inf"))
        out = bmm(scores.softmax(-1), v)                                     # [N*H, T, d]
        return out.view(n, h, t, d).transpose(1, 2).reshape(n, t, e)


@dataclass(frozen=True)
class Patchify(Node):
    """Cuts a ``[C, H, W]`` image (or ``[C, L]`` signal) into non-overlapping patches, each a
    token of ``C * prod(patch_size)`` values in ``(c, row, col)`` order, patches row-major:
    ``[C, H, W] -> [(H/p)(W/q), C p q]``."""

    patch_size: tuple[int, ...]
    KIND: ClassVar[str] = "patchify"

    def check(self) -> None:
        if not 1 <= len(self.patch_size) <= 2 or min(self.patch_size) < 1:
            raise _fail(self.name, f"patch_size must be 1 or 2 positive sizes, got {list(self.patch_size)}")

    def out_shape(self, shapes):
        (s,) = shapes
        n = len(self.patch_size)
        if len(s) != n + 1 or any(x % p for x, p in zip(s[1:], self.patch_size)):
            raise _fail(self.name, f"patches {list(self.patch_size)} need a {_map(n)} map "
                                   f"whose sizes they divide; input {self.inputs[0]!r} has shape {list(s)}")
        tokens = math.prod(x // p for x, p in zip(s[1:], self.patch_size))
        return (tokens, s[0] * math.prod(self.patch_size))

    def forward(self, p, xs, ctx):
        x = xs[0]
        b, c = x.shape[:2]
        if len(self.patch_size) == 1:
            (q,) = self.patch_size
            return x.reshape(b, c, -1, q).permute(0, 2, 1, 3).reshape(b, -1, c * q)
        ph, pw = self.patch_size
        hh, ww = x.shape[2] // ph, x.shape[3] // pw
        x = x.reshape(b, c, hh, ph, ww, pw).permute(0, 2, 4, 1, 3, 5)
        return x.reshape(b, hh * ww, c * ph * pw)

    def population_forward(self, p, xs, ctx):
        return _per_example(self, p, xs, ctx)


NODE_KINDS: dict[str, type[Node]] = {cls.KIND: cls for cls in (
    Linear, Conv1d, Conv2d, BatchNorm, LayerNorm, Activation, MaxPool, AvgPool, GlobalPool,
    Flatten, Dropout, Add, Embedding, PosEmbedding, Attention, Patchify)}
#: Node kinds whose weights map neurons to neurons (what weight-space graphs see as edges).
PARAM_KINDS = frozenset(k for k, cls in NODE_KINDS.items() if cls.param_shapes is not Node.param_shapes)


def node_from_dict(d: object, where: str = "node") -> Node:
    """A node from its JSON form ``{"kind": ..., "name": ..., "inputs": [...], ...}``.

    Raises:
        ZooFormatError: an unknown kind (listing the valid ones), unknown or missing keys, or a
            field of the wrong type.
    """
    if not isinstance(d, Mapping):
        raise ZooFormatError(f"{where} must be an object with kind, name and inputs, got {d!r}")
    kind = d.get("kind")
    if kind not in NODE_KINDS:
        raise ZooFormatError(f"{where}: unknown node kind {kind!r}; valid kinds: {', '.join(NODE_KINDS)}")
    cls = NODE_KINDS[kind]
    names = [f.name for f in fields(cls)]
    unknown = sorted(set(d) - set(names) - {"kind"})
    if unknown:
        raise ZooFormatError(f"{where} ({kind} {d.get('name')!r}): unknown keys {unknown}; a {kind} "
                             f"node has {', '.join(names)}")
    missing = [f.name for f in fields(cls) if f.default is MISSING and f.name not in d]
    if missing:
        raise ZooFormatError(f"{where} ({kind} {d.get('name')!r}): lacks {', '.join(missing)}")
    try:
        return cls(**{k: v for k, v in d.items() if k != "kind"})
    except TypeError as e:  # pragma: no cover - keys were checked above
        raise ZooFormatError(f"{where}: {e}") from e
