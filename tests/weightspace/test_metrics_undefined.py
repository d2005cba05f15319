"""regression_metrics says why Kendall's tau or R² is undefined instead of a bare None."""

import torch

from weightspace.metrics import regression_metrics


def test_undefined_metrics_say_why():
    one = regression_metrics(torch.tensor([1.0]), torch.tensor([2.0]))
    assert one["r2"] is None and "one row" in one["undefined"]
    flat = regression_metrics(torch.tensor([1.0, 2.0]), torch.tensor([2.0, 2.0]))
    assert flat["kendall_tau"] is None and "targets are constant" in flat["undefined"]
    assert "undefined" not in regression_metrics(torch.tensor([1.0, 3.0]), torch.tensor([2.0, 3.0]))
