"""The state-dict folder layout: a directory of per-model files plus optional metadata.

Layout (``SOURCE``, searched recursively; folders that are zoos, such as an ``--out`` inside
``SOURCE``, are skipped, and ``.json`` files that describe no model are ignored with a warning)::

    model_a.safetensors | .pt | .pth | .bin | .ckpt                one state dict per model (a
                                                                    Lightning .ckpt: its state_dict)
    metadata.csv | metadata.jsonl                                   optional, one row per model,
                                                                    keyed by a file/path/filename column
    model_a.json                                                    optional, per model (a JSON object)
    architectures.jsonl                                             optional, the architectures
                                                                    (NetworkSpec JSON) that rows name
                                                                    by their arch_id field

``.pt``/``.pth``/``.bin``/``.ckpt`` files are read with ``torch.load(weights_only=True)`` only: a pickle that
holds anything but tensors and plain containers is refused, never executed.

Architectures are inferred from the tensors (:func:`infer_network`): ``<prefix>.weight`` /
``<prefix>.bias`` pairs (a lone layer's ``weight``/``bias`` too), 2-D weights linear, 3-D conv1d, 4-D
conv2d, sizes that chain (a chain, :func:`infer_chain`); batch norms right after a layer (``weight``,
``bias``, ``running_mean``, ``running_var``, ``num_batches_tracked``) make it a graph with
``batchnorm`` nodes. Any other module (attention, ...) is an error naming it; give such
architectures by ``arch`` (a preset name with options, or a spec JSON file).

A state dict records neither the forward order nor skip connections: the layers are chained in the
order the file holds them (a torch file: the modules' definition order; a safetensors file, which
keeps no order: natural name order, ``layers.2`` before ``layers.10``). So (:func:`refuse_non_chains`)
tensors that are recognisably no chain are refused, naming the module and ``arch``:

1. a module name with a part in :data:`RESIDUAL_PARTS` (``downsample``, ``shortcut``, ``skip``,
   ``residual``): the projection of a skip connection (torchvision's ``layer2.0.downsample.0``);
2. a sub-module holding two ``conv<k>`` (``<block>.conv1``, ``<block>.conv2``): a residual block's
   naming (torchvision's ``layer1.0.conv1``); top-level ``conv1``, ``conv2`` are a plain CNN's;
3. an embedding table: a 2-D ``weight`` without bias in a module named ``emb``, ``embed``,
   ``embedding(s)`` (alone or in ``_``-joined words: ``word_embeddings``, ``embed_tokens``) or
   ``wte``/``wpe``. An ``nn.Embedding`` under another name (``0.weight``) cannot be told from a
   bias-free linear layer;
4. modules whose names differ only in their numbers (``fc1``/``fc2``, ``layers.0``/``layers.10``)
   held out of their numbers' order (``fc2`` before ``fc1``): the forward order is unknown.

Whenever a layer order is taken from a file (inferred, or a preset's layers matched to the file's
layers by position), the import says so once per architecture, after every file is checked: an
:class:`~zoo_builders.importers.common.InferredArchitectureWarning` of a line or two naming the
architecture, listing the order and saying to confirm or change it with ``arch``. A spec JSON
file whose chain names the file's parameters keeps its own layer order (:func:`fit_arch`), the
way to give the forward order.

A row whose ``arch_id`` names an architecture of ``architectures.jsonl`` (as
:func:`export_statedict` writes them) takes that architecture as it is (validated like any spec,
and fitted to the file's tensors by name): an exported zoo of any architecture, activation,
stride or padding imports back to the same architectures, with no notice. Models are grouped by
architecture.
``module.`` (DataParallel) and ``_orig_mod.`` (torch.compile) prefixes are stripped; otherwise the
zoo's parameter names are the file's own, so :func:`export_statedict` gives the files back.

Inferred convolutions have stride 1 and no padding (a state dict does not record either): pass
``arch`` when yours differ. A convolution followed by a linear layer (or last) is followed by a
global average pool, the one way a chain goes from maps to vectors.
"""

from __future__ import annotations

import json
import math
import os
import re
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from pickle import UnpicklingError  # the error type only: nothing here unpickles
from typing import Any

import pyarrow.csv as pacsv
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor
from tqdm.auto import tqdm

from catalog.errors import WeightzooError
from catalog.format import CORE_COLUMNS, Manifest, atomic_path, atomic_write_bytes, parse_json
from catalog.network import LayerSpec, NetworkSpec
from catalog.paths import check_output_path, safe_join
from catalog.writer import ZooWriter
from zoo_builders.importers.common import (
    ROWS_PER_PART,
    GroupWriter,
    OrderNote,
    SourceError,
    check_activation,
    column_names,
    dataset_entry,
    finish_import,
    no_empty_zoo_on_error,
    no_partial_export,
    parse_arch_options,
    resolve_arch,
    rows_schema,
    stable_id,
    storable,
    torch_dtype_name,
    warn_notes,
    warn_renames,
)

LAYOUT = "state-dicts"
#: ``.ckpt``: PyTorch Lightning checkpoints, whose ``state_dict`` key holds the model (:data:`NESTED_KEYS`).
MODEL_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")
METADATA_TABLES = ("metadata.csv", "metadata.jsonl")
#: Optional: one architecture per line, ``{"arch_id": ..., "spec": <NetworkSpec JSON>}``
#: (``.jsonl``, so the per-model ``*.json`` metadata scan passes it by); ``zoo export`` writes it.
ARCHITECTURES_TABLE = "architectures.jsonl"
#: The metadata field naming a model's architecture in :data:`ARCHITECTURES_TABLE`.
ARCH_KEY = "arch_id"
#: Metadata columns naming the model file, in order of preference.
KEY_COLUMNS = ("file", "path", "filename")
#: Top-level keys under which training scripts commonly nest the state dict itself.
NESTED_KEYS = ("state_dict", "model_state_dict", "model")
_KINDS = {2: "linear", 3: "conv1d", 4: "conv2d"}
#: The call a refused pickle references, in torch's refusal message: "Unsupported global: GLOBAL
#: torch.nn.Linear ..." (torch <= 2.12) and "unsupported GLOBAL posix.system whose module posix is
#: blocked" (torch 2.13) both name it after the pickle opcode GLOBAL.
_REFUSED_GLOBAL = re.compile(r"\bGLOBAL\s+([A-Za-z_][\w.]*)")


# ================================================================================ reading
def _natural_key(name: str) -> list:
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]


def refused_global(message: str) -> str | None:
    """The global (``module.name``) a refused pickle references, from torch's ``weights_only``
    refusal message (see :data:`_REFUSED_GLOBAL`), or ``None`` when the message names none."""
    found = _REFUSED_GLOBAL.search(message)
    return found.group(1).rstrip(".") if found else None


#: Prefixes that wrappers put before every parameter name: DataParallel/DistributedDataParallel's
#: ``module.``, torch.compile's ``_orig_mod.`` (in any nesting); stripped, so a network saved
#: wrapped or not has the same names, hence the same architecture.
WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def strip_wrappers(name: str) -> str:
    """``name`` without leading :data:`WRAPPER_PREFIXES` (``module._orig_mod.0.weight`` -> ``0.weight``)."""
    while name.startswith(WRAPPER_PREFIXES):
        name = name.split(".", 1)[1]
    return name


