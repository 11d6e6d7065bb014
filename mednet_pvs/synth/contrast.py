"""Tissue intensities (T2w, T1w, FLAIR, PD or random) and the noise-free image they make.

The image is a partial-volume mix: ``csf * mu_csf + gm * mu_gm(region) + wm * mu_wm(region)``,
deep grey nuclei having their own means; confounders and PVS then replace the fraction of each
voxel they occupy (``I <- (1 - f) I + f mu``). Values are relative (CSF = 1 on T2w, WM ~ 0.8 on
T1w); outside the brain the image is 0 (skull-stripped), before noise.

``"random"`` draws every tissue mean uniformly in [0.05, 1] (SynthSeg-style domain
randomisation) with PVS and lacune cores following CSF +- 0.05 and at least 0.15 between CSF and
white matter, so PVS stay visible.

Head tissues (:data:`HEAD_TISSUES`: CSF rim, skull, diploe, muscle, fat, skin, eyes, face/neck
soft tissue) have means too, used by whole-head phantoms (:mod:`mednet_pvs.synth.head`).
"""
from __future__ import annotations

import numpy as np

from mednet_pvs.synth.anatomy import CODES, Anatomy

TISSUES = ("csf", "wm", "cortex", "caudate", "putamen", "pallidum", "thalamus", "hippocampus", "amygdala",
           "brainstem", "cerebellum_cortex", "cerebellum_wm", "pvs", "wmh", "lacune", "lacune_rim", "vessel")

T2W = {"csf": 1.0, "wm": 0.42, "cortex": 0.62, "caudate": 0.58, "putamen": 0.52, "pallidum": 0.40,
       "thalamus": 0.50, "hippocampus": 0.64, "amygdala": 0.62, "brainstem": 0.46, "cerebellum_cortex": 0.60,
       "cerebellum_wm": 0.40, "pvs": 0.95, "wmh": 0.80, "lacune": 0.98, "lacune_rim": 0.78, "vessel": 0.06}
T1W = {"csf": 0.18, "wm": 0.82, "cortex": 0.52, "caudate": 0.56, "putamen": 0.60, "pallidum": 0.70,
       "thalamus": 0.66, "hippocampus": 0.52, "amygdala": 0.52, "brainstem": 0.72, "cerebellum_cortex": 0.50,
       "cerebellum_wm": 0.80, "pvs": 0.20, "wmh": 0.62, "lacune": 0.18, "lacune_rim": 0.60, "vessel": 0.15}
FLAIR = {"csf": 0.08, "wm": 0.52, "cortex": 0.68, "caudate": 0.64, "putamen": 0.60, "pallidum": 0.52,
         "thalamus": 0.58, "hippocampus": 0.72, "amygdala": 0.70, "brainstem": 0.56, "cerebellum_cortex": 0.64,
         "cerebellum_wm": 0.50, "pvs": 0.14, "wmh": 0.95, "lacune": 0.10, "lacune_rim": 0.90, "vessel": 0.10}
PD = {"csf": 0.90, "wm": 0.62, "cortex": 0.80, "caudate": 0.76, "putamen": 0.72, "pallidum": 0.64,
      "thalamus": 0.70, "hippocampus": 0.80, "amygdala": 0.79, "brainstem": 0.64, "cerebellum_cortex": 0.79,
      "cerebellum_wm": 0.62, "pvs": 0.88, "wmh": 0.86, "lacune": 0.90, "lacune_rim": 0.84, "vessel": 0.08}
