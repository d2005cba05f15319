"""The interface every weight generator implements, and its run directory.

A generator learns from a set of trained networks of one architecture (stacked parameters
``{name: Tensor[N, *shape]}`` plus their metadata rows) and samples new networks of the same
architecture. Learned methods (``hyperrep``, ``pdiff``, ``mip``) and the memorization baselines
(``noise``, ``average``, ``gaussian``) share this interface, so ``zoo generate`` and
``zoo eval-gen`` treat them alike.

A run directory holds::

    generator.safetensors   the generator's tensors (weights, latents, statistics)
    generator.json          method name, hyperparameters, the NetworkSpec, method extras,
                            and where the training networks came from

Nothing in it is executed when loading: the generator is rebuilt from the registry by name.
"""

from __future__ import annotations

import abc
import inspect
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa
import torch
from safetensors.torch import load_file
from torch import Tensor

from catalog.errors import WeightzooError, format_bytes
from catalog.format import atomic_write_bytes, parse_json, safetensors_bytes
from catalog.network import NetworkSpec
from catalog.paths import recover_output_dir, saved_output_dir
from weightspace.memory import allocation_limit

RUN_FORMAT = "weightzoo-generator-run-v1"
TENSORS_FILE = "generator.safetensors"
CONFIG_FILE = "generator.json"
#: The output kind of a generator run directory (:data:`catalog.paths.OUTPUT_KINDS`).
RUN_KIND = "generator"
#: Fewest training networks a generator trains on (fewer is a user error).
MIN_TRAINING_MODELS = 10


