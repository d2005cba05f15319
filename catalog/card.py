"""The zoo's dataset card (``README.md``): a YAML header the Hub and ``datasets`` read, then
a plain description of the zoo (what it is, its architectures, counts, metric summaries) and
how to load it."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml

from catalog.paths import safe_join

if TYPE_CHECKING:
    from catalog.format import Manifest
    from catalog.zoo import Zoo

METRIC_COLUMNS = ("test_acc", "train_acc", "test_loss", "train_loss", "ggap", "psnr", "mse")


def size_category(n_rows: int) -> str:
    """The Hub's ``size_categories`` bucket for ``n_rows`` rows."""
    bounds = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
              (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M")]
    for bound, label in bounds:
        if n_rows < bound:
            return label
    return "n>1T" if n_rows > 10**12 else "100M<n<1B"


#: What :func:`metric_summary` summarizes, as ``zoo info`` and the card say it.
METRICS_OVER = "each run's last checkpoint (status ok)"


def _last_checkpoint_rows(table: pa.Table) -> pa.Table:
    """The rows of ``table`` at their run's last checkpoint (per ``run_id``).

    Per run, not the zoo's largest checkpoint: runs of different families train for different
    epochs (``families:`` with their own ``training``), and a global maximum left out every run of
    a family that stopped earlier. A run's last checkpoint is taken over all its rows, so a run
    that diverged at its end is not summarized by an earlier checkpoint.
    """
    if "checkpoint" not in table.column_names or table.num_rows == 0:
        return table
    if "run_id" not in table.column_names:
        return table.filter(pc.equal(table.column("checkpoint"), pc.max(table.column("checkpoint"))))
    last = table.select(["run_id", "checkpoint"]).group_by("run_id").aggregate([("checkpoint", "max")])
    joined = table.join(last, "run_id")  # join: the key columns only carry scalars (no list columns)
    return joined.filter(pc.equal(joined.column("checkpoint"), joined.column("checkpoint_max")))


def metric_summary(table: pa.Table) -> dict[str, dict[str, float]]:
    """min/mean/max of each numeric metric column over :data:`METRICS_OVER`: each run's last
    checkpoint, rows with status ``ok``.

    A metric column that is not numeric (an imported ``test_acc`` of ``"95%"``) is left out, not
    summarized: the card and ``zoo info`` describe the zoo, they do not validate its metadata.
    """
    metrics = [c for c in METRIC_COLUMNS if c in table.column_names
               and (pa.types.is_integer(table.schema.field(c).type)
                    or pa.types.is_floating(table.schema.field(c).type))]
    if table.num_rows == 0 or not metrics:
        return {}
    keys = [c for c in ("run_id", "checkpoint", "status") if c in table.column_names]
    rows = _last_checkpoint_rows(table.select(keys + metrics))  # only what is summarized
    if "status" in rows.column_names:
        rows = rows.filter(pc.equal(rows.column("status"), "ok"))
    out = {}
    for col in metrics:
        vals = [v for v in rows.column(col).to_pylist() if v is not None and math.isfinite(v)]
        if vals:
            out[col] = {"min": min(vals), "mean": sum(vals) / len(vals), "max": max(vals)}
    return out


def _provenance(source: dict) -> list[str]:
    """Card lines saying which Hub repo a pulled zoo came from (none for a built zoo)."""
    if not source or not source.get("repo_id"):
        return []
    where = source.get("pulled_where")
    what = f"the rows where `{where}`" if where else "all of it"
    return [f"Pulled from the Hub dataset repo `{source['repo_id']}` at commit "
            f"`{source.get('commit', '?')}` (revision `{source.get('revision', 'main')}`): {what}.", ""]


def _generated(spec: dict) -> list[str]:
    """Card lines saying a zoo was sampled by a weight generator (``zoo generate``), and from what."""
    gen = spec.get("generated") if isinstance(spec, dict) else None
    if not isinstance(gen, dict):
        return []
    where = gen.get("where")
    return [f"**A generated zoo**: these networks were not trained; they were sampled by the weight "
            f"generator `{gen.get('method', '?')}` (hyperparameters `{gen.get('hparams', {})}`, seed "
            f"{gen.get('seed', '?')}) trained on the networks of zoo `{gen.get('source_zoo', '?')}` "
            f"(content sha256 `{gen.get('source_manifest_sha256', '?')}`)"
            + (f" where `{where}`" if where else "")
            + ", then evaluated on that zoo's dataset. Compare them with `zoo eval-gen`.", ""]


def column_sets(zoo: Zoo) -> dict[str, list[str]]:
    """The zoo's parts grouped by their column names, for the card's ``configs``: ``{config name:
    part paths}``; ``{"default": ["models/*.parquet"]}`` when every part has the same columns.

    🤗 ``datasets`` reads a config's files with one schema and refuses a part whose columns differ.
    Zoos built with ``families:`` before every part got the zoo's full column set have one column
    set per family; each becomes a config named after its families (``cnn``, ``resnet``, ...).
    """
    groups: dict[tuple[str, ...], list] = {}
    for f in zoo.manifest.part_files():
        names = tuple(sorted(pq.read_schema(safe_join(zoo.root, f.path, "part")).names))  # the footer only
        groups.setdefault(names, []).append(f)
    if len(groups) <= 1:
        return {"default": ["models/*.parquet"]}
    out: dict[str, list[str]] = {}
    for files in groups.values():
        families = sorted({zoo.architectures[f.arch_id].family for f in files if f.arch_id in zoo.architectures})
        base = "-".join(families) or "parts"
        name, i = base, 2
        while name in out or name == "default":
            name, i = f"{base}-{i}", i + 1
        out[name] = [f.path for f in files]
    return out


def _datasets_lines(target: str, configs: dict[str, list[str]]) -> list[str]:
    """The card's "with 🤗 datasets" lines: one call, or one per config with a note saying why."""
    if list(configs) == ["default"]:
        return ["The metadata with 🤗 datasets:", "", "```python", "from datasets import load_dataset",
                f'rows = load_dataset("{target}", split="train")', "```", ""]
    return ["The metadata with 🤗 datasets, one config per set of columns: this zoo's parts do not all "
            "have the same columns (e.g. a zoo built with `families:` by a weightzoo that wrote only "
            "each family's own columns), and `datasets` reads a config's files with one schema. "
            "weightzoo reads all the rows as one table either way, and building the spec again into "
            "a new directory writes every part with every column.", "", "```python",
            "from datasets import load_dataset",
            *(f'rows = load_dataset("{target}", "{name}", split="train")' for name in configs), "```", ""]


def render_card(root: str | os.PathLike, repo_id: str | None = None, manifest: Manifest | None = None) -> str:
    """The dataset card of the zoo at ``root`` (optionally naming its Hub ``repo_id``).

    Args:
        root: the zoo directory.
        repo_id: the Hub repo the card names in its loading examples (default: ``ORG/NAME``).
        manifest: the zoo's manifest (default: its ``zoo.json``); a writer passes the one it is
            about to write, so the card is written before the zoo is marked complete.
    """
    from catalog.zoo import Zoo

    zoo = Zoo(root)
    if manifest is not None:
        zoo.manifest = manifest
    m = zoo.manifest
    table = zoo.table
    configs = column_sets(zoo)
    header = {
        "pretty_name": m.name,
        "license": m.spec.get("license", "cc-by-4.0"),
        "tags": ["weight-space-learning", "model-zoo", "weightzoo"],
        "size_categories": [size_category(table.num_rows)],
        "configs": [{"config_name": name,
                     "data_files": [{"split": "train", "path": files[0] if len(files) == 1 else files}]}
                    for name, files in configs.items()],
    }
    counts = m.counts
    spec = m.spec
    lines = [
        "---",
        yaml.safe_dump(header, sort_keys=False).rstrip(),
        "---",
        "",
        f"# {m.name}",
        "",
        "A model zoo built with [weightzoo](https://pypi.org/project/weightzoo/): a population of "
        "trained neural networks stored as Parquet metadata (one row per model checkpoint) and "
        "safetensors weight shards.",
        "",
        *_provenance(m.source),
        *_generated(m.spec),
        "## Contents",
        "",
        f"- rows (model checkpoints): {counts.get('rows', 0)}",
        f"- training runs: {counts.get('runs', 0)}",
        f"- architectures: {len(m.architectures)}",
        f"- status: {counts.get('status_ok', 0)} ok, {counts.get('status_diverged', 0)} diverged",
    ]
    if spec:
        ds = spec.get("dataset", {})
        arch = spec.get("architecture", {})
        lines += ["", "## Build spec", "",
                  f"- dataset: `{ds.get('name', '?')}`",
                  (f"- architecture: `{arch.get('name', '?')}`" if "families" not in spec else
                   "- families: " + ", ".join(f"`{(f.get('architecture') or {}).get('name', '?')}`"
                                              for f in spec["families"])),
                  f"- task: `{spec.get('task', {}).get('name', 'classify')}`"]
        grid = spec.get("grid") or {}
        if grid:
            lines.append("- grid axes: " + ", ".join(f"`{k}` ({len(v)} values)" for k, v in grid.items()))
        rnd = spec.get("random") or {}
        if rnd:
            lines.append(f"- random axes: {rnd.get('samples', '?')} samples")
    lines += ["", "## Architectures", "", "| arch_id | architecture (its summary: layers or nodes, parameters) |",
              "| --- | --- |"]
    for arch_id, net in zoo.architectures.items():
        lines.append(f"| `{arch_id}` | {net.summary()} |")
    summary = metric_summary(table)
    if summary:
        lines += ["", f"## Metrics at {METRICS_OVER}", "",
                  "| metric | min | mean | max |", "| --- | --- | --- | --- |"]
        for k, v in summary.items():
            lines.append(f"| {k} | {v['min']:.4g} | {v['mean']:.4g} | {v['max']:.4g} |")
    target = repo_id or "ORG/NAME"
    lines += [
        "", "## Loading", "",
        "With weightzoo (`pip install weightzoo`), in Python:", "", "```python",
        "from catalog import open_zoo",
        f'zoo = open_zoo("hf://datasets/{target}")' if repo_id else f'zoo = open_zoo("{Path(root).name}")',
        'sel = zoo.select(where="status = \'ok\'")',
        *(["weights = sel.stacked()  # {param name: Tensor[N, *shape]}"] if len(m.architectures) <= 1 else
          ["for arch_id, rows in sel.by_arch().items():",
           "    weights = rows.stacked()  # {param name: Tensor[N, *shape]}"]),
        "```", "",
        "or as a local copy, whole or only the rows you need (and the weight shards that hold them):",
        "", "```bash", f"zoo pull {target} --out {m.name}",
        f'zoo pull {target} --where "status = \'ok\'" --out {m.name}-ok', "```", "",
        *_datasets_lines(target, configs),
        "## Files", "",
        "- `zoo.json`: the manifest: the build spec, every architecture (parameter names, shapes, "
        "dtypes, layers), counts, and each data file with its sha256",
        "- `models/part-*.parquet`: the metadata, one row per model checkpoint (hyperparameters, "
        "metrics, `status`, and where its weights are: `weights_shard`, `weights_row`, `sha256`)",
        "- `weights/<arch_id>/shard-*.safetensors`: the weights of one architecture, stacked: "
        "tensor `<param name>` has shape `[rows, *shape]`", "",
    ]
    zoo.close()
    return "\n".join(lines)
