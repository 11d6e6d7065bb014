"""show(): one call from a Prediction, a phantom or files; importing the package stays light."""
from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
from _viz_helpers import image_axes, pixels

from mednet_pvs.errors import ConfigError, InputError
from mednet_pvs.io import load_image
from mednet_pvs.viz import show, show_cluster_gallery, show_mip, show_mosaic, show_slices


def _prediction(img, mask, aff):
    from mednet_pvs.inference import Prediction

    probs = np.where(mask > 0, 0.8, 0.01).astype(np.float32)
    return Prediction(probabilities=probs, mask=mask, scan=load_image((img, aff))), probs


def test_show_a_prediction(toy, tmp_path):
    img, mask, aff = toy
    pred, probs = _prediction(img, mask, aff)
    fig = show(pred, save=tmp_path / "p.png")
    assert len(image_axes(fig)) == 6 and (tmp_path / "p.png").is_file()  # mask row + probability row
    assert np.array_equal(pixels(fig), pixels(show_slices(img, mask, aff, probs=probs)))
    assert np.array_equal(pixels(show(pred, kind="mip")), pixels(show_mip(probs, aff, image=img)))
    assert np.array_equal(pixels(show(pred, kind="mosaic", n=4)), pixels(show_mosaic(img, mask, aff, probs=probs, n=4)))
    gallery = show(pred, kind="gallery", by="uncertainty", n=2)
    assert np.array_equal(pixels(gallery), pixels(show_cluster_gallery(img, mask, aff, probs=probs, by="uncertainty", n=2)))


def test_show_a_phantom_or_arrays(toy):
    img, mask, aff = toy
    phantom = SimpleNamespace(image=img, label=mask, affine=aff)
    ref = pixels(show_slices(img, mask, aff, radiological=True))
    assert np.array_equal(pixels(show(phantom, radiological=True)), ref)
    assert np.array_equal(pixels(show(img, mask, aff, radiological=True)), ref)
    assert len(image_axes(show(img, None, aff))) == 3
    with pytest.raises(ConfigError, match="unknown kind 'volume'"):
        show(phantom, kind="volume")
    with pytest.raises(InputError, match="a MIP needs a probability map or a mask"):
        show(img, None, aff, kind="mip")


def test_import_is_light():
    code = ("import sys, mednet_pvs.viz; bad = [m for m in ('matplotlib', 'pandas', 'torch') if m in sys.modules];"
            " assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