def read_state_dict(path: str | os.PathLike, where: str | None = None) -> dict[str, Tensor]:
    """One model file as ``{name: tensor}``, wrapper prefixes (:data:`WRAPPER_PREFIXES`) stripped, in layer order: a
    torch file's own order; a safetensors file's names in natural order (``layers.2`` before
    ``layers.10``), since safetensors does not keep the order they were saved in.

    Args:
        path: the file.
        where: how messages name it (default: its name; importers give the path relative to
            their source).

    Raises:
        SourceError: not a state dict (a pickle that ``weights_only`` refuses, an object that
            is not a ``{str: Tensor}`` mapping, a damaged file).
    """
    path = Path(path)
    where = path.name if where is None else where
    if path.suffix == ".safetensors":
        try:
            raw = load_file(str(path))
        except Exception as e:  # SafetensorError, OSError, ... on a damaged file
            raise SourceError(f"{where} is not a readable safetensors file: {e}") from e
        items = sorted(raw.items(), key=lambda kv: _natural_key(kv[0]))
    else:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except UnpicklingError as e:
            found = refused_global(str(e))
            why = f"it references {found}" if found else "it holds more than tensors"
            raise SourceError(
                f"{where} was refused: torch.load(weights_only=True) will not unpickle it ({why}); "
                f"only plain state dicts of tensors are imported, nothing else is ever executed. "
                f"Re-save it as model.state_dict() or as .safetensors") from e
        except Exception as e:  # garbage bytes make the unpickler fail in many ways (KeyError, ...)
            raise SourceError(f"{where} is not a readable torch file ({type(e).__name__}: {e}); only "
                              f"state dicts saved with torch.save or safetensors are imported") from e
        if isinstance(obj, Mapping):
            for key in NESTED_KEYS:
                if key in obj and isinstance(obj[key], Mapping) and not isinstance(obj[key], Tensor):
                    obj = obj[key]
                    break
        if not isinstance(obj, Mapping) or not obj:
            raise SourceError(f"{where} holds a {type(obj).__name__}, not a state dict "
                              f"(a non-empty mapping of parameter names to tensors)")
        bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, Tensor)]
        if bad:
            raise SourceError(f"{where} is not a state dict: entry {bad[0]!r} is a "
                              f"{type(obj[bad[0]]).__name__}, not a tensor")
        items = list(obj.items())
    out: dict[str, Tensor] = {}
    for name, t in items:
        name = strip_wrappers(name)
        if name in out:
            raise SourceError(f"{where}: two tensors are named {name!r} once the wrapper prefixes "
                              f"{' and '.join(repr(w) for w in WRAPPER_PREFIXES)} are stripped")
        out[name] = t
    return out


def _layer_pairs(tensors: Mapping[str, Tensor], where: str,
                 given: NetworkSpec | None = None) -> list[tuple[str, str | None]]:
    """``[(weight name, bias name or None)]`` per layer, in the tensors' order; ``given``: the
    chain ``--arch`` gave (:func:`fit_arch`), which messages name instead of advising ``--arch``.

    Raises:
        SourceError: a tensor that is not a ``.weight``/``.bias`` of a layer with a weight.
    """
    def refuse(what: str) -> SourceError:
        if given is None:
            return SourceError(f"{where}: {what}, so the tensors are not a chain of linear/conv layers; give the "
                               f"architecture with --arch (a preset name or a spec JSON file)")
        return SourceError(f"{where}: {what}, so it is not part of the architecture given with --arch "
                           f"({given.summary()}), a chain of linear/conv layers; save the file without it, or give "
                           f"--arch a spec JSON file whose parameters include it")

    prefixes: dict[str, dict[str, str]] = {}
    lone = all("." not in name for name in tensors)  # a lone layer's state dict: weight, bias
    for name in tensors:
        prefix, _, leaf = name.rpartition(".")
        if leaf not in ("weight", "bias") or not (prefix or lone):
            raise refuse(f"tensor {name!r} {list(tensors[name].shape)} is not a layer's weight or bias")
        prefixes.setdefault(prefix, {})[leaf] = name
    pairs = []
    for prefix, d in prefixes.items():
        if "weight" not in d:
            raise refuse(f"{d['bias']!r} has no {prefix}.weight")
        pairs.append((d["weight"], d.get("bias")))
    return pairs


#: Module-name parts that name the projection of a skip connection (torchvision's ResNet
#: ``layer2.0.downsample.0``, the ``shortcut`` of CIFAR ResNets): a residual network, not a chain.
RESIDUAL_PARTS = ("downsample", "shortcut", "skip", "residual")
#: A convolution of a residual block: ``<block>.conv<k>`` inside a sub-module (torchvision's
#: ``layer1.0.conv1``); two of them in one block are its conv1/conv2(/conv3).
_BLOCK_CONV = re.compile(r"(?P<block>.+)\.conv\d+")
#: The last part of an embedding table's module name: ``emb``, ``embed``, ``embedding(s)``, also
#: within ``_``-joined words (``word_embeddings``, ``embed_tokens``, ``pos_emb``), GPT-2's ``wte``/``wpe``.
_EMBEDDING = re.compile(r"(?:\w*_)?(?:emb|embed|embeds|embedding|embeddings)(?:_\w*)?|wte|wpe")
#: Layers an :func:`order_note` lists before it elides the middle (the note stays short).
NOTE_LAYERS = 6
_ARCH_HINT = "give the architecture with --arch (a preset name or a spec JSON file)"


def refuse_non_chains(modules: Mapping[str, Mapping[str, str]], tensors: Mapping[str, Tensor], where: str) -> None:
    """Refuse tensors that are recognisably not a chain (the module docstring's rules 1-4).

    Args:
        modules: ``{module prefix: {leaf: tensor name}}`` in the file's order.
        tensors: the state dict.
        where: the source, for messages.

    Raises:
        SourceError: naming the module, what it looks like, and ``--arch``.
    """
    for prefix in modules:
        hit = next((p for p in prefix.split(".") if p in RESIDUAL_PARTS), None)
        if hit is not None:
            raise SourceError(f"{where}: module {prefix!r} is named like the projection of a skip connection "
                              f"({hit!r}), so the tensors are a residual network, which is no chain of layers; "
                              f"{_ARCH_HINT}")
    blocks: dict[str, list[str]] = {}
    for prefix in modules:
        m = _BLOCK_CONV.fullmatch(prefix)
        if m:
            blocks.setdefault(m["block"], []).append(prefix)
    for block, convs in blocks.items():
        if len(convs) > 1:
            raise SourceError(f"{where}: module {block!r} holds {' and '.join(repr(c) for c in convs)}, a residual "
                              f"block's naming (torchvision's layer1.0.conv1, layer1.0.conv2) whose input is added "
                              f"to its output, which no chain of layers computes; {_ARCH_HINT}")
    for prefix, d in modules.items():
        if _EMBEDDING.fullmatch(prefix.rpartition(".")[2]) and set(d) == {"weight"} and tensors[d["weight"]].dim() == 2:
            raise SourceError(f"{where}: module {prefix!r} [weight {list(tensors[d['weight']].shape)}] is an "
                              f"embedding table (nn.Embedding looks rows up; it is no linear layer); {_ARCH_HINT}")
    last: dict[str, tuple[tuple[int, ...], str]] = {}  # numbering template -> (numbers, module) seen last
    for prefix in modules:
        numbers = tuple(int(n) for n in re.findall(r"\d+", prefix))
        if not numbers:
            continue
        template = re.sub(r"\d+", "#", prefix)
        if template in last and numbers < last[template][0]:
            raise SourceError(f"{where}: the file holds {last[template][1]!r} before {prefix!r}: its order and the "
                              f"layers' numbering disagree, so the forward order is unknown; give --arch as a spec "
                              f"JSON file whose layers name the parameters in forward order")
        last[template] = (numbers, prefix)


