"""`zoo import` and `zoo export` through click's CliRunner."""

from __future__ import annotations

import csv
import io
import json
import pickle

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from zoo_helpers import assert_one_line_error, nest_shard_header, run_cli

from catalog.zoo import open_zoo
from zoo_builders.importers import IMPORTERS


def _folder(tmp_path, n=12):
    """``n`` small MLPs (alternating .safetensors and torch .pt) with a metadata.csv."""
    src = tmp_path / "src"
    src.mkdir()
    nets = {}
    with open(src / "metadata.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["filename", "lr", "test_acc"])
        for i in range(n):
            torch.manual_seed(i)
            net = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 2)).eval()
            name = f"m{i:02d}.safetensors" if i % 2 else f"m{i:02d}.pt"
            if i % 2:
                save_file(net.state_dict(), src / name)
            else:
                torch.save(net.state_dict(), src / name)
            nets[name] = net
            w.writerow([name, 0.1 if i % 3 else 0.01, 0.5 + 0.03 * i])
    return src, nets


def test_import_verify_query_train_export(tmp_path):
    src, nets = _folder(tmp_path)
    out = tmp_path / "zoo"
    r = run_cli("import", "state-dicts", src, "--out", out, "-q")
    assert r.exit_code == 0, r.output
    assert "imported 12 models (1 architecture(s))" in r.output
    r = run_cli("verify", out)
    assert r.exit_code == 0, r.output
    r = run_cli("query", out, "SELECT source_path, lr, test_acc FROM models WHERE lr = 0.01 ORDER BY source_path",
                "--format", "csv")
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(io.StringIO(r.output)))
    assert [x["source_path"] for x in rows] == ["m00.pt", "m03.safetensors", "m06.pt", "m09.safetensors"]
    sel = open_zoo(out).select(order_by="source_path")
    x = torch.randn(3, 5)
    for path, module in zip(sel.column("source_path"), sel.modules()):
        torch.testing.assert_close(module(x), nets[path](x), rtol=0, atol=1e-6)
    r = run_cli("train", out, "--target", "test_acc", "--model", "statnn", "--epochs", "1", "-q",
                "--include-init", "--out", tmp_path / "run")
    assert r.exit_code == 0, r.output
    r = run_cli("export", out, "--out", tmp_path / "exported", "-q")
    assert r.exit_code == 0 and "exported 12 models" in r.output
    back = load_file(tmp_path / "exported" / "m03.safetensors")
    orig = load_file(src / "m03.safetensors")
    assert sorted(back) == sorted(orig) and all(torch.equal(back[k], orig[k]) for k in orig)
    lines = [json.loads(line) for line in (tmp_path / "exported" / "metadata.jsonl").read_text().splitlines()]
    assert {line["file"] for line in lines} == {p.rsplit(".", 1)[0] + ".safetensors" for p in nets}


