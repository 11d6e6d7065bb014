"""Classical PVS baseline: multi-scale Hessian vesselness (Frangi et al. 1998) inside the brain.

    >>> cfg = FrangiConfig.for_contrast("T2w")                  # bright tubes
    >>> cfg = fit_threshold(train_images, train_labels, train_masks, config=cfg).config
    >>> cfg = fit_frangi_grid(train_images, train_labels, train_masks, config=cfg).config  # + scales, erosion
    >>> response, mask = FrangiSegmenter(cfg).predict(image, spacing, brainmask)

Response (:func:`frangi_response`), per scale ``sigma`` (mm) and voxel, with the Hessian
eigenvalues sorted by magnitude ``|l1| <= |l2| <= |l3|`` (a dark tube has ``l2, l3 > 0`` across
it, a bright one ``l2, l3 < 0``)::

    Ra = l2 / l3,   Rb = |l1| / sqrt(l2 l3),   S = sqrt(l1^2 + l2^2 + l3^2)
    V  = (1 - exp(-Ra^2 / 2 alpha^2)) * exp(-Rb^2 / 2 beta^2) * (1 - exp(-S^2 / 2 gamma^2))
    V  = 0 unless l2 and l3 have the polarity's sign (> 0 for "dark", < 0 for "bright")

and the response is the maximum of V over the scales, in [0, 1]; 0 outside the brain mask and
within ``mask_erosion_mm`` of its edge (the cortical ribbon and sulcal CSF answer like tubes there).

What matters, measured on the project's phantoms (``benchmarks/results/frangi_fit_cpu2.txt``): the
mask erosion (1 mm MNI T2w phantoms, voxel Dice 0.02 without, 0.59 with 3 mm), then the scales'
normalisation; the scales themselves little on these phantoms.
:func:`fit_frangi_grid` fits them with the threshold; :func:`fit_threshold` fits the threshold only.

Conventions, compared with :func:`skimage.filters.frangi` (0.26), which this reproduces with
``scale_normalise=False``, ``mask_erosion_mm=0`` and the same ``gamma`` (``benchmarks/bench_frangi.py``):

* **scales in mm**: ``sigma_vox = sigma_mm / spacing`` per axis, and the Hessian is taken in mm
  (``d2/dxi dxj`` divided by the two spacings), so anisotropic grids are handled.
* **scale normalisation**: ``scale_normalise=True`` multiplies the Hessian by ``sigma_mm^2``
  (Lindeberg's normalised derivatives, as in Frangi's paper and Kroon's reference implementation),
  so that thin and thick tubes compete fairly in the maximum over scales. skimage >= 0.20 does
  *not* normalise (its docstring says so only for ``sato``), and neither does the default here
  (``False``): on the project's phantoms the unnormalised response, where the smallest scale
  dominates, scored better (1 mm MNI phantoms, 3 mm erosion: voxel Dice T2w 0.59 vs 0.31, T1w
  0.65 vs 0.33).
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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from scipy import ndimage as ndi

from mednet_pvs.config import Config, shown
from mednet_pvs.errors import ConfigError, InputError

Polarity = Literal["bright", "dark"]

#: PVS look bright on T2w and PD (they hold CSF-like fluid), dark on T1w and FLAIR.
CONTRAST_POLARITY: dict[str, Polarity] = {"t2w": "bright", "t1w": "dark", "flair": "dark", "pd": "bright"}


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
        scale_normalise: multiply the Hessian by ``sigma_mm^2`` (False, the default, as skimage).
        truncate: Gaussian kernel radius in standard deviations.
        mask_erosion_mm: the response is kept only deeper than this in the brain mask (without a
            mask: in the image's non-zero voxels), which drops the cortical ribbon, sulcal CSF and
            the mask's edge. Bundles saved before this field existed load with 0 (their threshold
            was fitted without it).
    """

    _what = "Frangi"

    sigmas_mm: tuple[float, ...] = (0.5, 1.0, 1.5)
    alpha: float = 0.5
    beta: float = 0.5
    gamma: float | None = None
    polarity: Polarity = "bright"
    threshold: float = 0.05
    min_size_mm3: float = 0.0
    scale_normalise: bool = False
    truncate: float = 4.0
    mask_erosion_mm: float = 3.0

    def __post_init__(self) -> None:
        self.sigmas_mm = tuple(float(s) for s in self.sigmas_mm)
        super().__post_init__()

    def validate(self) -> None:
        """Positive scales (mm), a known polarity, positive alpha/beta/gamma, a threshold in the
        response's [0, 1], minimum size >= 0 mm^3, truncation > 0 standard deviations, mask erosion >= 0 mm."""
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
        if not (math.isfinite(self.mask_erosion_mm) and self.mask_erosion_mm >= 0):
            raise ConfigError(f"must be >= 0 (mm), not {shown(self.mask_erosion_mm)}", field="mask_erosion_mm")

    @classmethod
    def for_contrast(cls, contrast: str, **kwargs: Any) -> FrangiConfig:
        """A config with the polarity of a contrast (``"T2w"``/``"PD"`` bright, ``"T1w"``/``"FLAIR"`` dark)."""
        try:
            pol = CONTRAST_POLARITY[contrast.lower()]
        except KeyError:
            raise ConfigError(f"unknown contrast {contrast!r}; one of T1w, T2w, FLAIR, PD") from None
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
        response: float32 (X, Y, Z) vesselness in [0, 1], 0 outside the (eroded) brain mask.
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


