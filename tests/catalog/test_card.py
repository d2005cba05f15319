"""catalog.card: the dataset card's YAML header and contents."""

from __future__ import annotations

from pathlib import Path

import yaml

from catalog.card import metric_summary, render_card, size_category
from catalog.zoo import open_zoo


def test_size_categories() -> None:
    assert size_category(0) == "n<1K"
    assert size_category(999) == "n<1K"
    assert size_category(1000) == "1K<n<10K"
    assert size_category(2_500_000) == "1M<n<10M"


def test_card_header_points_datasets_at_the_parquet_parts(multi_arch_dir: Path) -> None:
    text = render_card(multi_arch_dir, repo_id="org/wide")
    _, header, body = text.split("---", 2)
    meta = yaml.safe_load(header)
    assert meta["configs"][0]["data_files"] == [{"split": "train", "path": "models/*.parquet"}]
    assert meta["size_categories"] == ["n<1K"]
    assert "mlp 4-6-3, relu, 51 params" in body and "mlp 4-8-3, relu, 67 params" in body
    assert 'open_zoo("hf://datasets/org/wide")' in body and "by_arch()" in body


def test_metric_summary_uses_ok_rows_of_the_last_checkpoint(zoo_dir: Path) -> None:
    table = open_zoo(zoo_dir).table
    # Last checkpoint is 2; ok runs are those with r % 5 != 4; acc = 0.1 + 0.8 * ((7r + 6) % 11) / 10.
    accs = [round(0.1 + 0.8 * ((r * 7 + 6) % 11) / 10, 4) for r in range(12) if r % 5 != 4]
    got = metric_summary(table)["test_acc"]
    assert got["min"] == min(accs) and got["max"] == max(accs)
    assert abs(got["mean"] - sum(accs) / len(accs)) < 1e-12