class Generator(abc.ABC):
    """A weight generator for one architecture.

    Subclasses register with :func:`weightspace.generators.registry.register_generator`, take
    their hyperparameters as keyword arguments of ``__init__`` (after ``spec``), and implement
    :meth:`fit`, :meth:`sample`, :meth:`state_tensors` and :meth:`load_state`.

    Args:
        spec: the architecture of the training and generated networks.
        **hparams: method hyperparameters (JSON-able), kept in :attr:`hparams` for saving.

    Shapes:
        ``fit(params={name: [N, *shape]}, table=N rows)``; ``sample(n) -> {name: [n, *shape]}``.
    """

    name: ClassVar[str] = ""
    #: True when :meth:`sample` takes condition values (e.g. ``{"lr": 0.01}``).
    conditional: ClassVar[bool] = False

    def __init__(self, spec: NetworkSpec, **hparams: Any) -> None:
        self.spec = spec
        self.hparams = dict(hparams)
        self.source: dict[str, Any] = {}

    @abc.abstractmethod
    def fit(self, params: Mapping[str, Tensor], table: pa.Table, *, seed: int = 0,
            progress: bool = False) -> None:
        """Learn from ``params`` (``{name: [N, *shape]}``) with metadata ``table`` (N rows, same order).

        A method that also learns from the source zoo's dataset declares a keyword-only
        ``data: zoo_builders.datasets.Dataset | None = None`` parameter; ``zoo generate`` passes
        the source zoo's dataset to such methods (see :func:`accepts_data`).
        """

    @abc.abstractmethod
    def sample(self, n: int, *, seed: int = 0,
               condition: Mapping[str, float] | None = None) -> dict[str, Tensor]:
        """``n`` new networks, ``{name: [n, *shape]}`` in the spec's dtype; seeded, so repeatable.

        ``condition`` gives a value per condition column (conditional methods only).
        """

    @abc.abstractmethod
    def state_tensors(self) -> dict[str, Tensor]:
        """Every tensor needed to sample again after :meth:`load_state` (contiguous, CPU)."""

    def state_config(self) -> dict[str, Any]:
        """JSON-able extras needed to sample again (e.g. condition column names). Default none."""
        return {}

    @abc.abstractmethod
    def load_state(self, tensors: Mapping[str, Tensor], config: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_tensors` / :meth:`state_config` returned."""

    def not_trained(self) -> WeightzooError:
        """The error for using a generator before :meth:`fit` or :func:`load_generator`."""
        return WeightzooError(f"this {self.name} generator is not trained; call fit() or load_generator(run_dir)")

    def save(self, run_dir: str | Path) -> Path:
        """Write the run directory (tensors first, config last), all or nothing: written beside
        ``run_dir`` and swapped in whole (:func:`catalog.paths.saved_output_dir`), so an
        interrupted save over an earlier generator leaves that one, never a mix of the two."""
        run_dir = Path(run_dir)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.state_tensors().items()}
        config = {"format": RUN_FORMAT, "method": self.name, "hparams": self.hparams,
                  "spec": self.spec.to_dict(), "state": self.state_config(), "source": self.source}
        with saved_output_dir(run_dir, RUN_KIND) as d:
            atomic_write_bytes(d / TENSORS_FILE, safetensors_bytes(tensors))
            atomic_write_bytes(d / CONFIG_FILE, (json.dumps(config, indent=2) + "\n").encode())
        return run_dir


def load_generator(run_dir: str | Path) -> Generator:
    """Rebuild a saved generator from its run directory (by registry name; nothing executed)."""
    from weightspace.generators.registry import build_generator

    run_dir = Path(run_dir)
    recover_output_dir(run_dir, RUN_KIND, best_effort=True)  # a save that was killed, if any
    cfg_path, tensors_path = run_dir / CONFIG_FILE, run_dir / TENSORS_FILE
    if not cfg_path.is_file() or not tensors_path.is_file():
        raise WeightzooError(
            f"{run_dir} is not a generator run directory (needs {CONFIG_FILE} and {TENSORS_FILE}); "
            "train one with `zoo generate ... --save-to DIR`")
    try:
        raw = cfg_path.read_bytes()
    except OSError as e:
        raise WeightzooError(f"{cfg_path} cannot be read ({e}); train the generator again") from None
    config = parse_json(raw, str(cfg_path), WeightzooError, "train the generator again")
    if not isinstance(config, dict) or config.get("format") != RUN_FORMAT:
        raise WeightzooError(f"{cfg_path} is not a {RUN_FORMAT} file; train the generator again")
    spec = NetworkSpec.from_dict(config["spec"])
    hparams = dict(config.get("hparams") or {})
    tensors = load_file(str(tensors_path))
    # The config's numbers size the networks load_state rebuilds: a crafted one is refused before
    # torch allocates it (see weightspace.memory).
    sizes = ", ".join(f"{k}={v!r}" for k, v in hparams.items())
    with allocation_limit(
            f"rebuilding the {config['method']} generator of {cfg_path} (hparams: {sizes})",
            f"the config does not fit its {format_bytes(tensors_path.stat().st_size)} of tensors in {TENSORS_FILE}: "
            f"it is corrupt or was crafted; train the generator again"):
        gen = build_generator(str(config["method"]), spec, **hparams)
        gen.load_state(tensors, dict(config.get("state") or {}))
    gen.source = dict(config.get("source") or {})
    return gen


def accepts_data(gen: Generator) -> bool:
    """Whether ``gen.fit`` takes the source dataset as ``data=`` (e.g. ``mip``'s distillation loss)."""
    return "data" in inspect.signature(gen.fit).parameters


def check_training_set(params: Mapping[str, Tensor], spec: NetworkSpec, what: str) -> int:
    """Number of training networks in ``params``; a user error if fewer than the minimum."""
    n = next(iter(params.values())).shape[0] if params else 0
    if n < MIN_TRAINING_MODELS:
        raise WeightzooError(
            f"{what} needs at least {MIN_TRAINING_MODELS} training networks, got {n}; "
            "widen the selection (where=, --where) to select more models")
    return n


def one_cycle(opt: torch.optim.Optimizer, max_lr: float, steps: int,
              pct_start: float) -> torch.optim.lr_scheduler.OneCycleLR:
    """A OneCycleLR schedule over ``steps`` (at least 1) optimizer steps that works for every step count.

    OneCycleLR's warm-up phase ends at step ``pct_start * steps - 1``; when that is 0 (e.g. 10 steps at
    ``pct_start=0.1``) the phase is empty and torch divides by zero. Such a warm-up is widened to two steps.
    """
    steps = max(1, int(steps))
    if steps >= 2 and abs(pct_start * steps - 1.0) < 1e-6:
        pct_start = 2.0 / steps
    return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=max_lr, total_steps=steps, pct_start=pct_start)