def depth_mm(region: np.ndarray, spacing: Any = None) -> np.ndarray:
    """Distance (mm) from each voxel of ``region`` to the nearest voxel outside it; 0 outside.

    Outside the image counts as outside the region. ``depth_mm(m, sp) > e`` is ``m`` eroded by a
    ball of ``e`` mm (a voxel on the region's edge has depth one voxel spacing).

    Args:
        region: boolean (X, Y, Z).
        spacing: voxel size in mm (3 numbers or one); ``None`` = 1 mm.

    Returns:
        float32 (X, Y, Z).
    """
    region = np.asarray(region) > 0
    out = np.zeros(region.shape, np.float32)
    if region.any():
        nz = np.nonzero(region)
        box = tuple(slice(int(a.min()), int(a.max()) + 1) for a in nz)
        d = ndi.distance_transform_edt(np.pad(region[box], 1), sampling=_as_spacing(spacing))
        out[box] = d[1:-1, 1:-1, 1:-1]
    return out


@dataclass
class _Scale:
    """One scale's vesselness ingredients at the brain voxels, each (N,).

    Attributes:
        shape: the ``Ra`` and ``Rb`` factors, ``(1 - exp(-Ra^2/2 alpha^2)) exp(-Rb^2/2 beta^2)``
            (unchanged by scale normalisation and by flipping the image).
        sign: int8, +1 where ``l2, l3 > 0`` (a dark tube), -1 where ``l2, l3 < 0`` (a bright one), else 0.
        s2: ``S^2`` of the Hessian in mm (not scale-normalised; normalised it is ``s2 * sigma^4``).
    """

    shape: np.ndarray
    sign: np.ndarray
    s2: np.ndarray


