"""Classical PVS baseline: multi-scale Hessian vesselness (Frangi et al. 1998) inside the brain.

    >>> cfg = FrangiConfig.for_contrast("T2w")                  # bright tubes
    >>> cfg = fit_threshold(train_images, train_labels, train_masks, config=cfg).config
    >>> response, mask = FrangiSegmenter(cfg).predict(image, spacing, brainmask)

Response (:func:`frangi_response`), per scale ``sigma`` (mm) and voxel, with the Hessian
eigenvalues sorted by magnitude ``|l1| <= |l2| <= |l3|`` after flipping the image so that the
tubes are dark (``polarity="bright"`` flips; a dark tube has ``l2, l3 > 0`` across it)::

    Ra = l2 / l3,   Rb = |l1| / sqrt(l2 l3),   S = sqrt(l1^2 + l2^2 + l3^2)
    V  = (1 - exp(-Ra^2 / 2 alpha^2)) * exp(-Rb^2 / 2 beta^2) * (1 - exp(-S^2 / 2 gamma^2))
    V  = 0 where l2 <= 0 or l3 <= 0

and the response is the maximum of V over the scales, in [0, 1]; 0 outside the brain mask.

Conventions, compared with :func:`skimage.filters.frangi` (0.26), which this reproduces with
``scale_normalise=False`` and the same ``gamma`` (see ``benchmarks/bench_frangi.py``):

* **scales in mm**: ``sigma_vox = sigma_mm / spacing`` per axis, and the Hessian is taken in mm
  (``d2/dxi dxj`` divided by the two spacings), so anisotropic grids are handled.
* **scale normalisation**: ``scale_normalise=True`` (default) multiplies the Hessian by
  ``sigma_mm^2`` (Lindeberg's normalised derivatives, as in Frangi's paper and Kroon's reference
  implementation), so that thin and thick PVS compete fairly in the maximum over scales.
  skimage >= 0.20 does *not* normalise (its docstring says so only for ``sato``).
* **gamma** (``c`` in the paper): ``None`` means half the maximum Hessian norm ``S`` at the first
  scale, as skimage does -- but taken over the brain mask, where skimage takes the whole image.
* **Gaussian derivatives**: one pass of a sampled second-derivative-of-Gaussian kernel per axis
  (first-derivative kernels along two axes for the cross terms), normalised to be exact on
  polynomials (the 2nd-derivative kernel sums to 0 and gives 2 on ``t^2``). skimage applies two
  successive first-derivative filters of ``sigma/sqrt(2)``; in the continuum both are the second
  derivative at ``sigma``, and away from the image border they agree to float precision for
  ``sigma >= 1.5`` voxels. Below about 1 voxel skimage's ``sigma/sqrt(2)`` derivative kernel is
  undersampled (at ``sigma = 0.5`` voxel it is nearly zero), so the two differ there.
* **computed inside the brain only**: the filters run on the brain mask's bounding box (plus
  the kernel radius, so values inside are exactly those of the full image) and the eigenvalues
  and vesselness only at brain voxels, with a closed-form (trigonometric) eigen-solver on float32.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from scipy import ndimage as ndi

from mednet_pvs.config import Config, shown
from mednet_pvs.errors import ConfigError, InputError

Polarity = Literal["bright", "dark"]

#: PVS look bright on T2w, dark on T1w and FLAIR.
CONTRAST_POLARITY: dict[str, Polarity] = {"t2w": "bright", "t1w": "dark", "flair": "dark"}


@dataclass
class FrangiConfig(Config):
    """Parameters of the Frangi baseline, saved with a model like any config (``to_dict``).

    Attributes:
        sigmas_mm: Gaussian scales in mm (PVS are ~1-3 mm wide: 0.5-1.5 mm).
        alpha: plate-vs-line sensitivity (``Ra`` term).
        beta: blob-vs-line sensitivity (``Rb`` term).
        gamma: structureness scale (``S`` term); ``None`` = half the max Hessian norm in the brain
            at the first scale, per image.
        polarity: ``"bright"`` tubes (T2w) or ``"dark"`` tubes (T1w, FLAIR).
        threshold: response above which a voxel is PVS (fit with :func:`fit_threshold`).
        min_size_mm3: clusters smaller than this are removed from the mask.
        scale_normalise: multiply the Hessian by ``sigma_mm^2`` (False reproduces skimage).
        truncate: Gaussian kernel radius in standard deviations.
    """

    _what = "Frangi"

    sigmas_mm: tuple[float, ...] = (0.5, 1.0, 1.5)
    alpha: float = 0.5
    beta: float = 0.5
    gamma: float | None = None
    polarity: Polarity = "bright"
    threshold: float = 0.05
    min_size_mm3: float = 0.0
    scale_normalise: bool = True
    truncate: float = 4.0

    def __post_init__(self) -> None:
        self.sigmas_mm = tuple(float(s) for s in self.sigmas_mm)
        super().__post_init__()

    def validate(self) -> None:
        """Positive scales (mm), a known polarity, positive alpha/beta/gamma, a threshold in the
        response's [0, 1], minimum size >= 0 mm^3, truncation > 0 standard deviations."""
        if not self.sigmas_mm or not min(self.sigmas_mm) > 0:
            raise ConfigError(f"must be positive scales in mm, not {shown(self.sigmas_mm)}", field="sigmas_mm")
        if self.polarity not in ("bright", "dark"):
            raise ConfigError(f"must be 'bright' (T2w) or 'dark' (T1w, FLAIR), not {shown(self.polarity)}", field="polarity")
        for name in ("alpha", "beta", "gamma"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ConfigError(f"must be > 0, not {shown(value)}", field=name)
        if not 0.0 <= self.threshold <= 1.0:
            raise ConfigError(f"must be in [0, 1] (the response's range), not {shown(self.threshold)}", field="threshold")
        if not self.min_size_mm3 >= 0:
            raise ConfigError(f"must be >= 0 (mm^3), not {shown(self.min_size_mm3)}", field="min_size_mm3")
        if not self.truncate > 0:
            raise ConfigError(f"must be > 0 (standard deviations), not {shown(self.truncate)}", field="truncate")

    @classmethod
    def for_contrast(cls, contrast: str, **kwargs: Any) -> FrangiConfig:
        """A config with the polarity of a contrast (``"T2w"`` bright, ``"T1w"``/``"FLAIR"`` dark)."""
        try:
            pol = CONTRAST_POLARITY[contrast.lower()]
        except KeyError:
            raise ConfigError(f"unknown contrast {contrast!r}; one of T1w, T2w, FLAIR") from None
        return cls(polarity=pol, **kwargs)


# ------------------------------------------------------------------------------- Gaussian kernels


def _kernels(sigma: float, truncate: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Correlation weights for the 0th, 1st and 2nd Gaussian derivative at ``sigma`` (voxels).

    Normalised so that, on samples of ``1``, ``t`` and ``t^2``, they return exactly the value,
    first and second derivative (sum 1; zero-sum first/second-derivative kernels with the right
    moments), which keeps small scales unbiased where plain sampled kernels are not.
    """
    r = max(1, int(truncate * sigma + 0.5))
    t = np.arange(-r, r + 1, dtype=np.float64)
    g = np.exp(-0.5 * (t / sigma) ** 2)
    g0 = g / g.sum()
    g1 = t * g0  # correlation weights of d/dt (ascending t)
    g1 /= (g1 * t).sum()
    g2 = (t**2 / sigma**2 - 1.0) * g0
    g2 -= g0 * g2.sum()
    g2 *= 2.0 / (g2 * t**2).sum()
    return g0, g1, g2


def _hessian(
    image: np.ndarray, sigma_vox: Sequence[float], truncate: float, inside: np.ndarray
) -> dict[tuple[int, int], np.ndarray]:
    """The six Hessian elements (voxel units) at the ``inside`` voxels, by separable Gaussian derivatives.

    Passes are shared: 3 along axis 2, 6 along axis 1, 6 along axis 0 (15 one-dimensional
    filters instead of 18); each element is read at the brain voxels as soon as it is made, so at
    most ten volume-sized arrays live at once.

    Returns:
        ``{(i, j): (N,) float32}`` for ``i <= j``.
    """
    k = [_kernels(s, truncate) for s in sigma_vox]

    def f(x: np.ndarray, axis: int, order: int) -> np.ndarray:
        return ndi.correlate1d(x, k[axis][order], axis=axis, mode="reflect")

    z = [f(image, 2, o) for o in range(3)]  # d^o/dz^o
    zy = {(oz, oy): f(z[oz], 1, oy) for oz in range(3) for oy in range(3 - oz)}
    del z
    plan = {(0, 0): ((0, 0), 2), (0, 1): ((0, 1), 1), (0, 2): ((1, 0), 1), (1, 1): ((0, 2), 0), (1, 2): ((1, 1), 0), (2, 2): ((2, 0), 0)}
    return {ij: f(zy[src], 0, ox)[inside] for ij, (src, ox) in plan.items()}


# ------------------------------------------------------------------------------------ eigenvalues


def symmetric_eigvals(
    a11: np.ndarray, a12: np.ndarray, a13: np.ndarray, a22: np.ndarray, a23: np.ndarray, a33: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Eigenvalues of many symmetric 3x3 matrices in closed form (Smith 1961), vectorised.

    Args:
        a11..a33: (N,) upper-triangle elements (any float dtype; computed in that dtype).

    Returns:
        ``(e1, e2, e3)`` with ``e1 >= e2 >= e3``, each (N,).
    """
    q = (a11 + a22 + a33) / 3
    b11, b22, b33 = a11 - q, a22 - q, a33 - q
    p2 = b11 * b11 + b22 * b22 + b33 * b33 + 2 * (a12 * a12 + a13 * a13 + a23 * a23)
    p = np.sqrt(p2 / 6)
    det = b11 * (b22 * b33 - a23 * a23) - a12 * (a12 * b33 - a23 * a13) + a13 * (a12 * a23 - b22 * a13)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = det / (2 * p * p * p)
    r = np.clip(np.nan_to_num(r, nan=0.0, posinf=1.0, neginf=-1.0), -1, 1)
    phi = np.arccos(r) / 3
    two_p = 2 * p
    e1 = q + two_p * np.cos(phi)
    e3 = q + two_p * np.cos(phi + (2 * math.pi / 3))
    e2 = 3 * q - e1 - e3
    return e1, e2, e3


def _sort_by_magnitude(e1: np.ndarray, e2: np.ndarray, e3: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reorder three eigenvalue arrays so that ``|l1| <= |l2| <= |l3|`` (a 3-element sorting network)."""

    def swap(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s = np.abs(a) > np.abs(b)
        return np.where(s, b, a), np.where(s, a, b)

    e1, e2 = swap(e1, e2)
    e2, e3 = swap(e2, e3)
    e1, e2 = swap(e1, e2)
    return e1, e2, e3


# --------------------------------------------------------------------------------------- response


@dataclass
class FrangiResponse:
    """A response map with what was used to make it.

    Attributes:
        response: float32 (X, Y, Z) vesselness in [0, 1], 0 outside the brain mask.
        gamma: the structureness scale used (given, or chosen from the first scale).
        scale_mm: float32 (X, Y, Z) scale (mm) at which each voxel's response peaked (0 outside).
    """

    response: np.ndarray
    gamma: float
    scale_mm: np.ndarray = field(repr=False)


def _as_spacing(spacing: Any) -> tuple[float, float, float]:
    if spacing is None:
        return (1.0, 1.0, 1.0)
    s = tuple(float(v) for v in np.broadcast_to(np.asarray(spacing, dtype=float), (3,)))
    if min(s) <= 0:
        raise InputError(None, f"voxel spacing must be positive (mm), got {s}")
    return s  # type: ignore[return-value]


def frangi_response(
    image: np.ndarray,
    spacing: Any = None,
    brainmask: np.ndarray | None = None,
    config: FrangiConfig | None = None,
) -> FrangiResponse:
    """Multi-scale vesselness of a 3D image inside a brain mask (module docs give the formulas).

    Args:
        image: (X, Y, Z) intensities.
        spacing: voxel size in mm (3 numbers or one); ``None`` = 1 mm.
        brainmask: boolean (X, Y, Z); ``None`` = the whole image.
        config: parameters (default :class:`FrangiConfig`); its threshold is not used here.

    Returns:
        A :class:`FrangiResponse`.
    """
    cfg = config or FrangiConfig()
    img = np.asarray(image)
    if img.ndim != 3:
        raise InputError(None, f"a 3D image is needed, got shape {img.shape}")
    sp = _as_spacing(spacing)
    mask = np.ones(img.shape, bool) if brainmask is None else np.asarray(brainmask) > 0
    if mask.shape != img.shape:
        raise InputError(None, f"brain mask shape {mask.shape} differs from the image's {img.shape}")
    out = np.zeros(img.shape, np.float32)
    scale = np.zeros(img.shape, np.float32)
    if not mask.any():
        return FrangiResponse(out, float(cfg.gamma or 1.0), scale)
    # Bounding box of the brain plus the largest kernel radius per axis: values inside are exact.
    radius = [max(1, int(cfg.truncate * max(cfg.sigmas_mm) / s + 0.5)) for s in sp]
    nz = np.nonzero(mask)
    box = tuple(slice(max(0, int(a.min()) - r), min(n, int(a.max()) + r + 1)) for a, r, n in zip(nz, radius, img.shape))
    sub = np.asarray(img[box], dtype=np.float32)
    if cfg.polarity == "bright":
        sub = -sub
    inside = mask[box]
    best = np.zeros(int(inside.sum()), np.float32)
    best_scale = np.zeros_like(best)
    gamma = cfg.gamma
    a2, b2 = np.float32(2 * cfg.alpha**2), np.float32(2 * cfg.beta**2)
    for sigma in cfg.sigmas_mm:
        h = _hessian(sub, [sigma / s for s in sp], cfg.truncate, inside)
        norm = sigma**2 if cfg.scale_normalise else 1.0
        el = {ij: v * np.float32(norm / (sp[ij[0]] * sp[ij[1]])) for ij, v in h.items()}
        del h
        l1, l2, l3 = _sort_by_magnitude(*symmetric_eigvals(el[0, 0], el[0, 1], el[0, 2], el[1, 1], el[1, 2], el[2, 2]))
        s2 = l1 * l1 + l2 * l2 + l3 * l3
        if gamma is None:
            gamma = float(np.sqrt(s2.max())) / 2 or 1.0
        ok = (l2 > 0) & (l3 > 0)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            ra2 = np.where(ok, (l2 / l3) ** 2, 0)
            rb2 = np.where(ok, l1 * l1 / (l2 * l3), np.inf)
        v = (1 - np.exp(-ra2 / a2)) * np.exp(-rb2 / b2) * (1 - np.exp(-s2 / np.float32(2 * gamma**2)))
        v = np.where(ok, v, 0).astype(np.float32)
        better = v > best
        best = np.where(better, v, best)
        best_scale = np.where(better, np.float32(sigma), best_scale)
    out[box][inside] = best
    scale[box][inside] = best_scale
    return FrangiResponse(out, float(gamma), scale)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------- segmentation


class FrangiSegmenter:
    """Frangi vesselness + threshold + minimum cluster size: a model with no weights.

    Args:
        config: :class:`FrangiConfig` (its ``threshold`` usually from :func:`fit_threshold`).
    """

    name = "frangi"

    def __init__(self, config: FrangiConfig | None = None) -> None:
        self.config = config or FrangiConfig()

    def predict(
        self, image: np.ndarray, spacing: Any = None, brainmask: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Segment PVS in one image.

        Args:
            image: (X, Y, Z) intensities.
            spacing: voxel size (mm); ``None`` = 1 mm.
            brainmask: boolean (X, Y, Z) brain mask; ``None`` = whole image.

        Returns:
            ``(response, mask)``: float32 (X, Y, Z) response in [0, 1] (probability-like, not
            calibrated) and the boolean mask ``response > threshold`` without clusters smaller
            than ``min_size_mm3``.
        """
        from mednet_pvs.analysis.clusters import remove_small_clusters

        sp = _as_spacing(spacing)
        r = frangi_response(image, sp, brainmask, self.config).response
        mask = r > self.config.threshold
        if self.config.min_size_mm3 > 0:
            mask = remove_small_clusters(mask, sp, self.config.min_size_mm3)
        return r, mask


@dataclass
class ThresholdFit:
    """Result of :func:`fit_threshold`.

    Attributes:
        config: the input config with the best ``threshold``.
        thresholds: (T,) thresholds tried.
        mean_dice: (T,) mean voxel Dice over the cases at each threshold (NaN cases left out).
        dice: (n_cases, T) Dice of each case at each threshold.
    """

    config: FrangiConfig
    thresholds: np.ndarray
    mean_dice: np.ndarray
    dice: np.ndarray = field(repr=False)

    @property
    def best_dice(self) -> float:
        return float(np.nanmax(self.mean_dice))


#: Default threshold grid: log-spaced at the low end (responses of faint PVS are small), linear above.
DEFAULT_THRESHOLDS = np.unique(np.round(np.concatenate([np.geomspace(1e-4, 0.05, 40), np.linspace(0.05, 0.95, 91)]), 6))


def _dice_curve(response: np.ndarray, label: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Dice of ``response > t`` against ``label`` for every ``t`` at once (one sort)."""
    r = response.ravel()
    y = label.ravel() > 0
    n_ref = int(y.sum())
    order = np.argsort(r, kind="stable")
    rs, ys = r[order], y[order]
    cum_y = np.concatenate([[0], np.cumsum(ys)])  # label voxels among the k smallest responses
    k = np.searchsorted(rs, thresholds, side="right")  # voxels with response <= t
    n_pred = r.size - k
    tp = n_ref - cum_y[k]
    den = n_pred + n_ref
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, 2.0 * tp / den, np.nan)


def fit_threshold(
    images: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    masks: Sequence[np.ndarray | None] | None = None,
    *,
    spacings: Sequence[Any] | None = None,
    config: FrangiConfig | None = None,
    thresholds: Sequence[float] | None = None,
) -> ThresholdFit:
    """Choose the response threshold that maximises the mean voxel Dice over training cases.

    The response is computed once per case; Dice for every threshold comes from one sort of the
    response (no re-thresholding loop). Cluster-size filtering is not applied while fitting.

    Args:
        images: (X, Y, Z) training images.
        labels: matching binary PVS masks.
        masks: matching brain masks (or ``None`` entries / ``None`` for whole images).
        spacings: voxel sizes (mm) per case; ``None`` = 1 mm.
        config: parameters other than the threshold (default :class:`FrangiConfig`).
        thresholds: candidate thresholds in [0, 1] (default :data:`DEFAULT_THRESHOLDS`).

    Returns:
        A :class:`ThresholdFit`; ``.config`` is ``config`` with the best threshold.
    """
    cfg = config or FrangiConfig()
    n = len(images)
    if n == 0 or len(labels) != n or (masks is not None and len(masks) != n):
        raise InputError(None, f"fit_threshold needs as many labels (and masks) as images: {n} images, {len(labels)} labels")
    t = np.asarray(DEFAULT_THRESHOLDS if thresholds is None else thresholds, dtype=np.float64)
    dice = np.empty((n, t.size))
    for i in range(n):
        if np.shape(labels[i]) != np.shape(images[i]):
            raise InputError(None, f"case {i}: label shape {np.shape(labels[i])} differs from the image's {np.shape(images[i])}")
        m = None if masks is None else masks[i]
        sp = None if spacings is None else spacings[i]
        resp = frangi_response(images[i], sp, m, cfg).response
        dice[i] = _dice_curve(resp, np.asarray(labels[i]), t)
    valid = np.isfinite(dice)
    counts = valid.sum(axis=0)
    if not counts.any():
        raise InputError(None, "no training case has PVS voxels in its label: the threshold cannot be fitted")
    mean = np.where(counts > 0, np.where(valid, dice, 0.0).sum(axis=0) / np.maximum(counts, 1), np.nan)
    best = int(np.nanargmax(mean))
    fitted = FrangiConfig.from_dict({**cfg.to_dict(), "threshold": float(t[best])})
    return ThresholdFit(config=fitted, thresholds=t, mean_dice=mean, dice=dice)