def order_note(where: str, steps: Sequence[str], what: str | None = None) -> OrderNote:
    """The :class:`~zoo_builders.importers.common.OrderNote` of ``steps`` (one ``"name (kind
    in->out)"`` per layer) taken from ``where``: joined by arrows, the middle elided beyond
    :data:`NOTE_LAYERS` layers; ``what`` says how they were taken (default: inferred)."""
    if len(steps) > NOTE_LAYERS:
        half = NOTE_LAYERS // 2
        steps = [*steps[:half], f"... {len(steps) - 2 * half} more ...", *steps[-half:]]
    layers = " -> ".join(steps)
    return OrderNote(where, layers) if what is None else OrderNote(where, layers, what)


def _module_of(param: str) -> str:
    """The module a parameter belongs to (``fc1.weight`` -> ``fc1``; a lone layer's: ``(top level)``)."""
    return param.rpartition(".")[0] or "(top level)"


def _step(layer: LayerSpec) -> str:
    """One layer of an :func:`order_note`: ``"fc1 (linear 16->16)"``, ``"0 (linear 16->16, no bias)"``."""
    return (f"{_module_of(layer.weight)} ({layer.kind} {layer.in_features}->{layer.out_features}"
            f"{', no bias' if layer.bias is None else ''})")


def _chain_modules(pairs: Sequence[tuple[str, str | None]]) -> dict[str, dict[str, str]]:
    """``{module prefix: {"weight": name, "bias": name}}`` of ``(weight, bias)`` layer pairs."""
    out: dict[str, dict[str, str]] = {}
    for w, b in pairs:
        d = out.setdefault(w.rpartition(".")[0], {"weight": w})
        if b is not None:
            d["bias"] = b
    return out


def infer_chain(tensors: Mapping[str, Tensor], activation: str = "relu",
                input_shape: Sequence[int] | None = None, where: str = "state dict",
                notes: list[OrderNote] | None = None) -> NetworkSpec:
    """The chain a state dict's tensors form (see the module docstring for the rules).

    Args:
        tensors: ``{name: tensor}`` in layer order.
        activation: the hidden layers' activation (the last layer's is identity; default relu).
        input_shape: one example's shape; needed when the first layer is a convolution
            (default: ``(in_features,)`` for a linear first layer).
        where: the source, for messages.
        notes: if given, the chain's :func:`order_note` is appended to it (for the importer to
            show once every file is checked; default none).

    Raises:
        SourceError: the tensors are recognisably not a chain (:func:`refuse_non_chains`) or do
            not form one (the message says where it breaks and to use ``--arch``), or a
            convolutional net without an input shape.
    """
    pairs = _layer_pairs(tensors, where)
    refuse_non_chains(_chain_modules(pairs), tensors, where)
    spec = _chain(tensors, pairs, activation, input_shape, where)
    if notes is not None:
        notes.append(order_note(where, [_step(layer) for layer in spec.layers]))
    return spec


def _chain(tensors: Mapping[str, Tensor], pairs: Sequence[tuple[str, str | None]], activation: str,
           input_shape: Sequence[int] | None, where: str) -> NetworkSpec:
    """The chain of :func:`infer_chain` for the layers ``pairs`` (its checks done)."""
    dtypes = {torch_dtype_name(t, f"{where}: {n}") for n, t in tensors.items()}
    if len(dtypes) != 1:
        raise SourceError(f"{where}: the tensors mix dtypes {sorted(dtypes)}; a zoo architecture has one dtype")
    hint = "; give the architecture with --arch (a preset name or a spec JSON file)"
    specs: list[dict[str, Any]] = []
    for w_name, b_name in pairs:
        w = tensors[w_name]
        kind = _KINDS.get(w.dim())
        if kind is None:
            raise SourceError(f"{where}: {w_name!r} has shape {list(w.shape)}; a chain layer's weight is 2-D "
                              f"(linear), 3-D (conv1d) or 4-D (conv2d){hint}")
        out_f, in_f = int(w.shape[0]), int(w.shape[1])
        if b_name is not None and tuple(tensors[b_name].shape) != (out_f,):
            raise SourceError(f"{where}: {b_name!r} has shape {list(tensors[b_name].shape)}, expected "
                              f"[{out_f}] for {w_name!r} {list(w.shape)}{hint}")
        if specs:
            prev = specs[-1]
            if prev["kind"] == "linear" and kind != "linear":
                raise SourceError(f"{where}: {kind} layer {w_name!r} follows linear layer {prev['weight']!r}; "
                                  f"a chain cannot go from vectors back to maps{hint}")
            if in_f != prev["out_features"]:
                raise SourceError(
                    f"{where}: the tensors do not form a chain: {w_name!r} {list(w.shape)} takes {in_f} "
                    f"inputs but {prev['weight']!r} gives {prev['out_features']}{hint}")
            if prev["kind"] != "linear" and kind == "linear":
                prev["pool"] = "global_avg"
        specs.append({"kind": kind, "in_features": in_f, "out_features": out_f, "weight": w_name,
                      "bias": b_name, "kernel_size": tuple(int(k) for k in w.shape[2:])})
    if specs[-1]["kind"] != "linear":
        specs[-1]["pool"] = "global_avg"
    for s in specs[:-1]:
        s["activation"] = activation
    first = specs[0]
    if input_shape is None:
        if first["kind"] != "linear":
            raise SourceError(f"{where}: the first layer {first['weight']!r} is a {first['kind']}; give the "
                              f"input shape of one example (--input-shape, e.g. 1,28,28)")
        input_shape = (first["in_features"],)
    input_shape = tuple(int(s) for s in input_shape)
    if first["kind"] == "linear" and math.prod(input_shape) != first["in_features"]:
        raise SourceError(f"{where}: input shape {list(input_shape)} has {math.prod(input_shape)} values but "
                          f"{first['weight']!r} takes {first['in_features']}")
    if first["kind"] != "linear" and (len(input_shape) != len(first["kernel_size"]) + 1
                                      or input_shape[0] != first["in_features"]):
        raise SourceError(f"{where}: input shape {list(input_shape)} does not fit {first['kind']} "
                          f"{first['weight']!r} with {first['in_features']} input channels")
    family = "mlp" if all(s["kind"] == "linear" for s in specs) else "cnn"
    try:
        return NetworkSpec(family, input_shape, tuple(LayerSpec(**s) for s in specs), dtype=dtypes.pop())
    except WeightzooError as e:
        raise SourceError(f"{where}: {e}{hint}") from e