class _Brain:
    """An image cut to its brain mask's bounding box (plus the largest kernel radius, so values
    inside are exactly those of the whole image), with the per-scale terms at the brain voxels.

    Args:
        image: (X, Y, Z) intensities.
        spacing: voxel size (mm) or ``None`` (1 mm).
        brainmask: boolean (X, Y, Z) or ``None`` (the whole image).
        config: alpha, beta and truncate are used (and the largest of its scales unless ``max_sigma_mm``).
        max_sigma_mm: the largest scale that will be asked for.
        cache: keep each scale's terms (a fit asks for the same scale in several scale sets).
    """

    def __init__(self, image: np.ndarray, spacing: Any, brainmask: np.ndarray | None, config: FrangiConfig,
                 *, max_sigma_mm: float | None = None, cache: bool = False) -> None:
        img = np.asarray(image)
        if img.ndim != 3:
            raise InputError(None, f"a 3D image is needed, got shape {img.shape}")
        self.image = img
        self.spacing = sp = _as_spacing(spacing)
        self.has_mask = brainmask is not None
        self.mask = np.ones(img.shape, bool) if brainmask is None else np.asarray(brainmask) > 0
        if self.mask.shape != img.shape:
            raise InputError(None, f"brain mask shape {self.mask.shape} differs from the image's {img.shape}")
        self.config = config
        self.n = int(self.mask.sum())
        self._cache: dict[float, _Scale] | None = {} if cache else None
        self._depth: np.ndarray | None = None
        if self.n == 0:
            return
        sigma = max(config.sigmas_mm) if max_sigma_mm is None else max_sigma_mm
        radius = [max(1, int(config.truncate * sigma / s + 0.5)) for s in sp]
        nz = np.nonzero(self.mask)
        self.box = tuple(slice(max(0, int(a.min()) - r), min(n, int(a.max()) + r + 1)) for a, r, n in zip(nz, radius, img.shape))
        self.sub = np.asarray(img[self.box], dtype=np.float32)
        self.inside = self.mask[self.box]

    def scale(self, sigma: float) -> _Scale:
        """The terms of scale ``sigma`` (mm) at the brain voxels (module docs give the formulas)."""
        if self._cache is not None and sigma in self._cache:
            return self._cache[sigma]
        cfg, sp = self.config, self.spacing
        h = _hessian(self.sub, [sigma / s for s in sp], cfg.truncate, self.inside)
        el = {ij: v * np.float32(1.0 / (sp[ij[0]] * sp[ij[1]])) for ij, v in h.items()}
        del h
        l1, l2, l3 = _sort_by_magnitude(*symmetric_eigvals(el[0, 0], el[0, 1], el[0, 2], el[1, 1], el[1, 2], el[2, 2]))
        del el
        sign = ((l2 > 0) & (l3 > 0)).astype(np.int8) - ((l2 < 0) & (l3 < 0)).astype(np.int8)
        a2, b2 = np.float32(2 * cfg.alpha**2), np.float32(2 * cfg.beta**2)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            shape = (1 - np.exp(-((l2 / l3) ** 2) / a2)) * np.exp(-(l1 * l1 / (l2 * l3)) / b2)
        out = _Scale(np.where(sign != 0, shape, 0).astype(np.float32), sign, l1 * l1 + l2 * l2 + l3 * l3)
        if self._cache is not None:
            self._cache[sigma] = out
        return out

    def depth(self) -> np.ndarray:
        """(N,) depth (mm, :func:`depth_mm`) of each brain voxel in the brain mask, or without a
        mask in the image's foreground (its non-zero voxels: a skull-stripped scan's brain)."""
        if self._depth is None:
            region = self.mask if self.has_mask else self.image != 0
            self._depth = depth_mm(region, self.spacing)[self.box][self.inside]
        return self._depth

    def vesselness(self, sigmas_mm: Sequence[float], polarity: str, scale_normalise: bool, gamma: float | None) -> tuple[np.ndarray, np.ndarray, float]:
        """``(V, scale, gamma)``: (N,) maximum over the scales of the vesselness and the scale (mm)
        where it peaked, and the gamma used (``None``: half the largest ``S`` at the first scale)."""
        want = 1 if polarity == "dark" else -1
        best = np.zeros(self.n, np.float32)
        best_scale = np.zeros_like(best)
        for sigma in sigmas_mm:
            t = self.scale(sigma)
            s2 = t.s2 * np.float32(sigma**4) if scale_normalise else t.s2
            if gamma is None:
                gamma = float(np.sqrt(s2.max())) / 2 or 1.0
            v = np.where(t.sign == want, t.shape * (1 - np.exp(-s2 / np.float32(2 * gamma**2))), 0).astype(np.float32)
            better = v > best
            best = np.where(better, v, best)
            best_scale = np.where(better, np.float32(sigma), best_scale)
        return best, best_scale, float(gamma)  # type: ignore[arg-type]

    def paint(self, values: np.ndarray) -> np.ndarray:
        """(X, Y, Z) float32: ``values`` (N,) at the brain voxels, 0 elsewhere."""
        out = np.zeros(self.mask.shape, np.float32)
        if self.n:
            out[self.box][self.inside] = values
        return out


