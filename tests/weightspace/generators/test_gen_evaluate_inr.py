"""eval-gen on INR zoos: networks are compared by the images they draw. PSNR between images
against a hand computation, copies at COPY_PSNR and distance 0, the noise baseline's max PSNR
falling as sigma grows, quality equal to the PSNR `zoo generate` stored, and the CLI/report."""

from __future__ import annotations

import json
import math

import pytest
import torch
from gen_helpers import TINY_INR
from zoo_helpers import run_cli

from catalog import open_zoo
from catalog.errors import WeightzooError
from weightspace.generators.evaluate import COPY_PSNR, FIGURE_NAME, evaluate_generated, max_psnr, psnr_matrix
from weightspace.generators.output import generate_zoo


def test_psnr_matrix_by_hand():
    # Images of 4 pixels. a0 vs b0: one pixel off by 0.1 -> MSE 0.01 / 4 = 0.0025 -> 10 log10(400)
    # = 26.0206 dB; a0 vs b1: all four off by 0.5 -> MSE 0.25 -> 10 log10(4) = 6.0206 dB;
    # a1 = b1 exactly -> COPY_PSNR.
    a = torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.5, 0.5, 0.5, 0.5]])
    b = torch.tensor([[0.1, 0.0, 0.0, 0.0], [0.5, 0.5, 0.5, 0.5]])
    p = psnr_matrix(a, b)
    assert p[0, 0].item() == pytest.approx(10 * math.log10(400))
    assert p[0, 1].item() == pytest.approx(10 * math.log10(4))
    assert p[1, 1].item() == pytest.approx(COPY_PSNR)
    values, which = max_psnr(a, b)
    assert which.tolist() == [0, 1] and values[1].item() == pytest.approx(COPY_PSNR)
    self_values, self_which = max_psnr(b, b, exclude_self=True)  # never itself
    assert self_which.tolist() == [1, 0] and self_values.max() < COPY_PSNR
    with pytest.raises(WeightzooError, match="one image size"):
        psnr_matrix(a, b[:, :3])


@pytest.fixture(scope="module")
def inr_zoo(zoo_factory):
    return zoo_factory(TINY_INR)


def test_copies_score_copy_psnr_and_quality_is_the_stored_psnr(inr_zoo, tmp_path):
    out = tmp_path / "copies"
    generate_zoo(inr_zoo, "noise", None, 6, out, hparams={"sigma": 0.0}, quiet=True)
    res = evaluate_generated(out, inr_zoo, out_dir=tmp_path / "ev", sigmas=(0.0, 0.05, 0.5))
    assert res.task == "inr" and res.measures == ("psnr", "max_psnr")
    assert res.per_model["max_psnr"] == [pytest.approx(COPY_PSNR)] * 6
    assert res.per_model["min_l2"] == [0.0] * 6
    stored = dict(zip(*(open_zoo(out).table.column(c).to_pylist() for c in ("model_id", "psnr"))))
    assert res.per_model["psnr"] == pytest.approx([stored[m] for m in res.per_model["model_id"]], rel=1e-4)
    sims = [res.methods[f"noise sigma={s:g}"]["max_psnr_mean"] for s in (0.0, 0.05, 0.5)]
    assert sims[0] == pytest.approx(COPY_PSNR) and sims[0] > sims[1] > sims[2]
    # The training INRs against each other (never themselves): other images or other seeds.
    assert len(res.train["self_max_psnr"]) == 12 and max(res.train["self_max_psnr"]) < 100
    report = json.loads(res.json_path.read_text())
    assert report["task"] == "inr" and "max_psnr" in report and "iou" not in report
    assert (tmp_path / "ev" / FIGURE_NAME).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_inr_cli_table_and_no_finetune(inr_zoo, tmp_path):
    out = tmp_path / "gen"
    generate_zoo(inr_zoo, "noise", None, 3, out, hparams={"sigma": 0.05}, quiet=True)
    result = run_cli("eval-gen", str(out), "--train", str(inr_zoo), "--out", str(tmp_path / "ev"), "-q",
                     "--sigmas", "0.05")
    assert result.exit_code == 0, result.output
    assert "psnr mean" in result.output and "max-PSNR" in result.output and "acc mean" not in result.output
    bad = run_cli("eval-gen", str(out), "--train", str(inr_zoo), "--out", str(tmp_path / "ev2"), "--finetune")
    assert bad.exit_code != 0 and "finetune=True (--finetune) retrains classifiers" in bad.output
    assert "Traceback" not in bad.output and not (tmp_path / "ev2").exists()
