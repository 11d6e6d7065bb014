"""W. Pham's custom nnU-Net v2 normalisation schemes, reproduced for exact mode.

The nnU-Net v2 PVS models of W. Pham et al. (github.com/wpham17/nnUNet-Perivascular-Spaces, file
``nnUNetv2/preprocessing/normalization/default_normalization_schemes.py`` at commit ``d514866``)
name three classes of their own in ``plans.json``; their planner picks them from the channel name
(``t1_pvs_norm``, ``ahe``, ``nlmf``). Each runs, like every nnU-Net v2 scheme, on one channel of
the case cropped to its nonzero box, before resampling (:func:`~mednet_pvs.data.nnunet_preprocessing.preprocess`),
and ignores ``use_mask_for_norm``, the nonzero mask and the intensity properties:

- ``T1wPVSNormalization``: clip to the range of the nonzero voxels; rescale the 2nd-98th
  percentiles (of the whole crop, zeros included) to [0, 1] (scikit-image ``rescale_intensity``);
  dipy ``nlmeans`` (``sigma`` = half of dipy's ``estimate_sigma``, ``patch_radius=1``,
  ``block_radius=2``, ``rician=True``, over the voxels > 0); scikit-image ``equalize_adapthist``
  (CLAHE, default kernel and clip limit);
- ``AHENormalization``: zero outside a brain mask (Otsu threshold, dilated 5 times by scipy's
  ``binary_dilation``), then the same clip and rescale, then CLAHE (no denoising);
- ``NLMFNormalization``: the same Otsu mask, clip and rescale, then ``nlmeans`` (no CLAHE).

dipy 1.12 changed ``nlmeans``' default algorithm to a new "blockwise" one (which, measured with
dipy 1.12.1, also changes with the number of threads); their code predates it and calls
``nlmeans`` without ``method``, so here it runs dipy's ``method="classic"``: bit for bit the
``nlmeans`` of dipy <= 1.11 (measured), the one these models were made with.

The libraries (the ``nnunet`` extra: scikit-image, dipy) are imported when a scheme runs, never
at import time. Functions follow :data:`~mednet_pvs.data.nnunet_preprocessing.NORMALIZATIONS`'
signature ``(image, seg, use_mask, intensity_props) -> image``; ``image`` (float32, nnU-Net axes)
may be changed in place, as the original classes do.
"""
from __future__ import annotations

import sys
from typing import Any

import numpy as np

from mednet_pvs.errors import ConfigError, InputError

#: how to get the libraries these schemes need.
EXTRA_HINT = "pip install 'mednet-pvs[nnunet]'"

#: ``nlmeans`` parameters of all three schemes (``sigma``: half of ``estimate_sigma``'s estimate).
NLMEANS_KWARGS: dict[str, Any] = {"patch_radius": 1, "block_radius": 2, "rician": True}
#: ``binary_dilation`` iterations of the Otsu brain mask (AHE and NLMF schemes).
OTSU_DILATION = 5
#: percentiles rescaled to [0, 1].
PERCENTILES = (2, 98)


def _libraries(scheme: str) -> tuple[Any, Any, Any]:
    """scikit-image's ``exposure``, dipy's ``nlmeans`` and ``estimate_sigma``, or one line saying how to install them."""
    try:
        from dipy.denoise.nlmeans import nlmeans
        from dipy.denoise.noise_estimate import estimate_sigma
        from skimage import exposure
    except ImportError as e:
        raise ConfigError(f"normalisation scheme {scheme} needs scikit-image and dipy ({e.name} is missing): "
                          f"{EXTRA_HINT}") from None
    return exposure, nlmeans, estimate_sigma