#: The tensors of a batch-norm module in a state dict (``num_batches_tracked`` is a counter that
#: no evaluation reads: dropped on import).
BN_LEAVES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def drop_bn_counters(tensors: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """``tensors`` without the ``num_batches_tracked`` of batch norms (modules holding
    ``running_mean`` or ``running_var``): an int64 counter no evaluation reads, never a parameter."""
    def counter(name: str) -> bool:
        prefix, _, leaf = name.rpartition(".")
        stats = (f"{prefix}.running_mean", f"{prefix}.running_var") if prefix else ("running_mean", "running_var")
        return leaf == "num_batches_tracked" and any(s in tensors for s in stats)
    return {n: t for n, t in tensors.items() if not counter(n)}


def _modules(tensors: Mapping[str, Tensor], where: str) -> dict[str, dict[str, str]]:
    """``{module prefix: {leaf: tensor name}}`` in the tensors' order.

    Raises:
        SourceError: a module with tensors other than a layer's ``weight``/``bias`` or a batch
            norm's (the message names the module and its tensors, and says to use ``--arch``).
    """
    out: dict[str, dict[str, str]] = {}
    for name in tensors:
        prefix, _, leaf = name.rpartition(".")
        out.setdefault(prefix, {})[leaf] = name
    for prefix, d in out.items():
        bad = [leaf for leaf in d if leaf not in BN_LEAVES]
        is_bn = "running_mean" in d or "running_var" in d
        if bad or not (prefix or len(out) == 1) or (not is_bn and "weight" not in d) or (
                not is_bn and any(leaf not in ("weight", "bias") for leaf in d)):
            kind = " (its tensors look like attention)" if any("proj" in leaf or "qkv" in leaf for leaf in d) else ""
            shown = ", ".join(f"{leaf} {list(tensors[n].shape)}" for leaf, n in d.items())
            raise SourceError(
                f"{where}: module {prefix or '(top level)'!r} [{shown}] is not a linear, convolution or batch-norm "
                f"layer{kind}, which is all an architecture is inferred from; give the architecture with --arch "
                f"(a preset name or a spec JSON file)")
    return out


def infer_network(tensors: Mapping[str, Tensor], activation: str = "relu",
                  input_shape: Sequence[int] | None = None, where: str = "state dict",
                  notes: list[OrderNote] | None = None) -> NetworkSpec:
    """The architecture a state dict's tensors form: :func:`infer_chain` for linear/conv layers
    alone; with batch norms (``weight``, ``bias``, ``running_mean``, ``running_var``,
    ``num_batches_tracked`` right after a linear or conv layer, e.g. ``nn.Sequential(conv, bn,
    relu, ...)``) the same chain as a graph with a ``batchnorm`` node after that layer, before
    its activation. The state dict does not record a batch norm's ``eps`` and ``momentum``:
    PyTorch's defaults (``1e-5``, ``0.1``) are assumed; ``num_batches_tracked`` is dropped.

    Args:
        notes: if given, the architecture's :func:`order_note` is appended to it (default none);
            the other arguments are :func:`infer_chain`'s.

    Raises:
        SourceError: a module that is none of these (the message names it; use ``--arch``),
            tensors that are recognisably no chain (:func:`refuse_non_chains`), a batch norm that
            does not follow a layer or does not match its width.
    """
    from catalog.nodes import BatchNorm

    mods = _modules(tensors, where)
    refuse_non_chains(mods, tensors, where)
    bns = [p for p, d in mods.items() if "running_mean" in d or "running_var" in d]
    if not bns:
        return infer_chain(tensors, activation, input_shape, where, notes)
    layer_tensors = {n: t for n, t in tensors.items() if n.rpartition(".")[0] not in bns}
    chain = infer_chain(layer_tensors, activation, input_shape, where)
    order = list(mods)
    after: dict[str, str] = {}
    for i, p in enumerate(order):
        if p in bns:
            prev = order[i - 1] if i else None
            if prev is None or prev in bns:
                raise SourceError(f"{where}: batch norm {p!r} does not follow a linear or convolution layer; "
                                  f"give the architecture with --arch")
            after[prev] = p
    widths = {layer.weight.removesuffix(".weight"): layer.out_features for layer in chain.layers}
    nodes, rename = [], {}
    for node in chain.as_graph().nodes:
        if any(i in rename for i in node.inputs):
            node = replace(node, inputs=tuple(rename.get(i, i) for i in node.inputs))
        nodes.append(node)
        if node.name in after:
            bn, d = after[node.name], mods[after[node.name]]
            c = widths[node.name]
            for leaf in ("weight", "bias", "running_mean", "running_var"):
                if leaf in d and tuple(tensors[d[leaf]].shape) != (c,):
                    raise SourceError(f"{where}: {d[leaf]!r} has shape {list(tensors[d[leaf]].shape)}, but the "
                                      f"layer {node.name!r} before it has {c} channels")
            if "running_mean" not in d or "running_var" not in d or ("weight" in d) != ("bias" in d):
                raise SourceError(f"{where}: batch norm {bn!r} needs running_mean and running_var (and weight "
                                  f"with bias, or neither); give the architecture with --arch")
            dtype = torch_dtype_name(tensors[d["running_mean"]], f"{where}: {d['running_mean']}")
            if dtype != chain.dtype:
                raise SourceError(f"{where}: batch norm {bn!r} is {dtype} but the layers are {chain.dtype}")
            nodes.append(BatchNorm(bn, (node.name,), c, affine="weight" in d))
            rename[node.name] = bn
    try:
        spec = NetworkSpec(chain.family, chain.input_shape, dtype=chain.dtype, meta=dict(chain.meta),
                           nodes=tuple(nodes))
    except WeightzooError as e:
        raise SourceError(f"{where}: {e}; give the architecture with --arch") from e
    if notes is not None:
        steps = []
        for layer in chain.layers:
            steps.append(_step(layer))
            bn = after.get(layer.weight.removesuffix(".weight"))
            if bn is not None:
                steps.append(f"{bn} (batchnorm {layer.out_features})")
        notes.append(order_note(where, steps))
    return spec


def fit_arch(spec: NetworkSpec, tensors: Mapping[str, Tensor], where: str,
             notes: list[OrderNote] | None = None) -> NetworkSpec:
    """``spec`` (from ``--arch``) with the file's parameter names and dtype.

    A chain whose layers name exactly the file's tensors keeps its own layer order (a spec JSON
    file gives the forward order that way); otherwise its layers take the file's layers in the
    file's order (the file's layers must have the spec's shapes, layer by layer), and, when
    ``notes`` is given, an :func:`order_note` says so. A graph's parameters must be the file's,
    by name and shape.

    A batch norm's ``num_batches_tracked`` counter is dropped, as :func:`infer_network` drops it.

    Raises:
        SourceError: the file's tensors do not fit the architecture (the first mismatch).
    """
    tensors = drop_bn_counters(tensors)
    dtypes = {torch_dtype_name(t, f"{where}: {n}") for n, t in tensors.items()}
    if len(dtypes) != 1:
        raise SourceError(f"{where}: the tensors mix dtypes {sorted(dtypes)}; a zoo architecture has one dtype")
    file_shapes = {n: tuple(t.shape) for n, t in tensors.items()}
    if spec.is_chain:
        pairs = _layer_pairs(tensors, where, spec)
        own = [(layer.weight, layer.bias) for layer in spec.layers]
        by_name = sorted(own, key=str) == sorted(pairs, key=str)
        if by_name:
            pairs = own  # the spec names the file's layers: its order is the forward order
        if len(pairs) != len(spec.layers):
            raise SourceError(f"{where}: the file has {len(pairs)} layers, the architecture {spec.summary()} "
                              f"has {len(spec.layers)}")
        for layer, (w, b) in zip(spec.layers, pairs):
            if file_shapes[w] != layer.weight_shape or (b is None) != (layer.bias is None) or (
                    b is not None and file_shapes[b] != (layer.out_features,)):
                raise SourceError(f"{where}: {w!r} {list(file_shapes[w])} does not fit the architecture's layer "
                                  f"{layer.weight!r} {list(layer.weight_shape)}"
                                  f"{'' if (b is None) == (layer.bias is None) else ' (bias differs)'}")
        layers = tuple(replace(layer, weight=w, bias=b) for layer, (w, b) in zip(spec.layers, pairs))
        if notes is not None and not by_name:
            notes.append(order_note(where, [f"{_module_of(mine.weight)} as {_module_of(layer.weight)}"
                                            for layer, mine in zip(spec.layers, layers)],
                                    what="--arch's layers took the file's in its order"))
        return replace(spec, layers=layers, dtype=dtypes.pop())
    expected = {p.name: p.shape for p in spec.params}
    if expected != file_shapes:
        diff = sorted(set(expected) ^ set(file_shapes)) or sorted(
            n for n in expected if expected[n] != file_shapes[n])
        raise SourceError(f"{where}: the tensors do not match the architecture's parameters (e.g. {diff[:3]})")
    return replace(spec, dtype=dtypes.pop())


def resolve_arch_for(arch: Any, options: Mapping[str, Any], input_shape: Sequence[int] | None,
                     tensors: Mapping[str, Tensor], activation: str | None, where: str) -> NetworkSpec:
    """``arch`` (:func:`~zoo_builders.importers.common.resolve_arch`) with the output width of the
    model ``tensors``: the first dimension of the file's tensor that the architecture's output
    layer's weight names, or, when the file names it otherwise (a preset fitted by position,
    :func:`fit_arch`), of the file's last layer weight (2-D or more) in the file's order, the layer
    :func:`fit_arch` makes the output. Never "the last tensor": that may be a batch norm's statistic,
    a 0-dim scalar or another layer.

    Raises:
        SourceError: the file has no layer weight to take the output width from, or ``arch`` is bad.
    """
    # Which weight holds the outputs: the one whose shape follows n_outputs (1 vs 2 outputs).
    one, two = (resolve_arch(arch, options, input_shape, n, activation) for n in (1, 2))
    if one == two:  # a spec given whole: the output width is its own
        return one
    changed = [p1.name for p1, p2 in zip(one.params, two.params) if p1.shape != p2.shape and p1.role == "weight"]
    tensors = drop_bn_counters(tensors)
    out = tensors.get(changed[-1]) if changed else None
    if out is None or out.dim() < 2:
        layers = [t for n, t in tensors.items() if n.rpartition(".")[2] == "weight" and t.dim() >= 2]
        if not layers:
            raise SourceError(f"{where}: no tensor is a layer weight (2-D or more, named *.weight), so the output "
                              f"width of --arch {arch} is unknown; the file holds {list(tensors)[:5]}")
        out = layers[-1]
    return resolve_arch(arch, options, input_shape, int(out.shape[0]), activation)


# ================================================================================ metadata
class SpecCache:
    """One stored :class:`NetworkSpec` per distinct activation and tensor layout (names, shapes,
    dtypes): ``arch`` resolved for the layout's output width and fitted to the tensors, or,
    without ``arch``, ``infer(tensors, activation, input_shape, where, notes=...)``.

    Calling it with ``(tensors, activation, where)`` returns ``(signature, spec)``. The layer
    orders it had to infer (:func:`order_note`) are shown by :meth:`warn`, once the importer has
    checked every model.
    """

    def __init__(self, arch: Any, options: Mapping[str, Any], input_shape: Sequence[int] | None,
                 infer: Any) -> None:
        self.arch, self.options, self.input_shape, self.infer = arch, options, input_shape, infer
        self.specs: dict[tuple, NetworkSpec] = {}
        self.notes: dict[tuple, list[OrderNote]] = {}
        self.sources: dict[tuple, set[str]] = {}

    def __call__(self, tensors: Mapping[str, Tensor], activation: str, where: str) -> tuple[tuple, NetworkSpec]:
        signature = (activation, *((n, tuple(t.shape), t.dtype) for n, t in tensors.items()))
        if signature not in self.specs:
            notes: list[OrderNote] = []
            if self.arch is not None:
                arch = resolve_arch_for(self.arch, self.options, self.input_shape, tensors, activation, where)
                spec = fit_arch(arch, tensors, where, notes)
            else:
                spec = self.infer(tensors, activation, self.input_shape, where, notes=notes)
            self.specs[signature] = storable(spec)
            self.notes[signature] = notes
        self.sources.setdefault(signature, set()).add(where)
        return signature, self.specs[signature]

    def warn(self) -> None:
        """Show the notes of every inferred layer order (:func:`warn_notes`)."""
        warn_notes([(self.specs[sig].arch_id, note, len(self.sources[sig]))
                    for sig, notes in self.notes.items() for note in notes])


def source_files(src: Path, skip: str | os.PathLike | None = None) -> list[Path]:
    """Every file under ``src``, sorted, but those in the folder ``skip`` (the import's own
    ``--out`` when it lies inside ``src``: a re-run, the documented resume, would read the zoo it
    writes) and in any folder that is a zoo (it holds ``zoo.json``: its weight shards are no
    model files, its ``zoo.json`` no model's metadata). Symbolic links to folders are not followed."""
    from catalog.format import MANIFEST_NAME

    skipped = None if skip is None else Path(skip).resolve()
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(src):
        here = Path(dirpath)
        if here != src and (MANIFEST_NAME in filenames or here.resolve() == skipped):
            dirnames.clear()
            continue
        out += [here / f for f in filenames]
    return sorted(out)


def model_files(src: Path, skip: str | os.PathLike | None = None) -> list[str]:
    """The model files under ``src`` (:func:`source_files`), as sorted POSIX paths relative to it."""
    return sorted(p.relative_to(src).as_posix() for p in source_files(src, skip)
                  if p.is_file() and p.suffix in MODEL_SUFFIXES)


def _match(value: object, files: Sequence[str], by_name: Mapping[str, list[str]], where: str) -> str:
    text = str(value).strip().replace("\\", "/").removeprefix("./")
    if text in files:
        return text
    hits = by_name.get(text, []) or by_name.get(Path(text).name, [])
    if len(hits) == 1:
        return hits[0]
    if len(hits) > 1:
        raise SourceError(f"{where} names {text!r}, which matches several model files ({hits[:3]}); "
                          f"give the path relative to the source folder")
    raise SourceError(f"{where} names {text!r}, which is not a model file in the source folder "
                      f"({', '.join(MODEL_SUFFIXES)})")


def _ignored_json(rel: str, why: str) -> str:
    """The warning for a ``.json`` file of the source that is no model's metadata."""
    return (f"ignored {rel}: it describes no model file (there is no {Path(rel).stem}"
            f"{{{','.join(MODEL_SUFFIXES)}}} next to it and it {why}); a model's metadata is "
            f"<model file stem>.json beside it, or a row of {' or '.join(METADATA_TABLES)}")


def read_metadata(src: Path, files: Sequence[str], skip: str | os.PathLike | None = None
                  ) -> dict[str, dict[str, Any]]:
    """``{model file: {field: value}}`` from ``metadata.csv``/``metadata.jsonl`` and per-model
    ``<stem>.json`` files (in the folders :func:`source_files` reads, ``skip`` left out); values
    keep their types (CSV columns are typed by pyarrow). A ``.json`` file that is no model's
    metadata (no model file of its stem beside it, and not an object with a ``file``/``path``/
    ``filename`` field: ``hparams.json``, ``config.json``) is skipped with a warning.

    Raises:
        SourceError: a table without a key column, a row naming a missing file, a file
            described twice, malformed JSON where a model's metadata is.
    """
    by_name: dict[str, list[str]] = {}
    for f in files:
        by_name.setdefault(Path(f).name, []).append(f)
    by_stem = {}
    for f in files:
        by_stem.setdefault(str(Path(f).with_suffix("")), []).append(f)
    out: dict[str, dict[str, Any]] = {}

    def put(rec: Mapping, where: str, default_file: str | None = None) -> None:
        key = next((k for k in KEY_COLUMNS if k in rec), None)
        if key is None and default_file is None:
            raise SourceError(f"{where} has no {'/'.join(KEY_COLUMNS)} column naming the model file")
        target = _match(rec[key], files, by_name, where) if key is not None else default_file
        if target in out:
            raise SourceError(f"{where}: {target} is described twice in the metadata")
        out[target] = {k: v for k, v in rec.items() if k != key}

    for table in METADATA_TABLES:
        path = src / table
        if not path.is_file():
            continue
        if table.endswith(".csv"):
            try:
                records = pacsv.read_csv(path).to_pylist()
            except Exception as e:  # pyarrow raises ArrowInvalid and friends
                raise SourceError(f"{table} is not a readable CSV file: {e}") from e
        else:
            records = []
            for i, line in enumerate(path.read_bytes().splitlines(), 1):
                if not line.strip():
                    continue
                rec = parse_json(line, f"{table} line {i}", SourceError)
                if not isinstance(rec, dict):
                    raise SourceError(f"{table} line {i} is not a JSON object")
                records.append(rec)
        for i, rec in enumerate(records, 1):
            put(rec, f"{table} row {i}")
    for p in source_files(src, skip):
        if p.suffix != ".json" or not p.is_file():
            continue
        rel = p.relative_to(src).as_posix()
        stem_hits = by_stem.get(str(Path(rel).with_suffix("")), [])
        try:
            rec = parse_json(p.read_bytes(), rel, SourceError)
        except SourceError:
            if len(stem_hits) != 1:  # a .json file that describes no model file: not ours to read
                warnings.warn(_ignored_json(rel, "is not JSON"), stacklevel=2)
                continue
            raise
        if not isinstance(rec, dict) or (not any(k in rec for k in KEY_COLUMNS) and len(stem_hits) != 1):
            if len(stem_hits) == 1:
                raise SourceError(f"{rel} is not a JSON object of metadata fields")
            warnings.warn(_ignored_json(rel, "is not a JSON object" if not isinstance(rec, dict) else
                                        f"has no {'/'.join(KEY_COLUMNS)} field"), stacklevel=2)
            continue
        put(rec, rel, stem_hits[0] if len(stem_hits) == 1 else None)
    return out


def read_architectures(src: Path) -> dict[str, NetworkSpec]:
    """``{arch_id: spec}`` from ``src/architectures.jsonl`` (empty without one).

    Raises:
        SourceError: a line that is not a JSON object with a text ``arch_id`` and a valid ``spec``,
            or an ``arch_id`` given twice.
    """
    from catalog.errors import ZooFormatError

    path = src / ARCHITECTURES_TABLE
    if not path.is_file():
        return {}
    out: dict[str, NetworkSpec] = {}
    for i, line in enumerate(path.read_bytes().splitlines(), 1):
        if not line.strip():
            continue
        where = f"{ARCHITECTURES_TABLE} line {i}"
        rec = parse_json(line, where, SourceError)
        if not isinstance(rec, dict) or not isinstance(rec.get(ARCH_KEY), str) or not isinstance(rec.get("spec"), dict):
            raise SourceError(f'{where} is not {{"{ARCH_KEY}": "...", "spec": {{...}}}}')
        if rec[ARCH_KEY] in out:
            raise SourceError(f"{where}: {ARCH_KEY} {rec[ARCH_KEY]!r} is given twice")
        try:
            out[rec[ARCH_KEY]] = NetworkSpec.from_dict(rec["spec"], new=True)
        except ZooFormatError as e:
            raise SourceError(f"{where}: architecture {rec[ARCH_KEY]!r} is not a valid spec: {e}") from e
    return out


def _declared_arch(rel: str, meta: Mapping[str, Any], declared: Mapping[str, NetworkSpec]) -> str | None:
    """The ``arch_id`` a model's metadata names in ``architectures.jsonl``, if it names one."""
    aid = meta.get(ARCH_KEY)
    if aid is None or not declared:
        return None
    if aid not in declared:
        raise SourceError(f"metadata of {rel}: {ARCH_KEY} {aid!r} is not in {ARCHITECTURES_TABLE} "
                          f"(it has {sorted(declared)})")
    return str(aid)


#: The columns :func:`_row` fills itself (a metadata field so named is renamed, :func:`column_names`).
_OWN_COLUMNS = ("source_layout", "source_path")


def _column_fields(meta: Mapping[str, Any], arch_declared: bool) -> list[str]:
    """A model's metadata fields that become columns (not ``run_id``, ``checkpoint``, nor a
    declared ``arch_id``, which :func:`_row` reads)."""
    return [k for k in meta if k not in ("run_id", "checkpoint") and not (arch_declared and k == ARCH_KEY)]


def _row(rel: str, meta: Mapping[str, Any], arch_declared: bool = False,
         columns: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A model's zoo row; an ``arch_id`` field names its architecture when ``arch_declared``
    (``architectures.jsonl``) and is no column then, else it is kept as ``source_arch_id``.
    ``columns``: each field's column, decided over every model (:func:`column_names`; default:
    over this model's fields alone)."""
    model_id = stable_id(rel)
    run_id = meta.get("run_id")
    checkpoint = meta.get("checkpoint", 0)
    if isinstance(checkpoint, float) and checkpoint.is_integer():
        checkpoint = int(checkpoint)
    if not isinstance(checkpoint, int) or isinstance(checkpoint, bool):
        raise SourceError(f"metadata of {rel}: checkpoint must be an integer, got {checkpoint!r}")
    row: dict[str, Any] = {"model_id": model_id, "run_id": model_id if run_id is None else str(run_id),
                           "checkpoint": checkpoint, "status": "ok", "source_layout": LAYOUT, "source_path": rel}
    fields = _column_fields(meta, arch_declared)
    if columns is None:
        columns = column_names(fields, _OWN_COLUMNS)
    for k in fields:
        row[columns[k]] = meta[k]
    return row


# ================================================================================ import / export
def import_statedicts(src: str | os.PathLike, out: str | os.PathLike, *, name: str | None = None,
                      arch: str | os.PathLike | Mapping | NetworkSpec | None = None,
                      arch_options: Sequence[str] | Mapping[str, Any] | None = None,
                      activation: str = "relu", input_shape: Sequence[int] | None = None,
                      dataset: str | Mapping | None = None, rows_per_part: int = ROWS_PER_PART,
                      quiet: bool = False) -> Manifest:
    """Import a state-dict folder as a zoo at ``out`` (resumable: run it again after a crash).

    Args:
        src: the folder.
        out: the zoo directory to write.
        name: the zoo's name (default: the folder's name).
        arch: the architecture of every model instead of inferring it: a preset name of
            :mod:`zoo_builders.architectures`, a spec JSON file, a spec dict or a
            :class:`NetworkSpec` (default: inferred per file).
        arch_options: the preset's options (``["channels=[16,16,16]"]`` or a dict).
        activation: the hidden layers' activation (default ``relu``).
        input_shape: one example's shape (needed for convolutional nets and presets).
        dataset: the dataset the models were evaluated on (a registered name or its config),
            recorded in the manifest so ``zoo verify --recompute`` re-evaluates them (default
            none).
        rows_per_part: models per part (and shard) of one architecture.
        quiet: no progress bar.

    Returns:
        the finished zoo's manifest.

    Raises:
        SourceError: the first problem with the source. Every file is read and fitted to an
            architecture before any model is written, so a bad file (a refused pickle, tensors
            no architecture fits) leaves no zoo behind (or an existing one as it was). An
            import interrupted later keeps its whole parts: run it again to resume.
    """
    check_activation(activation)
    src = Path(src)
    if not src.is_dir():
        raise SourceError(f"{src} is not a directory; the state-dicts layout is a folder of model files")
    files = model_files(src, skip=out)
    if not files:
        raise SourceError(f"{src} holds no model files ({', '.join(MODEL_SUFFIXES)})")
    metadata = read_metadata(src, files, skip=out)
    declared = read_architectures(src) if arch is None else {}
    fields = {k for f in files for k in _column_fields(metadata.get(f, {}), bool(declared))}
    columns = column_names(fields, _OWN_COLUMNS)  # over every model: a field is one column in every row
    warn_renames(columns, str(src))
    rows, schema = rows_schema([_row(f, metadata.get(f, {}), bool(declared), columns) for f in files])
    options = parse_arch_options(arch_options)
    preset = None if arch is None else (arch.to_dict() if isinstance(arch, NetworkSpec) else
                                        dict(arch) if isinstance(arch, Mapping) else str(arch))
    build_spec = {"importer": LAYOUT, "source": str(src.resolve()), "arch": preset, "arch_options": options,
                  "activation": activation, "input_shape": None if input_shape is None else list(input_shape)}
    ds_spec, ds_facts = dataset_entry(dataset)
    if ds_spec is not None:
        build_spec["dataset"] = ds_spec
    fixed = None
    if arch is not None:  # fail fast on a bad --arch, before any progress is shown
        first = read_state_dict(src / files[0], files[0])
        fixed = resolve_arch_for(arch, options, input_shape, first, activation, files[0])
    # Every file is read and fitted to an architecture before anything is written: a refused
    # pickle or tensors that fit no architecture, anywhere in the folder, leave nothing behind.
    # (The files are read twice; this pass keeps only each file's signature and spec.)
    inferred: dict[tuple, NetworkSpec] = {}
    signatures: dict[str, tuple] = {}
    notes: dict[tuple, list[OrderNote]] = {}  # the layer orders taken from the files (none for declared ones)
    for rel in tqdm(files, disable=quiet, unit="file", desc=f"check {src.name}"):
        tensors = read_state_dict(src / rel, rel)
        aid = _declared_arch(rel, metadata.get(rel, {}), declared)
        signature = (aid, *((n, tuple(t.shape), t.dtype) for n, t in tensors.items()))
        if signature not in inferred:
            notes[signature] = []
            if fixed is not None:
                inferred[signature] = storable(fit_arch(fixed, tensors, rel, notes[signature]))
            elif aid is not None:
                inferred[signature] = storable(fit_arch(declared[aid], tensors, rel, notes[signature]))
            else:
                inferred[signature] = storable(infer_network(tensors, activation, input_shape, rel,
                                                             notes[signature]))
        signatures[rel] = signature
        del tensors
    uses = Counter(signatures.values())
    warn_notes([(inferred[sig].arch_id, note, uses[sig]) for sig, texts in notes.items() for note in texts])
    with no_empty_zoo_on_error(out), \
            ZooWriter(out, name or src.resolve().name, build_spec, datasets=ds_facts,
                      command=f"zoo import {LAYOUT} {src}") as writer:
        done = writer.done_model_ids()
        groups = GroupWriter(writer, schema, rows_per_part)
        for rel, row in tqdm(list(zip(files, rows)), disable=quiet, unit="model", desc=f"import {src.name}"):
            if row["model_id"] in done:
                continue
            tensors = read_state_dict(src / rel, rel)
            signature = (signatures[rel][0], *((n, tuple(t.shape), t.dtype) for n, t in tensors.items()))
            if signature != signatures[rel]:
                raise SourceError(f"{rel} changed while it was imported; run the import again")
            spec = inferred[signature]
            if not all(bool(torch.isfinite(t).all()) for t in tensors.values()):
                row = {**row, "status": "diverged"}
            groups.add(spec, {p: tensors[p] for p in spec.param_names}, row)
        groups.flush()
        return finish_import(writer)


#: The files an export writes beside the models (no model file or folder may take their names).
EXPORT_TABLES = (ARCHITECTURES_TABLE, "metadata.jsonl")


def export_names(records: Sequence[Mapping[str, Any]], folder: str = "the export folder") -> list[str]:
    """Each model's file in an exported folder (``records``: rows with ``model_id``,
    ``source_layout``, ``source_path``), every one a valid path (:func:`catalog.paths.check_relpath`)
    and unique, also on a case-insensitive disk. ``folder`` names the folder in messages.

    A model imported from this layout keeps its file's path with the suffix ``.safetensors``
    where that is valid: each part letters, digits, ``.``, ``_``, ``-``, starting with a letter
    or digit. Otherwise (``my model (1).pt``, ``modèle.pt``, ``-v2.pt``, ``sub dir/x.pt``, a
    model of another layout), or when its name would clash, it is ``<model_id>.safetensors``.
    A clash: two models on one name (``m.pt`` beside ``m.safetensors``: the file already so named
    keeps it, the others are renamed), a file where another model's folder is, a folder named like
    :data:`EXPORT_TABLES`. Exported names are safe, so export -> import -> export keeps them.

    Raises:
        WeightzooError: a model id that is no valid file path (model ids are free text: ``a b``,
            ``../x``), one given twice, or two that differ only in case (their fallback names clash).
    """
    from catalog.errors import ZooFormatError
    from catalog.paths import check_relpath

    def own(rec: Mapping[str, Any]) -> str | None:
        if rec.get("source_layout") != LAYOUT or not rec.get("source_path"):
            return None
        rel = Path(rec["source_path"]).with_suffix(".safetensors").as_posix()
        try:
            check_relpath(rel)
        except ZooFormatError:
            return None
        return rel

    fallback = [f"{rec['model_id']}.safetensors" for rec in records]
    names = [own(rec) for rec in records]  # None: the model takes its fallback name
    reserved = {t.casefold() for t in EXPORT_TABLES}
    changed = True
    while changed:  # a renamed model can clash with a kept name: until no name changes
        final = [n if n is not None else f for n, f in zip(names, fallback)]
        claims: dict[str, list[int]] = {}
        for i, n in enumerate(final):
            claims.setdefault(n.casefold(), []).append(i)
        folders = {"/".join(n.split("/")[:k]).casefold() for n in final for k in range(1, n.count("/") + 1)}
        fixed = {final[i].casefold() for i, n in enumerate(names) if n is None} | reserved  # renamed: cannot move
        current = list(names)  # this round decides on the names as they are at its start
        changed = False
        for i, name in enumerate(current):
            if name is None:
                continue
            rivals = claims[name.casefold()]
            exact = [j for j in rivals if current[j] is not None and records[j]["source_path"] == final[j]]
            ancestors = {"/".join(name.split("/")[:k]).casefold() for k in range(1, name.count("/") + 1)}
            loses = (len(rivals) > 1 and (exact != [i] or any(current[j] is None for j in rivals))
                     or name.casefold() in folders | reserved or bool(ancestors & fixed))
            if loses:
                names[i], changed = None, True
    final = [n if n is not None else f for n, f in zip(names, fallback)]
    for rec, name, rel in zip(records, names, final):
        if name is not None:
            continue  # its own name, checked by own()
        try:
            check_relpath(rel)
        except ZooFormatError:  # model ids are free text; safe_join would blame the zoo's files
            how = "leads outside" if ".." in rel.split("/") or rel.startswith("/") else "is not a valid file path in"
            raise WeightzooError(
                f"model {rec['model_id']!r} cannot be exported: its file {rel!r} {how} {folder} (a model is "
                f"written as <model_id>.safetensors, so its model_id must be a relative path whose parts are "
                f"letters, digits, '.', '_' and '-'); weightzoo's builders and importers make such ids, so this "
                f"zoo was written by other code or edited: rewrite it with ids of that form to export it") from None
    seen: dict[str, int] = {}
    for i, n in enumerate(final):
        j = seen.setdefault(n.casefold(), i)
        if j != i and records[j]["model_id"] == records[i]["model_id"]:
            raise WeightzooError(f"model_id {records[i]['model_id']!r} is given to two rows (rows {j} and {i}): "
                                 f"a model_id names one model; the zoo's metadata is corrupt or was edited: run "
                                 f"`zoo verify`, then rebuild or re-pull the zoo")
        if j != i:
            raise WeightzooError(f"models {records[j]['model_id']!r} and {records[i]['model_id']!r} both export to "
                                 f"{n} (on a case-insensitive disk); their ids differ only in case")
    return final


def export_statedict(zoo: str | os.PathLike, out_dir: str | os.PathLike, quiet: bool = False) -> list[Path]:
    """Write every model of ``zoo`` as one ``.safetensors`` file (the zoo's parameter names,
    i.e. an imported model's own) plus ``architectures.jsonl`` (each architecture's spec) and
    ``metadata.jsonl`` (``file``, ``run_id``, ``checkpoint``, ``arch_id`` and every non-core
    column), a folder :func:`import_statedicts` reads back to the same architectures.

    Files are named by :func:`export_names` (a model's own name where it is safe and unique,
    else ``<model_id>.safetensors``), all checked before anything is written; ``metadata.jsonl``
    lists them sorted by file, so export -> import -> export gives the same bytes. A failed
    export removes what it wrote (:func:`~zoo_builders.importers.common.no_partial_export`).

    Returns:
        the written model files.

    Raises:
        WeightzooError: ``out_dir`` exists and is not empty, a model id that is no valid file name.
    """
    from catalog.zoo import open_zoo

    # Before any work: never into a zoo (its files would change), and a folder that can be written.
    out = check_output_path(out_dir, "out_dir", None, directory=True, flag="--out")
    if out.exists() and any(out.iterdir()):
        raise WeightzooError(f"{out} is not empty; export into a new or empty directory")
    z = open_zoo(zoo)
    try:
        sel = z.select()
        columns = sel.columns
        extra = [c for c in columns if c not in CORE_COLUMNS and c not in ("source_layout", "source_path")]
        names = export_names(sel.metadata(["model_id", *(c for c in ("source_layout", "source_path")
                                                         if c in columns)]).to_pylist(), f"the export folder {out}")
        paths = [safe_join(out, rel, "exported model file") for rel in names]  # every name checked first
        written: list[Path] = []
        step = 256
        lines: dict[str, str] = {}
        with no_partial_export(out), \
                tqdm(total=len(sel), disable=quiet, unit="model", desc=f"export {z.name}") as bar:
            out.mkdir(parents=True, exist_ok=True)
            for start in range(0, len(sel), step):
                part = sel.take(range(start, min(start + step, len(sel))))
                records = part.metadata(columns).to_pylist()
                for i, (rec, sd) in enumerate(zip(records, part.state_dicts()), start):
                    rel, path = names[i], paths[i]
                    path.parent.mkdir(parents=True, exist_ok=True)
                    with atomic_path(path) as tmp:
                        save_file({k: v.clone().contiguous() for k, v in sd.items()}, str(tmp))
                    written.append(path)
                    line = {"file": rel, "run_id": rec["run_id"], "checkpoint": rec["checkpoint"],
                            ARCH_KEY: rec["arch_id"], **{k: rec[k] for k in extra}}
                    lines[rel] = json.dumps(line, default=str) + "\n"
                    bar.update(1)
            archs = "".join(json.dumps({ARCH_KEY: aid, "spec": spec.to_dict()}) + "\n"
                            for aid, spec in sorted(sel.network_specs.items()))
            atomic_write_bytes(out / ARCHITECTURES_TABLE, archs.encode())
            # written last: a folder with metadata.jsonl holds every model it names. Sorted by file:
            # the zoo's row order depends on how it was made, the names survive a round trip.
            atomic_write_bytes(out / "metadata.jsonl", "".join(lines[rel] for rel in sorted(lines)).encode())
    finally:
        z.close()
    return written