def frangi_response(
    image: np.ndarray,
    spacing: Any = None,
    brainmask: np.ndarray | None = None,
    config: FrangiConfig | None = None,
) -> FrangiResponse:
    """Multi-scale vesselness of a 3D image inside a brain mask (module docs give the formulas).

    The response is computed in the whole brain mask (``gamma=None`` is taken there), then set to 0
    within ``config.mask_erosion_mm`` of the mask's edge (without a mask: of the image's non-zero
    voxels), where the cortical ribbon, sulcal CSF and the mask's own edge answer like tubes.

    Args:
        image: (X, Y, Z) intensities.
        spacing: voxel size in mm (3 numbers or one); ``None`` = 1 mm.
        brainmask: boolean (X, Y, Z); ``None`` = the whole image.
        config: parameters (default :class:`FrangiConfig`); its threshold is not used here.

    Returns:
        A :class:`FrangiResponse`.
    """
    cfg = config or FrangiConfig()
    brain = _Brain(image, spacing, brainmask, cfg)
    if brain.n == 0:
        return FrangiResponse(brain.paint(np.zeros(0)), float(cfg.gamma or 1.0), brain.paint(np.zeros(0)))
    v, scale, gamma = brain.vesselness(cfg.sigmas_mm, cfg.polarity, cfg.scale_normalise, cfg.gamma)
    if cfg.mask_erosion_mm > 0:
        cut = brain.depth() <= cfg.mask_erosion_mm
        v[cut] = 0
        scale[cut] = 0
    return FrangiResponse(brain.paint(v), gamma, brain.paint(scale))


# ---------------------------------------------------------------------------------- segmentation


class FrangiSegmenter:
    """Frangi vesselness + threshold + minimum cluster size: a model with no weights.

    Args:
        config: :class:`FrangiConfig` (its settings usually from :func:`fit_frangi_grid`).
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


# ------------------------------------------------------------------------------------------ fitting

#: Default threshold grid: log-spaced at the low end (responses of faint PVS are small), linear above.
DEFAULT_THRESHOLDS = np.unique(np.round(np.concatenate([np.geomspace(1e-4, 0.05, 40), np.linspace(0.05, 0.95, 91)]), 6))

#: Scale sets (mm) :func:`fit_frangi_grid` tries by default.
DEFAULT_SCALE_SETS: tuple[tuple[float, ...], ...] = ((0.5, 1.0, 1.5), (0.5, 1.0), (0.75, 1.25), (1.0, 1.5, 2.0))

#: Brain mask erosions (mm) :func:`fit_frangi_grid` tries by default.
DEFAULT_EROSIONS_MM: tuple[float, ...] = (0.0, 1.0, 2.0, 3.0, 4.0, 5.0)

#: The settings :func:`fit_frangi_grid` varies (each a :class:`FrangiConfig` field).
GRID_FIELDS = ("sigmas_mm", "scale_normalise", "polarity", "mask_erosion_mm")


def _dice_curves(
    values: np.ndarray, labels: np.ndarray, n_ref: int, keeps: Sequence[np.ndarray | None], thresholds: np.ndarray
) -> np.ndarray:
    """Dice of ``(values > t) & keep`` against the reference for every ``t`` and ``keep`` (one sort).

    Args:
        values: (N,) responses (>= 0) at the voxels that can be predicted.
        labels: (N,) boolean reference at those voxels.
        n_ref: reference voxels in all (those outside the N voxels count as missed).
        keeps: (N,) boolean masks of the voxels kept (``None``: all).
        thresholds: (T,) thresholds >= 0.

    Returns:
        (len(keeps), T) Dice; NaN where nothing is predicted and the reference is empty.
    """
    pos = values > 0  # a response of 0 is below every threshold >= 0
    v, y = values[pos], labels[pos]
    order = np.argsort(v, kind="stable")
    vs, ys = v[order], y[order]
    k = np.searchsorted(vs, thresholds, side="right")  # voxels with response <= t
    out = np.empty((len(keeps), thresholds.size))
    for j, keep in enumerate(keeps):
        ks = np.ones(vs.size, bool) if keep is None else keep[pos][order]
        cum_pred = np.concatenate([[0], np.cumsum(ks)])
        cum_tp = np.concatenate([[0], np.cumsum(ks & ys)])
        n_pred = cum_pred[-1] - cum_pred[k]
        tp = cum_tp[-1] - cum_tp[k]
        den = n_pred + n_ref
        with np.errstate(invalid="ignore", divide="ignore"):
            out[j] = np.where(den > 0, 2.0 * tp / den, np.nan)
    return out


def _dice_curve(response: np.ndarray, label: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Dice of ``response > t`` against ``label`` for every ``t`` at once (one sort)."""
    y = np.asarray(label).ravel() > 0
    return _dice_curves(np.asarray(response).ravel(), y, int(y.sum()), [None], np.asarray(thresholds, dtype=np.float64))[0]


