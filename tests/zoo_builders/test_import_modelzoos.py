"""The modelzoos layout (Schürholt et al.'s Ray Tune trial folders): fixtures written in exactly
that layout, imported, compared bit for bit and against a hand-written CNN-s/CNN-l, trained on,
resumed, and refused when broken."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from zoo_helpers import assert_one_line_error, run_cli

from catalog.verify import verify_zoo
from catalog.zoo import open_zoo
from zoo_builders.importers import SourceError, import_modelzoos, import_zoo

ACTS = {"tanh": torch.tanh, "relu": torch.relu, "gelu": F.gelu, "sigmoid": torch.sigmoid,
        "leakyrelu": F.leaky_relu}


class _ModuleList(nn.Module):
    """Their networks keep their layers in ``self.module_list`` (state dict keys ``module_list.<i>.*``)."""

    def __init__(self, layers: dict[int, nn.Module], n: int) -> None:
        super().__init__()
        self.module_list = nn.ModuleList([layers.get(i, nn.Identity()) for i in range(n)])


def cnn_s(channels: int = 1, seed: int = 0) -> nn.Module:
    """Their CNN-s with its parameterized modules at their module_list indices."""
    torch.manual_seed(seed)
    return _ModuleList({0: nn.Conv2d(channels, 8, 5), 3: nn.Conv2d(8, 6, 5), 6: nn.Conv2d(6, 4, 2),
                        9: nn.Linear(36, 20), 11: nn.Linear(20, 10)}, 12)


def cnn_l(channels: int = 3, seed: int = 0) -> nn.Module:
    """Their CNN-l (``CNN3``) with its parameterized modules at their module_list indices."""
    torch.manual_seed(seed)
    return _ModuleList({0: nn.Conv2d(channels, 16, 3), 4: nn.Conv2d(16, 32, 3), 8: nn.Conv2d(32, 15, 3),
                        13: nn.Linear(60, 20), 16: nn.Linear(20, 10)}, 17)


def reference_cnn_s(sd: dict, x: torch.Tensor, act) -> torch.Tensor:
    """CNN-s written out by hand: conv5 -> maxpool2 -> act -> conv5 -> maxpool2 -> act -> conv2 ->
    act -> flatten -> linear -> act -> linear (their CNN.forward, dropout off)."""
    h = act(F.max_pool2d(F.conv2d(x, sd["module_list.0.weight"], sd["module_list.0.bias"]), 2))
    h = act(F.max_pool2d(F.conv2d(h, sd["module_list.3.weight"], sd["module_list.3.bias"]), 2))
    h = act(F.conv2d(h, sd["module_list.6.weight"], sd["module_list.6.bias"])).flatten(1)
    h = act(F.linear(h, sd["module_list.9.weight"], sd["module_list.9.bias"]))
    return F.linear(h, sd["module_list.11.weight"], sd["module_list.11.bias"])


def reference_cnn_l(sd: dict, x: torch.Tensor, act) -> torch.Tensor:
    """CNN-l by hand: three conv3 -> maxpool2 -> act blocks, flatten, linear -> act -> linear."""
    h = x
    for i in (0, 4, 8):
        h = act(F.max_pool2d(F.conv2d(h, sd[f"module_list.{i}.weight"], sd[f"module_list.{i}.bias"]), 2))
    h = act(F.linear(h.flatten(1), sd["module_list.13.weight"], sd["module_list.13.bias"]))
    return F.linear(h, sd["module_list.16.weight"], sd["module_list.16.bias"])


def trial_name(i: int, params: dict) -> str:
    """A Ray Tune trial folder name: NN_tune_trainable_<id>_<k=v,...>_<date>."""
    kv = f"model::nlin={params['model::nlin']},seed={params['seed']}"
    return f"NN_tune_trainable_3f2a1_{i:05d}_{i}_{kv}_2022-03-0{1 + i % 9}_12-00-00"


def write_modelzoo(root: Path, nlins=("tanh", "relu", "tanh", "gelu"), epochs: int = 2, arch=cnn_s,
                   epoch0_metrics: bool = False) -> tuple[Path, dict]:
    """A Model Zoos folder: one trial per activation, checkpoints 0..epochs (0 = init), each a
    ``torch.save``'d state dict named ``checkpoints`` without extension, ``params.json`` (flat
    ``a::b`` keys), ``result.json`` (one JSON line per epoch, Ray Tune's fields included) and a
    top-level ``dataset.pt`` that must never be loaded (it would create ``pwned`` if it were).

    Returns:
        the folder and ``{trial name: {"params", "results", "states": {epoch: state dict}}}``.
    """
    root.mkdir(parents=True)
    truth = {}
    for i, nlin in enumerate(nlins):
        params = {"model::type": "CNN" if arch is cnn_s else "CNN3", "model::channels_in": 1 if arch is cnn_s else 3,
                  "model::nlin": nlin, "model::dropout": 0.1 * (i % 2), "model::init_type": "kaiming_uniform",
                  "model::o_dim": 10, "optim::optimizer": "adam", "optim::lr": [1e-4, 1e-3][i % 2],
                  "optim::wd": [0.0, 1e-3][i // 2 % 2], "seed": i + 1, "training::batchsize": 64,
                  "training::epochs_train": epochs, "cuda": False}
        name = trial_name(i, params)
        folder = root / name
        folder.mkdir()
        (folder / "params.json").write_text(json.dumps(params, indent=4))
        net = arch(seed=i)
        states, results = {}, []
        for e in range(epochs + 1):
            if e:
                with torch.no_grad():  # "training": every epoch moves the weights
                    for p in net.parameters():
                        p.add_(0.05 * torch.randn_like(p))
            (folder / f"checkpoint_{e:06d}").mkdir()
            sd = {k: v.clone() for k, v in net.state_dict().items()}
            torch.save(sd, folder / f"checkpoint_{e:06d}" / "checkpoints")
            states[e] = sd
            if e or epoch0_metrics:
                acc = round(0.1 + 0.2 * e + 0.01 * i, 4)
                results.append({"test_acc": acc, "train_acc": acc + 0.05, "test_loss": 2.3 - e * 0.3 - 0.01 * i,
                                "train_loss": 2.2 - e * 0.3, "ggap": 0.05, "training_iteration": e,
                                "time_this_iter_s": 1.5, "done": e == epochs, "trial_id": f"3f2a1_{i:05d}",
                                "date": "2022-03-01_12-00-00", "config": params})
        (folder / "result.json").write_text("".join(json.dumps(r) + "\n" for r in results))
        truth[name] = {"params": params, "results": {r["training_iteration"]: r for r in results}, "states": states}

    class Evil:
        def __reduce__(self):
            return (open, (str(root.parent / "pwned"), "w"))

    with open(root / "dataset.pt", "wb") as f:
        pickle.dump({"trainset": Evil()}, f, protocol=2)
    return root, truth


def test_cnn_s_zoo_imports_bit_identical_with_metadata(tmp_path):
    src, truth = write_modelzoo(tmp_path / "mnist_cnn_s")
    out = tmp_path / "zoo"
    manifest = import_modelzoos(src, out, quiet=True)
    assert manifest.counts["rows"] == 12 and manifest.counts["runs"] == 4
    assert len(manifest.architectures) == 3  # tanh, relu, gelu: the activation is part of the architecture
    assert verify_zoo(out).ok
    assert not (tmp_path / "pwned").exists()  # dataset.pt was never unpickled
    z = open_zoo(out)
    rows = z.table.to_pylist()
    assert len({r["model_id"] for r in rows}) == 12
    for r in rows:
        t = truth[r["trial"]]
        e = r["checkpoint"]
        assert r["source_path"] == f"{r['trial']}/checkpoint_{e:06d}/checkpoints"
        assert r["n_params"] == 2464
        # every params.json key, typed, under its column name
        assert r["model__nlin"] == t["params"]["model::nlin"] and r["optim__lr"] == t["params"]["optim::lr"]
        assert r["model__dropout"] == t["params"]["model::dropout"] and r["seed"] == t["params"]["seed"]
        assert r["training__batchsize"] == 64 and r["model__type"] == "CNN" and r["cuda"] is False
        # the epoch's result.json line, joined by training_iteration; none for the init
        res = t["results"].get(e)
        for k in ("test_acc", "train_acc", "test_loss", "train_loss", "ggap"):
            assert r[k] == (None if res is None else res[k])
        assert r["training_iteration"] == (None if res is None else e)
        assert "config" not in r
        sd = z.state_dict(r["model_id"])
        assert list(sd) == list(t["states"][e])
        for k, v in t["states"][e].items():
            assert sd[k].dtype == v.dtype and torch.equal(sd[k], v)  # bit-identical
    assert {r["run_id"] for r in rows if r["trial"] == rows[0]["trial"]} == {rows[0]["run_id"]}
    types = dict(zip(z.table.schema.names, map(str, z.table.schema.types)))
    assert types["optim__lr"] == "double" and types["seed"] == "int64" and types["model__nlin"] == "string"


def test_imported_cnn_s_computes_their_cnn(tmp_path):
    src, truth = write_modelzoo(tmp_path / "src", nlins=("tanh", "relu", "sigmoid", "leakyrelu"), epochs=1)
    out = tmp_path / "zoo"
    import_modelzoos(src, out, quiet=True)
    sel = open_zoo(out).select(order_by="model_id")
    x = torch.randn(5, 1, 28, 28)
    for r, module in zip(sel.table.to_pylist(), sel.modules()):
        sd = truth[r["trial"]]["states"][r["checkpoint"]]
        want = reference_cnn_s(sd, x, ACTS[r["model__nlin"]])
        torch.testing.assert_close(module(x), want, rtol=0, atol=1e-5)


def test_cnn_l_zoo(tmp_path):
    src, truth = write_modelzoo(tmp_path / "cifar_cnn_l", nlins=("tanh", "gelu"), epochs=1, arch=cnn_l,
                                epoch0_metrics=True)
    out = tmp_path / "zoo"
    manifest = import_zoo("modelzoos", src, out, dataset='{"name": "digits", "test_fraction": 0.25}', quiet=True)
    ds = manifest.spec["dataset"]  # recorded (with the config's defaults) for zoo verify --recompute
    assert ds["name"] == "digits" and ds["test_fraction"] == 0.25 and "digits" in manifest.datasets
    assert verify_zoo(out).ok
    sel = open_zoo(out).select(order_by="model_id")
    rows = sel.table.to_pylist()
    assert {r["n_params"] for r in rows} == {10853}  # 448 + 4640 + 4335 + 1220 + 210
    assert all(r["test_acc"] is not None for r in rows)  # result.json has an epoch-0 line here
    x = torch.randn(3, 3, 32, 32)
    for r, module, sd in zip(rows, sel.modules(), sel.state_dicts()):
        want = truth[r["trial"]]["states"][r["checkpoint"]]
        assert all(torch.equal(sd[k], want[k]) for k in want) and sorted(sd) == sorted(want)
        torch.testing.assert_close(module(x), reference_cnn_l(want, x, ACTS[r["model__nlin"]]), rtol=0, atol=1e-5)


@pytest.mark.slow
def test_cli_import_verify_train(tmp_path):
    src, _ = write_modelzoo(tmp_path / "src", nlins=("tanh",) * 6)
    out = tmp_path / "zoo"
    r = run_cli("import", "modelzoos", src, "--out", out, "-q")
    assert r.exit_code == 0, r.output
    assert "imported 18 models (1 architecture(s))" in r.output
    r = run_cli("verify", out)
    assert r.exit_code == 0, r.output
    r = run_cli("train", out, "--target", "test_acc", "--model", "statnn", "--epochs", "2", "-q",
                "--out", tmp_path / "run")
    assert r.exit_code == 0, r.output
    assert_one_line_error(run_cli("import", "modelzoos", tmp_path / "nowhere", "--out", tmp_path / "o", "-q"),
                          "not a directory")


def test_resume_after_interruption_adds_no_duplicates(tmp_path, monkeypatch):
    import zoo_builders.importers.modelzoos as modelzoos

    src, truth = write_modelzoo(tmp_path / "src", nlins=("tanh",) * 4)
    last = sorted(truth)[-1]
    ckpt = src / last / "checkpoint_000001" / "checkpoints"
    good = ckpt.read_bytes()
    ckpt.write_bytes(good[: len(good) // 2])  # an interrupted copy: the last trial's file is cut short
    out = tmp_path / "zoo"
    with pytest.raises(SourceError, match="checkpoint_000001/checkpoints"):
        import_modelzoos(src, out, rows_per_part=3, quiet=True)
    assert not out.exists()  # found before anything was written
    ckpt.write_bytes(good)
    # interrupted while writing the fourth trial: 12 checks, 9 written, the 10th read stops it
    read, calls = modelzoos.read_checkpoint, []

    def interrupted(*args):
        calls.append(args)
        if len(calls) == 22:
            raise KeyboardInterrupt
        return read(*args)

    monkeypatch.setattr(modelzoos, "read_checkpoint", interrupted)
    with pytest.raises(KeyboardInterrupt):
        import_modelzoos(src, out, rows_per_part=3, quiet=True)
    monkeypatch.undo()
    assert open_zoo(out).table.num_rows == 9  # three whole trials, one part each; the fourth not begun
    manifest = import_modelzoos(src, out, rows_per_part=3, quiet=True)
    assert manifest.complete and manifest.counts["rows"] == 12 and manifest.counts["runs"] == 4
    again = import_modelzoos(src, out, rows_per_part=3, quiet=True)  # finished: nothing added
    assert again.counts["rows"] == 12
    ids = open_zoo(out).table.column("model_id").to_pylist()
    assert len(ids) == len(set(ids)) == 12
    assert verify_zoo(out).ok


def test_restored_trial_takes_the_last_line_of_a_repeated_iteration(tmp_path):
    # Ray Tune restored the trial after epoch 2 from checkpoint 1: iteration 2 ran twice, and the
    # second run wrote checkpoint_000002 and the later result.json line.
    src, truth = write_modelzoo(tmp_path / "src", nlins=("tanh",), epochs=2)
    (trial,) = truth
    res = src / trial / "result.json"
    lines = [json.loads(x) for x in res.read_text().splitlines()]
    repeat = {**lines[-1], "test_acc": 0.777, "test_loss": 0.5}
    res.write_text("".join(json.dumps(r) + "\n" for r in [*lines, repeat]))
    import_modelzoos(src, tmp_path / "zoo", quiet=True)
    rows = {r["checkpoint"]: r for r in open_zoo(tmp_path / "zoo").table.to_pylist()}
    assert rows[2]["test_acc"] == 0.777 and rows[2]["test_loss"] == 0.5
    assert rows[1]["test_acc"] == truth[trial]["results"][1]["test_acc"]  # the others unchanged


def test_bad_trials_one_clear_error_each(tmp_path):
    def fresh(name, **kw):
        return write_modelzoo(tmp_path / name, nlins=("tanh", "relu"), epochs=1, **kw)

    marker = tmp_path / "executed"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    src, truth = fresh("evil")
    first = sorted(truth)[0]
    with open(src / first / "checkpoint_000001" / "checkpoints", "wb") as f:
        pickle.dump({"module_list.0.weight": Evil()}, f, protocol=2)
    with pytest.raises(SourceError, match="refused.*weights_only"):
        import_modelzoos(src, tmp_path / "o1", quiet=True)
    assert not marker.exists() and not (tmp_path / "o1").exists()

    src, truth = fresh("module")
    torch.save(cnn_s(), src / sorted(truth)[0] / "checkpoint_000000" / "checkpoints")  # a pickled module
    with pytest.raises(SourceError, match="refused"):
        import_modelzoos(src, tmp_path / "o2", quiet=True)
    assert not (tmp_path / "o2").exists()

    src, truth = fresh("noparams")
    (src / sorted(truth)[1] / "params.json").unlink()
    with pytest.raises(SourceError, match=r"trial NN_tune_trainable_\S+ has no params.json"):
        import_modelzoos(src, tmp_path / "o3", quiet=True)
    assert not (tmp_path / "o3").exists()

    src, truth = fresh("garbled")
    res = src / sorted(truth)[1] / "result.json"
    res.write_text(res.read_text()[:-25] + "\n")  # the last line cut mid-record
    with pytest.raises(SourceError, match="result.json line 1 is not valid JSON"):
        import_modelzoos(src, tmp_path / "o4", quiet=True)
    assert not (tmp_path / "o4").exists()

    src, truth = fresh("silu")
    p = src / sorted(truth)[0] / "params.json"
    p.write_text(json.dumps({**json.loads(p.read_text()), "model::nlin": "silu"}))
    with pytest.raises(SourceError, match="model::nlin 'silu'"):
        import_modelzoos(src, tmp_path / "o5", quiet=True)

    src, truth = fresh("odd")
    torch.save({"module_list.0.weight": torch.zeros(3, 2), "module_list.0.running_mean": torch.zeros(3)},
               src / sorted(truth)[0] / "checkpoint_000000" / "checkpoints")
    with pytest.raises(SourceError, match="running_mean.*--arch"):
        import_modelzoos(src, tmp_path / "o6", quiet=True)
    assert not (tmp_path / "o6").exists()

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SourceError, match="holds no trial folders"):
        import_modelzoos(empty, tmp_path / "o7", quiet=True)
    assert not marker.exists()


def test_params_and_results_that_collide_get_distinct_columns(tmp_path):
    """A params.json key equal to another but for case (``Seed``/``seed``), or to a result field:
    every value keeps a column of its own, the same in every trial, with one warning."""
    src, _ = write_modelzoo(tmp_path / "src", nlins=("tanh", "relu"), epochs=1)
    for i, trial in enumerate(sorted(p for p in src.iterdir() if p.is_dir())):
        params = json.loads((trial / "params.json").read_text())
        params = {"Seed": 100 + i, **params, "test_acc": -1.0} if i else {**params, "test_acc": -1.0, "Seed": 100}
        (trial / "params.json").write_text(json.dumps(params))
    with pytest.warns(UserWarning, match=r"params.json: .*renamed: 'seed' -> source_seed"):
        import_modelzoos(src, tmp_path / "zoo", quiet=True)
    rows = open_zoo(tmp_path / "zoo").table.to_pylist()
    assert {r["Seed"] for r in rows} == {100, 101} and {r["source_seed"] for r in rows} == {1, 2}
    assert {r["test_acc"] for r in rows} == {-1.0}
    assert {r["result_test_acc"] for r in rows if r["checkpoint"] == 1} != {None}
    names = [n.casefold() for n in rows[0]]
    assert len(names) == len(set(names))
