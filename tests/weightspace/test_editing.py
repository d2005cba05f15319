import numpy as np
import pytest
import torch
from scipy.ndimage import grey_dilation
from ws_helpers import random_params, siren_spec

from catalog.coordinates import image_coordinates
from catalog.errors import WeightzooError
from weightspace.editing import (
    dilate,
    evaluate_editor,
    fit_editor,
    render_inr,
)


def test_dilate_is_a_grey_dilation():
    img = torch.rand(2, 9, 7, generator=torch.Generator().manual_seed(0))
    ref = np.stack([grey_dilation(i.numpy(), size=(3, 3), mode="constant", cval=-np.inf) for i in img])
    assert torch.equal(dilate(img), torch.from_numpy(ref))
    with pytest.raises(WeightzooError, match="odd"):
        dilate(img, 2)


def test_render_matches_the_module():
    from catalog.network import build_module

    spec = siren_spec()
    params = random_params(spec, 2)
    img = render_inr(spec, params)
    assert img.shape == (2, 8, 8)
    net = build_module(spec, {k: v[1] for k, v in params.items()})
    with torch.no_grad():
        ref = net(image_coordinates(8, 8)).reshape(8, 8)
    torch.testing.assert_close(img[1], ref)


@pytest.mark.parametrize("name", ["dws", "gmn"])
def test_editor_trains_and_is_identity_at_zero_scale(name):
    spec = siren_spec(hidden=4, depth=1)
    train, test = random_params(spec, 8, seed=0), random_params(spec, 2, seed=1)
    editor, history = fit_editor(name, spec, train, test, epochs=1, batch_size=8, progress=False,
                                 hparams={"hidden": 4, "n_layers": 1})
    assert len(history) == 1 and "val_mse" in history[0]
    out = editor.edit(test)
    assert {k: v.shape for k, v in out.items()} == {k: v.shape for k, v in test.items()}
    assert set(evaluate_editor(editor, spec, test)) == {"mse", "identity_mse", "n"}
    # with the (ReZero) edit scale at 0 the editor is the identity map: exactly the baseline
    torch.nn.init.zeros_(editor.net.edit_scale)
    same = evaluate_editor(editor, spec, test)
    assert same["mse"] == pytest.approx(same["identity_mse"], rel=1e-5)


def test_probe_editor_reads_raw_networks():
    spec = siren_spec(hidden=4, depth=1)
    train = {k: v * 2 + 1 for k, v in random_params(spec, 8, seed=0).items()}
    editor, _ = fit_editor("gmn", spec, train, None, epochs=1, batch_size=8, progress=False,
                           hparams={"hidden": 4, "n_layers": 1, "probes": 3})
    assert editor.net.probe.normalizer is editor.normalizer
    assert {k: v.shape for k, v in editor.edit(train).items()} == {k: v.shape for k, v in train.items()}


def test_editing_needs_weight_output():
    spec = siren_spec()
    with pytest.raises(WeightzooError, match="dws' or 'gmn"):
        fit_editor("statnn", spec, random_params(spec, 4), progress=False)