PRESETS = {"T2w": T2W, "T1w": T1W, "FLAIR": FLAIR, "PD": PD}
#: the tissues PVS run through (centrum semiovale, basal ganglia, midbrain, hippocampus): under a
#: random contrast each differs from CSF by at least ``min_pvs_contrast``. Only white matter was
#: checked before: at 0.08, PVS-to-surrounding contrast on 4 domain phantoms was 0.14-0.26 brain
#: s.d. (1.1-1.2 on the T2w presets' phantoms), and a network trained on them for 1000 steps
#: predicted almost no PVS.
PVS_HOSTS = ("wm", "caudate", "putamen", "pallidum", "thalamus", "brainstem", "hippocampus")
HEAD_TISSUES = ("csf_rim", "skull", "marrow", "muscle", "fat", "skin", "eye", "soft_tissue")
#: head tissue means per contrast (csf_rim follows the contrast's CSF)
HEAD = {"T2w": {"skull": 0.05, "marrow": 0.55, "muscle": 0.28, "fat": 0.78, "skin": 0.45, "eye": 1.0, "soft_tissue": 0.35},
        "T1w": {"skull": 0.05, "marrow": 0.75, "muscle": 0.38, "fat": 0.95, "skin": 0.55, "eye": 0.15, "soft_tissue": 0.45},
        "FLAIR": {"skull": 0.05, "marrow": 0.60, "muscle": 0.30, "fat": 0.80, "skin": 0.48, "eye": 0.10, "soft_tissue": 0.38},
        "PD": {"skull": 0.06, "marrow": 0.78, "muscle": 0.50, "fat": 0.92, "skin": 0.62, "eye": 0.95, "soft_tissue": 0.55}}
_DEEP = ("thalamus", "caudate", "putamen", "pallidum", "hippocampus", "amygdala", "brainstem")


def tissue_means(contrast: str, rng: np.random.Generator, *, head: bool = False, min_pvs_contrast: float = 0.15,
                 jitter: float = 0.0) -> dict[str, float]:
    """Mean intensity of every tissue for ``contrast`` ("T2w", "T1w", "FLAIR", "PD" or "random").

    ``head``: add the head tissues. ``min_pvs_contrast``: for "random", the least |CSF - t| for
    every tissue ``t`` PVS run through (:data:`PVS_HOSTS`; PVS follow CSF). ``jitter``: for a preset, add uniform noise of this amplitude to every mean.
    """
    if contrast in PRESETS:
        means = dict(PRESETS[contrast])
        if head:
            means.update(HEAD[contrast], csf_rim=means["csf"])
        if jitter > 0:
            means = {k: float(np.clip(v + rng.uniform(-jitter, jitter), 0.0, 1.2)) for k, v in means.items()}
        return means
    means = {t: float(rng.uniform(0.05, 1.0)) for t in TISSUES}
    for host in PVS_HOSTS:  # PVS (CSF-like) must differ from every tissue they run through
        while abs(means["csf"] - means[host]) < min_pvs_contrast:
            means[host] = float(rng.uniform(0.05, 1.0))
    for t in ("pvs", "lacune"):
        means[t] = float(np.clip(means["csf"] + rng.normal(0, 0.05), 0.0, 1.2))
    if head:
        means.update({t: float(rng.uniform(0.0, 1.0)) for t in HEAD_TISSUES})
        means["csf_rim"] = float(np.clip(means["csf"] + rng.normal(0, 0.05), 0.0, 1.2))
        if rng.random() < 0.8:  # bone is dark on almost every MR contrast
            means["skull"] = float(rng.uniform(0.0, 0.15))
    return means


def base_image(anat: Anatomy, means: dict[str, float]) -> np.ndarray:
    """Noise-free tissue image (float32) of the anatomy with the given tissue means."""
    lut_gm = np.full(256, means["cortex"], np.float32)
    lut_wm = np.full(256, means["wm"], np.float32)
    for name in _DEEP:
        for code in CODES[name]:
            lut_gm[code] = lut_wm[code] = means[name]
    for code in CODES["cerebellum_cortex"] + CODES["cerebellum_wm"]:
        lut_gm[code], lut_wm[code] = means["cerebellum_cortex"], means["cerebellum_wm"]
    reg = anat.regions.astype(np.intp)
    img = anat.csf * np.float32(means["csf"])
    img += anat.gm * lut_gm[reg]
    img += anat.wm * lut_wm[reg]
    return img.astype(np.float32, copy=False)


def paint(img: np.ndarray, box: tuple[slice, ...], frac: np.ndarray, value: float) -> None:
    """Replace the fraction ``frac`` of each voxel in ``box`` by tissue of intensity ``value``."""
    v = img[box]
    v += frac * (np.float32(value) - v)