def test_import_errors_are_one_line(tmp_path):
    def check(r, text):  # (-q: a progress bar may have started before the error)
        assert r.exit_code == 1, r.output
        lines = [line for line in r.output.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:") and text in lines[0], r.output

    src, _ = _folder(tmp_path, n=2)
    check(run_cli("import", "nope", src, "--out", tmp_path / "o", "-q"), "small-cnn-zoo, state-dicts")
    check(run_cli("import", "state-dicts", tmp_path / "absent", "--out", tmp_path / "o", "-q"), "is not a directory")
    check(run_cli("import", "state-dicts", src, "--out", tmp_path / "o", "--arch", "nope", "--input-shape", "5"),
          "unknown architecture 'nope'")
    check(run_cli("import", "state-dicts", src, "--out", tmp_path / "o", "--input-shape", "a,b"),
          "--input-shape")

    bad = tmp_path / "bad"
    bad.mkdir()
    save_file({"a.weight": torch.zeros(3, 2), "b.weight": torch.zeros(2, 5)}, bad / "x.safetensors")
    check(run_cli("import", "state-dicts", bad, "--out", tmp_path / "o", "-q"), "--arch")

    (bad / "x.safetensors").unlink()
    (bad / "notes.pt").write_bytes(b"hello, not a torch file")
    check(run_cli("import", "state-dicts", bad, "--out", tmp_path / "o", "-q"), "notes.pt")

    (bad / "notes.pt").unlink()
    marker = tmp_path / "executed"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    with open(bad / "evil.pth", "wb") as f:
        pickle.dump({"w": Evil()}, f, protocol=2)
    check(run_cli("import", "state-dicts", bad, "--out", tmp_path / "o", "-q"), "refused")
    assert not marker.exists()

    (bad / "evil.pth").unlink()
    save_file({"0.weight": torch.zeros(3, 2)}, bad / "ok.safetensors")
    (bad / "metadata.csv").write_text("file,lr\nok.safetensors,1\nmissing.pt,2\n")
    check(run_cli("import", "state-dicts", bad, "--out", tmp_path / "o", "-q"), "missing.pt")
    assert not (tmp_path / "o").exists()

    check(run_cli("export", src, "--out", tmp_path / "e", "-q"), "")  # not a zoo: one error line


def test_out_inside_a_zoo_is_refused_and_the_same_zoo_resumes(tmp_path):
    """`zoo import ... --out ZOO/sub` wrote a zoo inside another one (README: no command writes
    inside a zoo). It is refused before the source is read; the zoo itself as --out still resumes."""
    src, _ = _folder(tmp_path, n=2)
    out = tmp_path / "zoo"
    assert run_cli("import", "state-dicts", src, "--out", out, "-q").exit_code == 0
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
    for layout in ("state-dicts", "auto"):
        r = run_cli("import", layout, src, "--out", out / "sub", "-q")
        assert r.exit_code == 1 and r.output.startswith("error: out=") and "(--out)" in r.output, r.output
        assert "lies inside the zoo directory" in r.output and "choose a path outside it" in r.output
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == files
    r = run_cli("import", "state-dicts", src, "--out", out, "-q")  # the same import again: resumes, no change
    assert r.exit_code == 0 and "imported 2 models" in r.output, r.output


def test_import_help_says_where_the_activation_default_comes_from():
    """--activation said "(default relu)", but hf-models takes config.json's hidden_act first."""
    r = run_cli("import", "--help")
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())
    activation = text[text.index("--activation TEXT"):text.index("--input-shape")]
    assert "hf-models: config.json's hidden_act, else relu" in activation
    assert "small-cnn-zoo: each row's config.activation" in activation


def test_export_of_a_shard_with_a_deeply_nested_header_is_one_error_line(zoo_copy, tmp_path):
    """A RecursionError traceback before."""
    shard = nest_shard_header(zoo_copy)
    r = run_cli("export", zoo_copy, "--layout", "state-dicts", "--out", tmp_path / "e", "-q")
    assert_one_line_error(r, shard, "not a readable safetensors file", "levels deep")


def test_help_lists_every_layout_and_layout_option(tmp_path):
    r = run_cli("import", "--help")
    assert r.exit_code == 0, r.output
    (line,) = [line.strip() for line in r.output.splitlines() if line.strip().startswith("Layouts: ")]
    listed = line.removeprefix("Layouts: ").split(", ")
    text = " ".join(r.output.split())  # click wraps the other paragraphs
    assert listed == [*sorted(IMPORTERS), "auto"] and len(IMPORTERS) == 6
    assert "zoo import auto SOURCE" in text and "--layout LAYOUT" in text
    # --layout NAME instead of the first argument: the same zoo as the positional form
    src, _ = _folder(tmp_path, n=2)
    r = run_cli("import", src, "--layout", "auto", "--out", tmp_path / "a", "-q")
    assert r.exit_code == 0 and "imported 2 models" in r.output, r.output
    r = run_cli("import", "--layout", "state-dicts", src, "--out", tmp_path / "b", "-q")
    assert r.exit_code == 0, r.output
    a, b = (open_zoo(tmp_path / z).table for z in ("a", "b"))
    assert sorted(a.column("sha256").to_pylist()) == sorted(b.column("sha256").to_pylist())
    for args in (("state-dicts", src, "--layout", "auto"), (src,)):
        r = run_cli("import", *args, "--out", tmp_path / "c", "-q")
        assert r.exit_code == 1 and r.output.startswith("error: give the layout once and one SOURCE"), r.output
    assert not (tmp_path / "c").exists()
