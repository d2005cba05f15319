"""Architecture families that build graph :class:`~catalog.network.NetworkSpec` s (format v2).

| name         | what                                                                          |
| ------------ | ----------------------------------------------------------------------------- |
| resnet       | CIFAR-style ResNet-(6n+2) of basic blocks (ResNet-8, -14, -20, ...), optional  |
|              | batch norm, a width multiplier; 2-D for images, 1-D for signals               |
| vgg          | stacks of conv(-BN)-activation blocks, each stage ending in a 2x2 max pool,    |
|              | then a flatten and a linear classifier                                        |
| modelzoo-cnn | the CNN-s of Schürholt et al.'s Model Zoos (2,464 parameters on 1x28x28), or  |
|              | with ``size: l`` their CNN-l (10,853 parameters on 3x32x32)                   |
| transformer  | a small pre-norm ViT over image patches (or signal segments, e.g. MNIST-1D)   |

Node names follow the PyTorch modules these networks usually are (``layer1.0.conv1``,
``features.3``, ``module_list.6``, ``blocks.0.attn``), so parameter names match their
``state_dict`` keys. The run ids of these families hash only fields that are not at their
default (``ID_OMITS_DEFAULTS``), so adding an optional field later renames no run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from catalog import nodes as nd
from catalog.errors import WeightzooError
from catalog.network import NetworkSpec, is_finite_number


def integral(value: Any) -> Any:
    """An integral float (``8.0``, as YAML and JSON tools write 8) as its ``int`` (so its ids are
    those of ``8``); any other value as it is, for the caller's check (``8.5`` stays ``8.5``)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def positive_int(name: str, value: Any) -> int:
    """``value`` as an ``int`` if it is an integer >= 1; an integral float counts, as for the
    training fields, and becomes the ``int`` (:func:`integral`); ``8.5``, strings and booleans
    are refused."""
    value = integral(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise WeightzooError(f"architecture.{name} must be a positive integer, got {value!r}")
    return value


def positive_number(name: str, value: Any) -> float:
    """``value`` as a float if it is a finite number > 0 (not a bool, inf or nan)."""
    if not is_finite_number(value) or value <= 0:
        raise WeightzooError(f"architecture.{name} must be a positive number, got {value!r}")
    return float(value)


def _activation(value: Any) -> str:
    if value not in nd.ACTIVATIONS:
        raise WeightzooError(f"unknown activation {value!r}; valid activations: {', '.join(nd.ACTIVATIONS)}")
    return value


def _probability(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
        raise WeightzooError(f"architecture.{name} must be in [0, 1), got {value!r}")
    return float(value)


def _bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise WeightzooError(f"architecture.{name} must be true or false, got {value!r}")
    return value


#: Most nodes a family builds into one network (a ResNet-1202 has about 5,000). Depths are
#: unbounded integers in a spec: a depth of 1e30 would otherwise build nodes until memory runs out.
MAX_GRAPH_NODES = 10_000


class _Graph:
    """Appends nodes, tracking shapes, so builders can read the current shape."""

    def __init__(self, family: str, input_shape: tuple[int, ...]) -> None:
        self.family = family
        self.input_shape = tuple(input_shape)
        self.nodes: list[nd.Node] = []
        self.shapes: dict[str, tuple[int, ...]] = {nd.INPUT: self.input_shape}
        self.last = nd.INPUT

    def add(self, cls: type[nd.Node], name: str, *args: Any, inputs: tuple[str, ...] | None = None,
            **kwargs: Any) -> str:
        if len(self.nodes) >= MAX_GRAPH_NODES:
            raise WeightzooError(f"{self.family}: the network would have more than {MAX_GRAPH_NODES:,} nodes; "
                                 f"lower its depth (depth, convs_per_stage, channels entries)")
        node = cls(name, tuple(inputs or (self.last,)), *args, **kwargs)
        self.shapes[name] = tuple(node.out_shape([self.shapes[i] for i in node.inputs]))
        self.nodes.append(node)
        self.last = name
        return name

    @property
    def shape(self) -> tuple[int, ...]:
        return self.shapes[self.last]

    def spec(self, **meta: Any) -> NetworkSpec:
        return NetworkSpec(self.family, self.input_shape, nodes=tuple(self.nodes), meta=meta)


def _spatial(input_shape: tuple[int, ...], family: str) -> int:
    if len(input_shape) not in (2, 3):
        raise WeightzooError(
            f"{family} needs image [C, H, W] or signal [C, L] inputs; this dataset gives "
            f"{list(input_shape)}: use architecture 'mlp' instead")
    return len(input_shape) - 1


@dataclass(frozen=True)
class ResNetConfig:
    """A ResNet of basic blocks for small inputs (He et al. 2016, the CIFAR variant).

    A 3x3 stem convolution, then three stages of ``(depth - 2) / 6`` basic blocks with
    ``16, 32, 64`` channels times ``width_multiplier`` (the second and third stage halve the resolution
    with stride 2), then global average pooling and a linear classifier. A basic block is
    ``act(bn(conv3x3(act(bn(conv3x3(x))))) + shortcut(x))``; the shortcut is a 1x1 convolution
    (with batch norm) where the shape changes, the identity otherwise.

    Args:
        depth: ``6n + 2`` layers: 8, 14, 20, 32, ... (default ``8``).
        width_multiplier: channel multiplier (default ``1.0``: 16-32-64 channels; a separate
            name from the ``width`` column mlp zoos derive, which counts neurons).
        batchnorm: batch norm after every convolution (default ``True``; without it the
            convolutions have biases).
        activation: activation (default ``relu``).
    """

    depth: int = 8
    width_multiplier: float = 1.0
    batchnorm: bool = True
    activation: str = "relu"
    ID_OMITS_DEFAULTS: ClassVar[bool] = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "depth", positive_int("depth", self.depth))
        if (self.depth - 2) % 6 or self.depth < 8:
            raise WeightzooError(f"architecture.depth must be 6n + 2 (8, 14, 20, ...), got {self.depth}")
        object.__setattr__(self, "width_multiplier", positive_number("width_multiplier", self.width_multiplier))
        _bool("batchnorm", self.batchnorm)
        _activation(self.activation)

    def network_spec(self, input_shape: tuple[int, ...], n_outputs: int) -> NetworkSpec:
        n_sp = _spatial(input_shape, "resnet")
        conv = nd.Conv2d if n_sp == 2 else nd.Conv1d
        k3, k1 = (3,) * n_sp, (1,) * n_sp
        bn = self.batchnorm
        g = _Graph("resnet", input_shape)

        def conv_bn(name: str, bn_name: str, c_in: int, c_out: int, k: tuple[int, ...], stride: int,
                    inputs: tuple[str, ...] | None = None) -> str:
            g.add(conv, name, c_in, c_out, k, stride=stride, padding=k[0] // 2, bias=not bn, inputs=inputs)
            return g.add(nd.BatchNorm, bn_name, c_out) if bn else name

        chans = [max(1, round(c * self.width_multiplier)) for c in (16, 32, 64)]
        conv_bn("conv1", "bn1", input_shape[0], chans[0], k3, 1)
        x = g.add(nd.Activation, "relu", self.activation)
        c_in = chans[0]
        for stage, c_out in enumerate(chans):
            for block in range((self.depth - 2) // 6):
                pre = f"layer{stage + 1}.{block}"
                stride = 2 if stage > 0 and block == 0 else 1
                conv_bn(f"{pre}.conv1", f"{pre}.bn1", c_in, c_out, k3, stride, inputs=(x,))
                g.add(nd.Activation, f"{pre}.relu1", self.activation)
                y = conv_bn(f"{pre}.conv2", f"{pre}.bn2", c_out, c_out, k3, 1)
                if stride != 1 or c_in != c_out:
                    short = conv_bn(f"{pre}.shortcut.0", f"{pre}.shortcut.1", c_in, c_out, k1, stride, inputs=(x,))
                else:
                    short = x
                g.add(nd.Add, f"{pre}.add", inputs=(y, short))
                x = g.add(nd.Activation, f"{pre}.relu2", self.activation)
                c_in = c_out
        g.add(nd.GlobalPool, "pool")
        g.add(nd.Linear, "fc", c_in, n_outputs)
        return g.spec()


@dataclass(frozen=True)
class VGGConfig:
    """A VGG-style network (Simonyan & Zisserman 2015), scaled down.

    Stages of ``convs_per_stage`` 3x3 convolutions (padding 1, each followed by batch norm if
    ``batchnorm``, then the activation), every stage ending in a 2x2 max pool; then a flatten,
    ``hidden`` linear layers (activation, dropout) and the linear classifier. Node names follow
    torchvision's VGG: ``features.{i}`` and ``classifier.{j}``.

    Args:
        channels: channels per stage (default ``(16, 32)``).
        convs_per_stage: convolutions per stage (default ``1``).
        hidden: hidden widths of the classifier (default ``()``: one linear layer).
        batchnorm: batch norm after every convolution (default ``True``).
        activation: activation (default ``relu``).
        dropout: dropout before each hidden linear layer's successor (default ``0.0``).
    """

    channels: tuple[int, ...] = (16, 32)
    convs_per_stage: int = 1
    hidden: tuple[int, ...] = ()
    batchnorm: bool = True
    activation: str = "relu"
    dropout: float = 0.0
    ID_OMITS_DEFAULTS: ClassVar[bool] = True

    def __post_init__(self) -> None:
        for key in ("channels", "hidden"):
            value = getattr(self, key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                value = (value,)
            if not isinstance(value, list | tuple):
                raise WeightzooError(f"architecture.{key} must be a list of positive integers, got {value!r}")
            object.__setattr__(self, key, tuple(positive_int(key, v) for v in value))
        if not self.channels:
            raise WeightzooError("architecture.channels needs at least one stage")
        object.__setattr__(self, "convs_per_stage", positive_int("convs_per_stage", self.convs_per_stage))
        _bool("batchnorm", self.batchnorm)
        _activation(self.activation)
        object.__setattr__(self, "dropout", _probability("dropout", self.dropout))

    def network_spec(self, input_shape: tuple[int, ...], n_outputs: int) -> NetworkSpec:
        n_sp = _spatial(input_shape, "vgg")
        conv = nd.Conv2d if n_sp == 2 else nd.Conv1d
        g = _Graph("vgg", input_shape)
        i, c_in = 0, input_shape[0]
        for c_out in self.channels:
            for _ in range(self.convs_per_stage):
                g.add(conv, f"features.{i}", c_in, c_out, (3,) * n_sp, padding=1, bias=not self.batchnorm)
                i += 1
                if self.batchnorm:
                    g.add(nd.BatchNorm, f"features.{i}", c_out)
                    i += 1
                g.add(nd.Activation, f"features.{i}", self.activation)
                i += 1
                c_in = c_out
            if min(g.shape[1:]) < 2:
                raise WeightzooError(
                    f"vgg: {len(self.channels)} stages halve the {list(input_shape[1:])} input below "
                    f"1 pixel; use fewer channels entries")
            g.add(nd.MaxPool, f"features.{i}", (2,) * n_sp)
            i += 1
        g.add(nd.Flatten, "flatten")
        j, n_in = 0, g.shape[0]
        for width in self.hidden:
            g.add(nd.Linear, f"classifier.{j}", n_in, width)
            g.add(nd.Activation, f"classifier.{j + 1}", self.activation)
            j, n_in = j + 2, width
            if self.dropout > 0:
                g.add(nd.Dropout, f"classifier.{j}", p=self.dropout)
                j += 1
        g.add(nd.Linear, f"classifier.{j}", n_in, n_outputs)
        return g.spec()


#: The smallest image side each size of modelzoo-cnn takes. CNN-s: ``20 -conv5-> 16 -pool-> 8
#: -conv5-> 4 -pool-> 2 -conv2-> 1``; CNN-l: ``22 -conv3-> 20 -pool-> 10 -conv3-> 8 -pool-> 4
#: -conv3-> 2 -pool-> 1``; one pixel less leaves a layer nothing.
MODELZOO_CNN_MIN_SIDE = {"s": 20, "l": 22}
#: What each size was made for (for messages).
MODELZOO_CNN_MADE_FOR = {"s": "1x28x28 MNIST", "l": "3x32x32 CIFAR-10"}


@dataclass(frozen=True)
class ModelZooCNNConfig:
    """The CNNs of the Model Zoos (Schürholt et al., NeurIPS 2022 Datasets and Benchmarks).

    ``size="s"``, CNN-s (their ``CNN`` class): ``conv 8@5x5, maxpool 2, act, conv 6@5x5,
    maxpool 2, act, conv 4@2x2, act, flatten, linear 36 -> 20, act, linear 20 -> classes`` (no
    padding, stride 1), with the parameter names of their ``module_list``:
    ``module_list.{0,3,6,9,11}.weight/bias``. On ``1x28x28`` MNIST it has 2,464 parameters.

    ``size="l"``, CNN-l (their ``CNN3`` class, made for 32x32 images): three ``conv 3x3,
    maxpool 2, act`` blocks of 16, 32 and 15 channels, flatten, ``linear 60 -> 20, act, linear
    20 -> classes``; names ``module_list.{0,4,8,13,16}`` (their dropout modules hold the indices
    in between). On ``3x32x32`` it has 10,853 parameters. Dropout is not part of either network
    here (it changes training only).

    The first linear layer's input follows the input size: on ``1x28x28`` (mnist5k) CNN-l's last
    pool leaves ``1x1`` maps, so it reads 15 features, not 60 (9,665 parameters). The smallest
    images are :data:`MODELZOO_CNN_MIN_SIDE` (below, a convolution or pool would get no pixel).

    Args:
        activation: activation after each conv and the hidden linear layer (default ``tanh``;
            the zoos vary it over tanh, relu, gelu and sigmoid).
        size: ``"s"`` (default) or ``"l"``.
    """

    activation: str = "tanh"
    size: str = "s"
    ID_OMITS_DEFAULTS: ClassVar[bool] = True

    def __post_init__(self) -> None:
        _activation(self.activation)
        if self.size not in ("s", "l"):
            raise WeightzooError(f"modelzoo-cnn size {self.size!r}: use 's' (CNN-s) or 'l' (CNN-l)")

    def network_spec(self, input_shape: tuple[int, ...], n_outputs: int) -> NetworkSpec:
        side = MODELZOO_CNN_MIN_SIDE[self.size]
        if len(input_shape) != 3 or min(input_shape[1:]) < side:
            raise WeightzooError(
                f"modelzoo-cnn needs [C, H, W] images of at least {side}x{side} for size {self.size!r} "
                f"(CNN-{self.size}, made for {MODELZOO_CNN_MADE_FOR[self.size]}); this dataset gives "
                f"{list(input_shape)}: use larger images, e.g. mnist5k (1x28x28), which both sizes take")
        if self.size == "l":
            return self._cnn_l(input_shape, n_outputs)
        g = _Graph("modelzoo-cnn", input_shape)
        act = self.activation
        g.add(nd.Conv2d, "module_list.0", input_shape[0], 8, (5, 5))
        g.add(nd.MaxPool, "module_list.1", (2, 2))
        g.add(nd.Activation, "module_list.2", act)
        g.add(nd.Conv2d, "module_list.3", 8, 6, (5, 5))
        g.add(nd.MaxPool, "module_list.4", (2, 2))
        g.add(nd.Activation, "module_list.5", act)
        g.add(nd.Conv2d, "module_list.6", 6, 4, (2, 2))
        g.add(nd.Activation, "module_list.7", act)
        g.add(nd.Flatten, "module_list.8")
        g.add(nd.Linear, "module_list.9", g.shape[0], 20)
        g.add(nd.Activation, "module_list.10", act)
        g.add(nd.Linear, "module_list.11", 20, n_outputs)
        return g.spec()

    def _cnn_l(self, input_shape: tuple[int, ...], n_outputs: int) -> NetworkSpec:
        g = _Graph("modelzoo-cnn-l", input_shape)
        act = self.activation
        for index, c_in, c_out in ((0, input_shape[0], 16), (4, 16, 32), (8, 32, 15)):
            g.add(nd.Conv2d, f"module_list.{index}", c_in, c_out, (3, 3))
            g.add(nd.MaxPool, f"module_list.{index + 1}", (2, 2))
            g.add(nd.Activation, f"module_list.{index + 2}", act)
        g.add(nd.Flatten, "module_list.12")
        g.add(nd.Linear, "module_list.13", g.shape[0], 20)
        g.add(nd.Activation, "module_list.14", act)
        g.add(nd.Linear, "module_list.16", 20, n_outputs)
        return g.spec()


@dataclass(frozen=True)
class TransformerConfig:
    """A small pre-norm vision transformer (Dosovitskiy et al. 2021), or its 1-D twin for
    signals: the input is cut into non-overlapping patches (``patch_size`` square for images
    ``[C, H, W]``, segments for signals ``[C, L]``, e.g. MNIST-1D), each linearly embedded, plus
    a learned position embedding; then ``depth`` blocks
    ``x + attn(ln(x))``, ``x + fc2(act(fc1(ln(x))))``, a final layer norm, the mean over tokens
    and a linear classifier.

    Args:
        patch_size: patch side (images) or segment length (signals) (default ``4``).
        dim: token width (default ``32``).
        depth: transformer blocks (default ``2``).
        heads: attention heads (default ``2``; must divide ``dim``).
        mlp_ratio: MLP hidden width as a multiple of ``dim`` (default ``2``).
        activation: MLP activation (default ``gelu``).
        dropout: dropout after attention and the MLP (default ``0.0``).
    """

    patch_size: int = 4
    dim: int = 32
    depth: int = 2
    heads: int = 2
    mlp_ratio: int = 2
    activation: str = "gelu"
    dropout: float = 0.0
    ID_OMITS_DEFAULTS: ClassVar[bool] = True

    def __post_init__(self) -> None:
        for key in ("patch_size", "dim", "depth", "heads", "mlp_ratio"):
            object.__setattr__(self, key, positive_int(key, getattr(self, key)))
        if self.dim % self.heads:
            raise WeightzooError(f"architecture.heads ({self.heads}) must divide dim ({self.dim})")
        _activation(self.activation)
        object.__setattr__(self, "dropout", _probability("dropout", self.dropout))

    def network_spec(self, input_shape: tuple[int, ...], n_outputs: int) -> NetworkSpec:
        n_sp = _spatial(input_shape, "transformer")
        if any(s % self.patch_size for s in input_shape[1:]):
            raise WeightzooError(
                f"transformer: patch_size {self.patch_size} must divide the input size "
                f"{list(input_shape[1:])}")
        g = _Graph("transformer", input_shape)
        g.add(nd.Patchify, "patchify", (self.patch_size,) * n_sp)
        tokens, patch_dim = g.shape
        g.add(nd.Linear, "embed", patch_dim, self.dim)
        x = g.add(nd.PosEmbedding, "pos", tokens, self.dim)
        for b in range(self.depth):
            pre = f"blocks.{b}"
            g.add(nd.LayerNorm, f"{pre}.norm1", self.dim, inputs=(x,))
            y = g.add(nd.Attention, f"{pre}.attn", self.dim, self.heads)
            if self.dropout > 0:
                y = g.add(nd.Dropout, f"{pre}.drop1", p=self.dropout)
            x = g.add(nd.Add, f"{pre}.add1", inputs=(x, y))
            g.add(nd.LayerNorm, f"{pre}.norm2", self.dim)
            g.add(nd.Linear, f"{pre}.mlp.fc1", self.dim, self.dim * self.mlp_ratio)
            g.add(nd.Activation, f"{pre}.mlp.act", self.activation)
            y = g.add(nd.Linear, f"{pre}.mlp.fc2", self.dim * self.mlp_ratio, self.dim)
            if self.dropout > 0:
                y = g.add(nd.Dropout, f"{pre}.drop2", p=self.dropout)
            x = g.add(nd.Add, f"{pre}.add2", inputs=(x, y))
        g.add(nd.LayerNorm, "norm", self.dim, inputs=(x,))
        g.add(nd.GlobalPool, "pool", over="tokens")
        g.add(nd.Linear, "head", self.dim, n_outputs)
        return g.spec()


GRAPH_ARCHITECTURES: dict[str, type] = {
    "resnet": ResNetConfig, "vgg": VGGConfig, "modelzoo-cnn": ModelZooCNNConfig,
    "transformer": TransformerConfig}
