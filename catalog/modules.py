"""``nn.Module`` forms of a :class:`~catalog.network.NetworkSpec`: :class:`SpecNetwork` for layer
chains and :func:`build_module` for any spec (graphs through
:class:`~catalog.execution.GraphNetwork`). Apart from :mod:`catalog.network` so that parsing a
spec imports no torch; ``catalog.network`` re-exports both names."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from catalog.errors import ZooFormatError
from catalog.execution import GraphNetwork
from catalog.network import LayerSpec, NetworkSpec, _activate


class _Activation(nn.Module):
    def __init__(self, layer: LayerSpec) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, h: Tensor) -> Tensor:
        return _activate(h, self.layer)


class SpecNetwork(nn.Module):
    """A plain ``nn.Module`` rebuilt from a chain :class:`NetworkSpec`.

    Its ``state_dict`` keys are exactly the spec's parameter names and its forward computes
    what :func:`population_forward` computes for one member. A spec named the builders' way
    (``layers.{i}.weight``, ``layers.{i}.bias``) gets ``self.layers``, an ``nn.ModuleList`` of
    ``nn.Linear``/``nn.ConvNd``; any other names (an imported model's own: ``seq.0.weight``,
    ``net.0.linear.weight``, ``fc1.weight``) become parameters at those module paths, with
    empty container modules in between, so ``load_state_dict`` takes the source's state dict
    as it is. (Its ``state_dict`` then lists them in module-nesting order.)

    Shapes:
        input ``[B, *input_shape]`` (or anything that reshapes to it) -> ``[B, n_outputs]``.

    Raises:
        ZooFormatError: a graph spec, or a parameter name whose module path collides with an
            attribute of ``nn.Module`` (e.g. ``train.weight``).
    """

    def __init__(self, spec: NetworkSpec) -> None:
        super().__init__()
        spec.require_chain("SpecNetwork")
        self.spec = spec
        self._acts = [_Activation(layer) for layer in spec.layers]
        self._by_name = not all(
            layer.weight == f"layers.{i}.weight" and layer.bias in (None, f"layers.{i}.bias")
            for i, layer in enumerate(spec.layers))
        if not self._by_name:
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
        else:
            for p in spec.params:
                bound = 1 / math.sqrt(max(1, math.prod(p.shape[1:]) if p.role == "weight" else p.shape[0]))
                self._attach(p.name, nn.Parameter(torch.empty(p.shape).uniform_(-bound, bound)))
        expected = sorted(spec.param_names)
        got = sorted(self.state_dict().keys())
        if got != expected:  # pragma: no cover - the construction above gives exactly these
            raise ZooFormatError(f"SpecNetwork of {spec.arch_id}: built parameters {got}, expected {expected}")
        self.to(spec.torch_dtype)

    def _attach(self, name: str, param: nn.Parameter) -> None:
        """Register ``param`` at the dotted path ``name``, creating container modules."""
        *path, leaf = name.split(".")
        mod: nn.Module = self
        for part in path:
            child = mod._modules.get(part)
            if child is None:
                if hasattr(mod, part) or part in mod._parameters:
                    raise ZooFormatError(f"parameter name {name!r}: {part!r} is an attribute of the module, so "
                                         f"the name cannot be rebuilt; rename the parameter")
                child = nn.Module()
                mod.add_module(part, child)
            mod = child
        if hasattr(mod, leaf) or leaf in mod._modules:
            raise ZooFormatError(f"parameter name {name!r}: {leaf!r} is an attribute of the module, so the "
                                 f"name cannot be rebuilt; rename the parameter")
        mod.register_parameter(leaf, param)

    def forward(self, x: Tensor) -> Tensor:
        h = x.reshape(x.shape[0], *self.spec.input_shape)
        for i, (layer_spec, act) in enumerate(zip(self.spec.layers, self._acts)):
            if layer_spec.kind == "linear":
                h = h.reshape(h.shape[0], -1)
            if self._by_name:
                w = self.get_parameter(layer_spec.weight)
                b = None if layer_spec.bias is None else self.get_parameter(layer_spec.bias)
                if layer_spec.kind == "linear":
                    h = F.linear(h, w, b)  # what nn.Linear computes
                else:
                    conv = F.conv1d if layer_spec.kind == "conv1d" else F.conv2d
                    h = conv(h, w, b, stride=layer_spec.stride, padding=layer_spec.padding)
            else:
                h = self.layers[i](h)
            h = act(h)
            if layer_spec.pool == "global_avg":
                h = h.flatten(2).mean(-1)
        if self.spec.layers[-1].shift != 0.0:
            h = h + self.spec.layers[-1].shift
        return h


def build_module(spec: NetworkSpec, state_dict: Mapping[str, Tensor] | None = None) -> nn.Module:
    """Build an ``nn.Module`` for ``spec`` (a :class:`SpecNetwork` for chains, a
    :class:`~catalog.execution.GraphNetwork` for graphs) and, if given, load ``state_dict``
    into it (strictly), in eval mode."""
    module = SpecNetwork(spec) if spec.is_chain else GraphNetwork(spec)
    if state_dict is not None:
        module.load_state_dict(dict(state_dict), strict=True)
    return module.eval()
