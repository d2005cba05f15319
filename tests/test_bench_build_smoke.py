"""benchmarks/bench_build.py: the per-model baseline trains graph architectures (the spec's own
module) to the population's accuracy, and ``--cases`` merges rows into an older result file."""

from __future__ import annotations

import copy
import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_build.py"


@pytest.fixture(scope="module")
def bench():
    if str(SCRIPT.parent) not in sys.path:  # the script imports its sibling bench_common
        sys.path.insert(0, str(SCRIPT.parent))
    spec = importlib.util.spec_from_file_location("bench_build", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_graph_baseline_reaches_the_populations_accuracy(bench):
    from zoo_builders import BuildSpec, load_dataset, train_classifiers

    s = BuildSpec.load({"name": "t", "dataset": {"name": "digits", "test_fraction": 0.25},
                        "architecture": {"name": "transformer", "patch_size": 4, "dim": 8, "depth": 1},
                        "training": {"epochs": 1, "batch_size": 256, "lr": 0.01, "checkpoints": [1]},
                        "grid": {"seed": [0, 1]}})
    runs, data = s.runs(), load_dataset(s.dataset)
    net = runs[0].arch.network_spec(data.input_shape, data.n_classes)
    pop = [m["test_acc"] for m in train_classifiers(net, runs, data).snapshots[-1].metrics]
    alone = bench.per_model_classifiers(net, runs, data)
    assert len(alone) == 2
    n = len(data.y_test)  # the same runs: the same predictions, up to float rounding (one example)
    assert all(abs(a - p) * n <= 1 for a, p in zip(alone, pop)), (alone, pop)


def test_torch_layers_vit_computes_the_spec_and_trains_to_its_accuracy(bench, monkeypatch):
    """TorchViT (nn.TransformerEncoderLayer blocks) on a run's initial weights equals the spec's
    module to float rounding, and its loop ends where the population does."""
    import torch

    from catalog.network import build_module
    from zoo_builders import BuildSpec, load_dataset, train_classifiers
    from zoo_builders.init import init_params
    from zoo_builders.train import member_generator

    s = BuildSpec.load({"name": "t", "dataset": {"name": "digits", "test_fraction": 0.25},
                        "architecture": {"name": "transformer", "patch_size": 2, "dim": 8, "depth": 2, "heads": 2},
                        "training": {"epochs": 1, "batch_size": 256, "lr": 0.01, "checkpoints": [1]},
                        "grid": {"seed": [0, 1]}})
    runs, data = s.runs(), load_dataset(s.dataset)
    net = runs[0].arch.network_spec(data.input_shape, data.n_classes)
    model = bench.torch_vit(net, runs[0])
    init = init_params(net, runs[0].training.init, member_generator(runs[0], "init"))
    x = data.x_train[:32].reshape(32, *net.input_shape)
    with torch.no_grad():
        torch.testing.assert_close(model.train()(x), build_module(net, init).train()(x), rtol=0, atol=1e-5)

    # torch_vit's own check can fail: a forward that drops the position embedding is refused
    class NoPos(bench.TorchViT):
        def forward(self, x):
            with torch.no_grad():
                self.pos.zero_()
            return super().forward(x)

    monkeypatch.setattr(bench, "TorchViT", NoPos)
    with pytest.raises(SystemExit, match="another function"):
        bench.torch_vit(net, runs[0])
    monkeypatch.undo()
    pop = [m["test_acc"] for m in train_classifiers(net, runs, data).snapshots[-1].metrics]
    alone = bench.per_model_classifiers(net, runs, data, torch_layers=True)
    n = len(data.y_test)  # same function, data order and optimizer: equal up to float rounding (one example)
    assert all(abs(a - p) * n <= 1 for a, p in zip(alone, pop)), (alone, pop)


def test_merge_keeps_other_cases_and_replaces_rerun_ones(bench):
    settings = {"torch_default": 1, "builder_default": 1}
    old = {"benchmark": "bench_build", "torch": "old", "threads": 2, "quick": False, "load_avg_1m": [0.5, 0.6],
           "targets": {"mlp": 15, "vit": 3},
           "results": [{"case": "mlp", "speedup": 25.0}, {"case": "vit", "threads": 2, "speedup": 1.3}]}
    rows = [{"case": "vit", "threads": 1, "speedup": 1.8, "population_models_per_minute": 60.0,
             "per_model_models_per_minute": 33.0}]
    new = {"benchmark": "bench_build", "torch": "new", "thread_settings": settings, "quick": False,
           "load_avg_1m": [6.0, 7.0], "targets": {"resnet8-bn": 3, "vit": 3}, "results": rows,
           "threads_side_by_side": bench.side_by_side(rows, settings)}
    merged = bench.merge_cases(copy.deepcopy(old), new, settings)
    by = {r["case"]: r for r in merged["results"]}
    assert sorted(by) == ["mlp", "vit"] and by["vit"]["speedup"] == 1.8
    # each row says which run measured it (load average differs between runs)
    assert by["mlp"]["run"]["load_avg_1m"] == [0.5, 0.6] and by["mlp"]["threads"] == 2
    assert by["vit"]["run"]["load_avg_1m"] == [6.0, 7.0]
    assert merged["targets"] == {"mlp": 15, "vit": 3, "resnet8-bn": 3} and "threads" not in merged
    assert [e["case"] for e in merged["threads_side_by_side"]] == ["vit"]