def _clip_and_rescale(image: np.ndarray, scheme: str) -> tuple[np.ndarray, np.ndarray]:
    """Clip to the nonzero voxels' range, rescale the 2nd-98th percentiles to [0, 1]; and the mask ``> 0``.

    ``image`` is clipped in place; the mask is taken after clipping and before rescaling, as in the original.
    """
    from skimage import exposure

    nonzero = image[image != 0]
    if nonzero.size == 0:
        raise InputError(None, f"normalisation scheme {scheme}: the image is zero everywhere")
    low, high = np.min(nonzero), np.max(nonzero)
    image[image < low] = low
    image[image > high] = high
    p1, p2 = np.percentile(image, PERCENTILES)
    mask = image > 0
    return exposure.rescale_intensity(image, in_range=(p1, p2)), mask


def _denoise(image: np.ndarray, mask: np.ndarray, nlmeans: Any, estimate_sigma: Any) -> np.ndarray:
    """dipy's non-local means as dipy <= 1.11 ran it (``method="classic"`` from dipy 1.12 on).

    With torch loaded, dipy runs on torch's thread count (the classic result does not depend on
    it; measured), and torch's count is put back afterwards: dipy's OpenMP call leaves it at the
    number of cores otherwise (measured: 1 -> 2 on a 2-core machine, the network then 3-10x slower
    on a loaded one).
    """
    import inspect

    sigma = estimate_sigma(image)
    sigma = sigma / 2
    classic = {"method": "classic"} if "method" in inspect.signature(nlmeans).parameters else {}
    torch = sys.modules.get("torch")
    threads = torch.get_num_threads() if torch is not None else None
    try:
        return nlmeans(image, mask=mask, sigma=sigma, **NLMEANS_KWARGS, **classic, num_threads=threads)
    finally:
        if threads is not None:
            torch.set_num_threads(threads)


def _otsu_cleaned(image: np.ndarray) -> np.ndarray:
    """A copy of ``image``, zero outside its Otsu foreground dilated :data:`OTSU_DILATION` times."""
    from scipy.ndimage import binary_dilation
    from skimage.filters import threshold_otsu

    mask = binary_dilation(image > threshold_otsu(image), iterations=OTSU_DILATION)
    return np.where(mask, image, 0)


def t1w_pvs_normalization(image: np.ndarray, seg: np.ndarray, use_mask: bool, props: dict[str, float]) -> np.ndarray:
    """``T1wPVSNormalization``: clip, percentile rescale, non-local means, CLAHE. Returns float64 in [0, 1].

    Args:
        image: one channel, cropped, nnU-Net axes (float32; clipped in place).
        seg, use_mask, props: unused (the original class ignores them too).
    """
    exposure, nlmeans, estimate_sigma = _libraries("T1wPVSNormalization")
    image, mask = _clip_and_rescale(image, "T1wPVSNormalization")
    image = _denoise(image, mask, nlmeans, estimate_sigma)
    return exposure.equalize_adapthist(image)


def ahe_normalization(image: np.ndarray, seg: np.ndarray, use_mask: bool, props: dict[str, float]) -> np.ndarray:
    """``AHENormalization``: Otsu brain mask, clip, percentile rescale, CLAHE. Returns float64 in [0, 1]."""
    exposure, _, _ = _libraries("AHENormalization")
    image, _ = _clip_and_rescale(_otsu_cleaned(image), "AHENormalization")
    return exposure.equalize_adapthist(image)


def nlmf_normalization(image: np.ndarray, seg: np.ndarray, use_mask: bool, props: dict[str, float]) -> np.ndarray:
    """``NLMFNormalization``: Otsu brain mask, clip, percentile rescale, non-local means."""
    _, nlmeans, estimate_sigma = _libraries("NLMFNormalization")
    image, mask = _clip_and_rescale(_otsu_cleaned(image), "NLMFNormalization")
    return _denoise(image, mask, nlmeans, estimate_sigma)


#: the schemes by the class names that plans.json gives (added to ``NORMALIZATIONS``).
PHAM_NORMALIZATIONS = {
    "T1wPVSNormalization": t1w_pvs_normalization,
    "AHENormalization": ahe_normalization,
    "NLMFNormalization": nlmf_normalization,
}