def _candidates(base: FrangiConfig, scale_sets: Sequence[Sequence[float]], scale_normalise: Sequence[bool],
                polarities: Sequence[str], erosions_mm: Sequence[float]) -> list[FrangiConfig]:
    """Every combination as a validated config (a bad value raises a ConfigError naming its field)."""
    axes = {"sigmas_mm": [tuple(float(s) for s in ss) for ss in scale_sets], "scale_normalise": list(scale_normalise),
            "polarity": list(polarities), "mask_erosion_mm": [float(e) for e in erosions_mm]}
    for name, values in axes.items():
        if not values:
            raise ConfigError("needs at least one value to try", field=name)
    return [base.replace(sigmas_mm=s, scale_normalise=bool(n), polarity=p, mask_erosion_mm=e)
            for s in axes["sigmas_mm"] for n in axes["scale_normalise"] for p in axes["polarity"] for e in axes["mask_erosion_mm"]]


def _grid_dice(
    images: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    masks: Sequence[np.ndarray | None] | None,
    spacings: Sequence[Any] | None,
    candidates: Sequence[FrangiConfig],
    thresholds: np.ndarray,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """(n_cases, C, T) Dice of every candidate config at every threshold.

    Per case, each scale's Hessian is computed once (a scale shared by several scale sets, by both
    polarities and with or without normalisation is reused), each (scales, normalisation, polarity)
    response is sorted once, and each erosion only masks it.
    """
    n = len(images)
    if n == 0 or len(labels) != n or (masks is not None and len(masks) != n) or (spacings is not None and len(spacings) != n):
        raise InputError(None, f"the Frangi fit needs as many labels, masks and spacings as images: {n} images, {len(labels)} labels")
    if thresholds.ndim != 1 or thresholds.size == 0 or not (np.all(thresholds >= 0) and np.all(thresholds <= 1)):
        raise ConfigError(f"must be values in [0, 1] (the response's range), not {shown(thresholds.tolist())}", field="thresholds")
    groups: dict[tuple[Any, ...], list[int]] = {}
    for c, cfg in enumerate(candidates):
        groups.setdefault((cfg.sigmas_mm, cfg.scale_normalise, cfg.polarity), []).append(c)
    base = candidates[0]
    max_sigma = max(max(c.sigmas_mm) for c in candidates)
    dice = np.full((n, len(candidates), thresholds.size), np.nan)
    for i in range(n):
        if np.shape(labels[i]) != np.shape(images[i]):
            raise InputError(None, f"case {i}: label shape {np.shape(labels[i])} differs from the image's {np.shape(images[i])}")
        brain = _Brain(images[i], None if spacings is None else spacings[i], None if masks is None else masks[i], base,
                       max_sigma_mm=max_sigma, cache=True)
        label = np.asarray(labels[i]) > 0
        n_ref = int(label.sum())
        if brain.n == 0:
            dice[i] = 0.0 if n_ref else np.nan
            continue
        y = label[brain.box][brain.inside]
        for (sigmas, normalise, polarity), members in groups.items():
            v = brain.vesselness(sigmas, polarity, normalise, base.gamma)[0]
            keeps = [None if candidates[c].mask_erosion_mm == 0 else brain.depth() > candidates[c].mask_erosion_mm for c in members]
            dice[i, members] = _dice_curves(v, y, n_ref, keeps, thresholds)
        if progress is not None:
            progress(i + 1, n)
    return dice


def _mean_over_cases(dice: np.ndarray) -> np.ndarray:
    """Mean over axis 0 leaving NaN cases out (NaN where every case is NaN)."""
    valid = np.isfinite(dice)
    counts = valid.sum(axis=0)
    if not counts.any():
        raise InputError(None, "no training case has PVS voxels in its label: the Frangi threshold cannot be fitted")
    return np.where(counts > 0, np.where(valid, dice, 0.0).sum(axis=0) / np.maximum(counts, 1), np.nan)


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
    response (no re-thresholding loop). Cluster-size filtering is not applied while fitting. The
    other settings stay the config's own (:func:`fit_frangi_grid` fits them too).

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
    t = np.asarray(DEFAULT_THRESHOLDS if thresholds is None else thresholds, dtype=np.float64)
    dice = _grid_dice(images, labels, masks, spacings, [cfg], t)[:, 0]
    mean = _mean_over_cases(dice)
    best = int(np.nanargmax(mean))
    return ThresholdFit(config=cfg.replace(threshold=float(t[best])), thresholds=t, mean_dice=mean, dice=dice)


@dataclass
class FrangiFit:
    """Result of :func:`fit_frangi_grid`: every combination of settings tried, each at its best threshold.

    Attributes:
        config: the best combination with its best ``threshold``.
        candidates: (C,) the configs tried (threshold aside), in grid order.
        thresholds: (T,) thresholds tried.
        mean_dice: (C, T) mean voxel Dice over the cases (NaN cases left out).
        dice: (n_cases, C, T) Dice of each case.
    """

    config: FrangiConfig
    candidates: list[FrangiConfig]
    thresholds: np.ndarray
    mean_dice: np.ndarray
    dice: np.ndarray = field(repr=False)

    @property
    def best_dice(self) -> float:
        """Mean training Dice of :attr:`config`."""
        return float(np.nanmax(self.mean_dice))

    def rows(self) -> list[dict[str, Any]]:
        """One dict per combination, in grid order: its :data:`GRID_FIELDS`, its best ``threshold``
        and the mean Dice there (``mean_dice``; NaN where no case has a label)."""
        out = []
        for c, cfg in enumerate(self.candidates):
            curve = self.mean_dice[c]
            best = int(np.nanargmax(curve)) if np.isfinite(curve).any() else 0
            out.append({**{k: getattr(cfg, k) for k in GRID_FIELDS}, "threshold": float(self.thresholds[best]),
                        "mean_dice": float(curve[best])})
        return out

    def dice_of(self, **settings: Any) -> float:
        """Best mean Dice of the combination with these :data:`GRID_FIELDS` values (the others as chosen).

        Raises:
            KeyError: no such combination was tried.
        """
        want = {k: getattr(self.config, k) for k in GRID_FIELDS}
        want.update({k: tuple(float(s) for s in v) if k == "sigmas_mm" else v for k, v in settings.items()})
        for row in self.rows():
            if all(row[k] == want[k] for k in GRID_FIELDS):
                return float(row["mean_dice"])
        raise KeyError(f"not in the grid: {want}")


def fit_frangi_grid(
    images: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    masks: Sequence[np.ndarray | None] | None = None,
    *,
    spacings: Sequence[Any] | None = None,
    config: FrangiConfig | None = None,
    scale_sets: Sequence[Sequence[float]] = DEFAULT_SCALE_SETS,
    erosions_mm: Sequence[float] = DEFAULT_EROSIONS_MM,
    scale_normalise: Sequence[bool] = (False, True),
    polarities: Sequence[str] | None = None,
    thresholds: Sequence[float] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> FrangiFit:
    """Choose scales, scale normalisation, polarity, mask erosion and threshold together: the
    combination with the best mean voxel Dice over the training cases.

    Cheap: per case each scale's Hessian is computed once, each (scales, normalisation, polarity)
    response is sorted once for the Dice of every threshold, and an erosion only masks it, so the
    default grid (4 scale sets x 2 x 6 erosions x 131 thresholds) costs about two responses per
    scale set. Ties go to the first combination in grid order.

    Args:
        images, labels, masks, spacings: as for :func:`fit_threshold`.
        config: the other settings (alpha, beta, gamma, truncate, min_size_mm3, and polarity when
            ``polarities`` is ``None``); default :class:`FrangiConfig`.
        scale_sets: scale sets (mm) to try.
        erosions_mm: brain mask erosions (mm, >= 0) to try.
        scale_normalise: normalisation settings to try.
        polarities: ``("bright", "dark")`` lets the fit choose; ``None`` = the config's.
        thresholds: candidate thresholds in [0, 1] (default :data:`DEFAULT_THRESHOLDS`).
        progress: called with ``(cases done, cases)`` after each case.

    Returns:
        A :class:`FrangiFit`; ``.config`` is the best combination with its threshold.
    """
    cfg = config or FrangiConfig()
    candidates = _candidates(cfg, scale_sets, scale_normalise, (cfg.polarity,) if polarities is None else polarities, erosions_mm)
    t = np.asarray(DEFAULT_THRESHOLDS if thresholds is None else thresholds, dtype=np.float64)
    dice = _grid_dice(images, labels, masks, spacings, candidates, t, progress)
    mean = _mean_over_cases(dice)
    c, k = np.unravel_index(int(np.nanargmax(mean)), mean.shape)
    best = candidates[c].replace(threshold=float(t[k]))
    return FrangiFit(config=best, candidates=candidates, thresholds=t, mean_dice=mean, dice=dice)
