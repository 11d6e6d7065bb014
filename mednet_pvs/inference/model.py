"""A ready PVS model: networks + the preprocessing they were trained with + how to infer.

    model = PVSModel.from_pretrained("my_model/")          # a model bundle folder
    pred = model.predict("sub-01_T2w.nii.gz")               # probabilities + mask on the input grid
    pred.save("out/", "sub-01")                             # mask (uint8) [+ probabilities] NIfTI

``predict`` runs: checks (:func:`mednet_pvs.io.load_image`) -> the model's own preprocessing
(reorient, crop to the brain, normalise, resample) -> Gaussian-weighted sliding window over every
ensemble member and mirror flip -> foreground probabilities resampled (linearly) back onto the
input's own grid -> threshold -> optional removal of clusters smaller than ``min_cluster_mm3``.
The returned arrays line up voxel for voxel with the input, whatever its orientation and spacing.
"""
from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mednet_pvs.data.device_preprocessing import preprocess_on_device
from mednet_pvs.data.device_preprocessing import supports as supports_on_device
from mednet_pvs.data.preprocessing import (
    BRAINMASK,
    IMAGE,
    PreprocessConfig,
    build_preprocessing,
    foreground_mask,
    subject_from_arrays,
    to_input_grid,
)
from mednet_pvs.errors import ConfigError, InputError
from mednet_pvs.inference.devices import resolve_device
from mednet_pvs.inference.bundle import (DEFAULT_LABELS, WEIGHTS, BundleConfig, load_bundle, member_names, read_weights,
                                         register_kind, write_bundle)
from mednet_pvs.inference.prediction import Prediction, load_grid_mask
from mednet_pvs.inference.settings import InferenceConfig
from mednet_pvs.inference.sliding_window import batch_size_for_memory, sliding_window_predict, tile_memory
from mednet_pvs.io import ImageSource, PathType, load_image
from mednet_pvs.nets import NetworkSpec


def _as_list(networks: nn.Module | Sequence[nn.Module]) -> list[nn.Module]:
    return [networks] if isinstance(networks, nn.Module) else list(networks)


def tensor_digest(tensors: Mapping[str, torch.Tensor]) -> str:
    """sha256 over named tensors: sorted names, dtype, shape and bytes (e.g. a model's weights)."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _input_channels(net: nn.Module) -> int:
    """Input channels of a network: its config's, else its first convolution's."""
    config = getattr(net, "config", None)
    for name in ("in_channels", "input_channels"):
        if config is not None and getattr(config, name, None):
            return int(getattr(config, name))
    conv = next(m for m in net.modules() if isinstance(m, nn.modules.conv._ConvNd))
    return int(conv.in_channels)


class PVSModel:
    """Networks (one, or an ensemble of folds) with their preprocessing and inference settings.

    Args:
        networks: one network or the members of an ensemble (same architecture).
        network: the registry spec that builds each member (``{"name", "kwargs"}``), or ``None``
            for networks outside the registry (then the model cannot be saved).
        preprocessing: the preprocessing the networks were trained with.
        inference: sliding-window and post-processing settings.
        name: a short name (used in logs and model cards).
        meta: anything else worth keeping with the weights (contrast, training data, figures).
        device: where to run (default: CUDA when available, else CPU).
        labels: output channel -> name. With a ``"brain"`` class (and ``"PVS"``: background 0,
            brain 1, PVS 2) the model finds the brain itself: without a given brain mask,
            ``predict`` runs a first pass over the whole field of view for it, then crops and
            normalises the second pass with it, and returns it as ``Prediction.brainmask``.
    """

    def __init__(
        self,
        networks: nn.Module | Sequence[nn.Module],
        network: NetworkSpec | Mapping[str, Any] | None,
        preprocessing: PreprocessConfig | dict | None = None,
        inference: InferenceConfig | dict | None = None,
        *,
        name: str = "model",
        meta: dict[str, Any] | None = None,
        device: str | torch.device | None = None,
        labels: Mapping[str | int, str] | None = None,
    ) -> None:
        self.networks = _as_list(networks)
        #: output channel -> name (``{0: "background", 1: "PVS"}``; the any-contrast model adds "brain")
        self.labels: dict[int, str] = {int(k): str(v) for k, v in (labels or DEFAULT_LABELS).items()}
        if not self.networks:
            raise ConfigError("a model needs at least one network")
        self.network = None if network is None else NetworkSpec.from_dict(network)
        self.preprocessing = preprocessing if isinstance(preprocessing, PreprocessConfig) else PreprocessConfig.from_dict(preprocessing or {})
        self.inference = inference if isinstance(inference, InferenceConfig) else InferenceConfig.from_dict(inference or {})
        self.name = name
        self.meta = dict(meta or {})
        self._compiled: list[Any] | None = None  # torch.compile'd members (compile()); None: eager
        self._compile_options: dict[str, Any] = {}
        #: on a GPU, choose the tiles per pass from free memory (else the window's batch_size)
        self.auto_batch_size = True
        #: on a GPU that supports it, run the networks under bfloat16 autocast (False: fp32)
        self.autocast = True
        self._batch_sizes: dict[tuple, int] = {}
        self._warm = True
        #: where the networks run: "torch", "onnxruntime", "openvino" or "inductor" (use_backend)
        self.backend = "torch"
        self._runners: list[Any] | None = None  # the backend's callables per member; None: the networks
        self._backend_request: tuple[str, int | None, str] = ("torch", None, "fp32")
        #: what use_backend built (threads, conversion seconds, cache hits); None for torch
        self.backend_build: dict[str, Any] | None = None
        self._check_patch()
        self.to(device)

    def _check_patch(self) -> None:
        from mednet_pvs.nets import required_divisor

        for net in self.networks:
            try:
                div = required_divisor(net)
            except ConfigError:  # networks that do not declare their input sizes: nothing to check
                continue
            divs = (div,) * 3 if isinstance(div, int) else tuple(div)
            if any(p % d for p, d in zip(self.inference.window.patch_size, divs)):
                raise ConfigError(
                    f"inference patch_size {self.inference.window.patch_size} must be a multiple of {divs} per axis for this network"
                )

    # ------------------------------------------------------------------------------ device
    @property
    def device(self) -> torch.device:
        return self._device

    def to(self, device: str | torch.device | None) -> PVSModel:
        """Move the networks to ``device`` (``None``: CUDA when available); one that this machine
        lacks is a :class:`ConfigError` naming those it has."""
        self._device = resolve_device(device)
        for net in self.networks:
            net.to(self._device).eval()
        if self._compiled is not None:  # compiled for the old device: compile again
            self.compile(**self._compile_options)
        if self._runners is not None:  # a CPU backend: decide again for the new device
            name, threads, precision = self._backend_request
            self.use_backend(name, threads=threads, precision=precision)
        return self

    def use_backend(self, name: str = "auto", *, threads: int | None = None, precision: str = "fp32") -> PVSModel:
        """Run the members on ``name`` from the next ``predict`` on: ``"torch"`` (the reference),
        ``"onnxruntime"`` (CPU, fp32; the ``onnx`` extra), ``"openvino"`` (CPU; the ``openvino``
        extra; fp32, or ``precision="bf16"`` on CPUs with native bf16: faster, not at parity),
        ``"inductor"`` (CPU, fp32; PyTorch's AOTInductor, needs a C++ compiler; built for the
        window's batch size and these threads) or ``"auto"`` (onnxruntime on the CPU where installed, for networks with depthwise 3D
        convolutions (MedNeXt), else torch). The network is exported once per weights, tile size
        and versions and cached on disk (:mod:`mednet_pvs.inference.backends`); ``predict``'s
        ``info["backend_build"]`` reports the conversion. Weights changed afterwards need another
        call. ``threads``: intra-op threads (default: physical cores).

        Raises:
            ConfigError: an unknown name or precision, a compiled backend off the CPU or with
                :meth:`compile`, the extra missing, bf16 without CPU support, or a network the
                exporter cannot handle (one line each).
        """
        from mednet_pvs.inference.backends import build_backend, check_precision, resolve_backend

        resolved = resolve_backend(name, self.device, self.networks)
        if resolved != "torch" and self._compiled is not None:
            if str(name).strip().lower() != "auto":
                raise ConfigError(f"--backend {resolved} and --compile (torch.compile) exclude each other: choose one")
            resolved = "torch"
        precision = check_precision(precision, resolved)
        digests = [tensor_digest(net.state_dict()) for net in self.networks]
        runners, build = build_backend(resolved, self.networks, digests, _input_channels(self.networks[0]),
                                       self.inference.window.patch_size, threads=threads, precision=precision,
                                       batch=self.inference.window.batch_size)
        self._runners, self.backend, self._backend_request = runners, resolved, (name, threads, precision)
        self.backend_build = None if runners is None else build.to_dict()
        return self

    # ----------------------------------------------------------------------------- predict
    def predict(
        self,
        image: ImageSource,
        *,
        brainmask: ImageSource | None = None,
        tta: bool | None = None,
        step: float | None = None,
        threshold: float | None = None,
        progress: Callable[[int, int], None] | None = None,
        pipeline: str = "auto",
    ) -> Prediction:
        """Segment PVS in one scan.

        Args:
            image: path, nibabel image, :class:`~mednet_pvs.io.Scan` or ``(array, affine)``.
            brainmask: optional brain mask on the same grid (used to crop and normalise).
            tta: mirroring test-time augmentation (default: the model's ``mirror_axes``);
                ``False`` turns it off.
            step: tile step override (fraction of the patch).
            threshold: probability threshold override.
            progress: ``progress(done_tiles, total_tiles)`` callback.
            pipeline: where preprocessing and the way back run: ``"device"`` (torch ops on the
                model's device, :mod:`mednet_pvs.data.device_preprocessing`: one transfer in,
                one out), ``"torchio"`` (the TorchIO/SimpleITK pipeline on the CPU, the reference)
                or ``"auto"``: ``"device"`` on a GPU, ``"torchio"`` on the CPU. Both give the
                same mask (tested: label Dice >= 0.999).

        Returns:
            :class:`Prediction` on the input's own grid.
        """
        t0 = time.perf_counter()
        scan = load_image(image)
        bm = None if brainmask is None else load_grid_mask(brainmask, scan)
        on_device = self._on_device(pipeline)
        window = self._window(tta, step)
        if self.device.type == "cuda" and self.auto_batch_size:
            window = window.replace(batch_size=self._cuda_batch_size(window.patch_size))
        seconds: dict[str, float] = {}
        brain_source = None if bm is None else "given"
        if bm is None and self.predicts_brain:
            # pass 1: the brain mask, from the whole field of view (normalised over the foreground,
            # no mirroring); it then crops and normalises pass 2 as a given mask would
            maps, sec = self._pass(scan, None, window.replace(mirror_axes=()), on_device, None, brain=True)
            bm = largest_component(maps["brain"] > 0.5)
            brain_source = "predicted"
            seconds.update({f"brain_{k}": v for k, v in sec.items()})
        maps, sec = self._pass(scan, bm, window, on_device, progress, brain=self.predicts_brain)
        seconds.update(sec)
        brain_input = None
        if brain_source == "predicted" and self.inference.brain_mask != "first_pass":
            # the second pass saw the image cropped to the first mask and normalised inside it (as the
            # training samples that come with a mask): where it also says brain (refine_brain_mask)
            bm, brain_input = refine_brain_mask(bm, maps["brain"], scan.data, scan.spacing, self.inference.brain_mask,
                                                keep=self.inference.brain_keep)
        warmup = not self._warm
        self._warm = True
        fg_in = maps["pvs"]
        cut = self.inference.threshold if threshold is None else threshold
        mask = fg_in > cut
        if bm is not None and self.predicts_brain:  # PVS lie in the brain
            mask &= bm
        if self.inference.min_cluster_mm3 > 0:
            from mednet_pvs.analysis import remove_small_clusters

            mask = remove_small_clusters(mask, scan.affine, self.inference.min_cluster_mm3)
        info = {
            "model": self.name,
            "members": len(self.networks),
            "mirror_axes": list(window.mirror_axes),
            "step": window.step,
            "batch_size": window.batch_size,
            "precision": self._precision(),
            "pipeline": "device" if on_device else "torchio",
            "compiled": self._compiled is not None,
            "backend": self.backend,
            "seconds": {**seconds, "total": time.perf_counter() - t0},
        }
        if brain_source is not None and self.predicts_brain:
            info["brainmask"] = brain_source
        if brain_input is not None:  # brain_mask "auto": which rule refined the predicted mask
            info["brain_input"] = brain_input
        if warmup:  # the first call after compile(): its network time includes the compilation
            info["seconds"]["compile_warmup"] = seconds["network"]
        if self.backend_build is not None:  # threads, conversion seconds, cache hits (use_backend)
            info["backend_build"] = dict(self.backend_build)
        brain_out = None
        if self.predicts_brain and bm is not None:
            brain_out = bm.astype(np.uint8) if brain_source == "predicted" else largest_component(maps["brain"] > 0.5).astype(np.uint8)
        return Prediction(probabilities=fg_in, mask=mask.astype(np.uint8), scan=scan, info=info, brainmask=brain_out)

    def _pass(self, scan: Any, bm: np.ndarray | None, window: Any, on_device: bool, progress: Callable[[int, int], None] | None,
              *, brain: bool) -> tuple[dict[str, np.ndarray], dict[str, float]]:
        """One preprocessing -> sliding window -> input grid pass. Returns the maps on the input
        grid (``"pvs"``: the PVS probability; with ``brain``, ``"brain"``: 1 - background) and
        the seconds of its parts."""
        t0 = time.perf_counter()
        if on_device:  # one transfer in: every step below runs where the networks are
            pre = preprocess_on_device(scan.data, scan.affine, self.preprocessing, brainmask=bm, device=self.device)
            net_input, roi = pre.image, pre.roi
        else:
            subject = build_preprocessing(self.preprocessing)(subject_from_arrays(scan.data, scan.affine, brainmask=bm))
            net_input = subject[IMAGE].data
            roi = subject[BRAINMASK].data[0] > 0 if BRAINMASK in subject else foreground_mask(subject, self.preprocessing)
        if brain and bm is None:  # the brain mask is what this pass looks for: every tile of the field of view
            roi = None
        t_pre = time.perf_counter()
        probs = sliding_window_predict(self._runners or self._compiled or self.networks, net_input, window, mask=roi, device=self.device,
                                       autocast=self.autocast, progress=progress)
        t_net = time.perf_counter()
        # PVS = the class named PVS, else every non-background class; with two classes a view (no
        # extra full-volume buffer on the stitching device: it holds exactly one per class)
        wanted = {"pvs": probs[self._pvs_class] if self._pvs_class is not None else (probs[1] if probs.shape[0] == 2 else probs[1:].sum(0))}
        if brain:
            wanted["brain"] = 1.0 - probs[0]
        del probs
        out: dict[str, np.ndarray] = {}
        back = self.inference.output_resampling
        for key, fg in wanted.items():
            if on_device:  # back to the input grid on the device; one transfer out
                out[key] = pre.to_input_grid(fg.to(self.device), mode=back).clamp_(0.0, 1.0).cpu().numpy()
            else:
                a = to_input_grid(fg.cpu(), subject, interpolation=back).numpy().astype(np.float32)
                out[key] = np.clip(a, 0.0, 1.0, out=a)
        return out, {"preprocess": t_pre - t0, "network": t_net - t_pre, "postprocess": time.perf_counter() - t_net}

    @property
    def predicts_brain(self) -> bool:
        """Whether the networks output a brain class (then ``predict`` finds the brain mask itself)."""
        return "brain" in (v.lower() for v in self.labels.values())

    @property
    def _pvs_class(self) -> int | None:
        """The output channel of PVS when the labels name it among several classes, else ``None``."""
        hits = [k for k, v in self.labels.items() if v.lower() == "pvs"]
        return hits[0] if len(self.labels) > 2 and len(hits) == 1 else None

    def _cuda_batch_size(self, patch: tuple[int, int, int]) -> int:
        """Tiles per pass on this GPU: one tile's measured peak memory against the free memory
        (measured once per tile size and device)."""
        key = (tuple(patch), str(self.device))
        if key not in self._batch_sizes:
            channels = _input_channels(self.networks[0])
            per_tile = tile_memory(self.networks[0], channels, patch, self.device)
            free, _ = torch.cuda.mem_get_info(self.device)
            self._batch_sizes[key] = batch_size_for_memory(per_tile, free)
        return self._batch_sizes[key]

    def compile(self, **options: Any) -> PVSModel:
        """Run the members through ``torch.compile(net, **options)`` (e.g. ``mode="max-autotune"``,
        ``backend=...``) from the next ``predict`` on; the weights, bundles and provenance stay the
        eager networks'. The first ``predict`` pays the compilation: its ``info["seconds"]
        ["compile_warmup"]`` reports it.

        Measured on the CPU (bundled MedNeXt-S k3, 48^3 phantom, 2 threads, one run each, loaded
        machine): warm-up 169 s, then 4.2-4.5 s per call against 15.9 s for the first eager call;
        probabilities differ from eager by up to 7.7e-3 (inductor's fused kernels), so it is an
        option, not the default. ``use_backend("inductor")`` is the same compiler ahead of time:
        weights frozen, the package cached on disk, within 5e-6 of eager (MedNeXt-L k5).
        """
        self._compiled = [torch.compile(net, **options) for net in self.networks]
        self._compile_options = dict(options)
        self._runners, self.backend, self.backend_build = None, "torch", None  # compiling is torch's
        self._backend_request = ("torch", None, "fp32")
        self._warm = False
        return self

    def _precision(self) -> str:
        """``"bf16-autocast"`` where ``predict`` runs the networks so, ``"bf16-openvino"`` on
        OpenVINO in bf16, else ``"fp32"``."""
        if self._backend_request[2] == "bf16" and self.backend == "openvino":
            return "bf16-openvino"
        bf16 = self.autocast and self.device.type == "cuda" and torch.cuda.is_bf16_supported()
        return "bf16-autocast" if bf16 else "fp32"

    def _on_device(self, pipeline: str) -> bool:
        """Whether ``predict`` preprocesses on the model's device (see ``pipeline``).

        ``auto`` keeps TorchIO on the CPU: measured there (2 loaded cores, MNI phantom, target
        1 mm), preprocessing takes as long either way (0.5-0.6 s at 1 mm, 1.5-1.9 s at 0.8 mm) but
        the torch way back is slower (0.4 vs 0.2-0.3 s at 1 mm, 4.0-5.4 vs 0.5-0.6 s at 0.8 mm),
        while on a GPU it saves the two host transfers and SimpleITK's CPU time."""
        if pipeline not in ("auto", "device", "torchio"):
            raise ConfigError(f"pipeline must be auto, device or torchio, not {pipeline!r}")
        if pipeline == "device" and not supports_on_device(self.preprocessing):
            raise ConfigError(f"preprocessing with image_interpolation={self.preprocessing.image_interpolation!r} "
                              "runs only in the torchio pipeline")
        return pipeline == "device" or (pipeline == "auto" and self.device.type == "cuda" and supports_on_device(self.preprocessing))

    def _window(self, tta: bool | None, step: float | None) -> Any:
        """The sliding window with ``predict``'s overrides applied."""
        overrides: dict[str, Any] = {}
        if tta is False:
            overrides["mirror_axes"] = ()
        if step is not None:
            overrides["step"] = step
        return self.inference.window.replace(**overrides)

    def weights_sha256(self) -> str:
        """sha256 of every member's weights as held in memory (names, dtypes, shapes and bytes):
        the same weights give the same digest however they were loaded."""
        tensors = {f"{i}.{k}": v for i, net in enumerate(self.networks) for k, v in net.state_dict().items()}
        return tensor_digest(tensors)

    def provenance(self, *, tta: bool | None = None, step: float | None = None) -> dict[str, Any]:
        """What decides this model's predictions with these overrides: the model (name, weights
        digest, preprocessing) and every setting that changes the result beyond float rounding
        (threshold, minimum cluster size, tile size, step, Gaussian sigma, mirror axes, device,
        precision, the way back to the input grid, where a predicted brain mask comes from). Batch
        prediction records it with each case and resumes only on a match."""
        window = self._window(tta, step)
        settings = {
            "threshold": self.inference.threshold, "min_cluster_mm3": self.inference.min_cluster_mm3,
            "patch_size": list(window.patch_size), "step": window.step, "sigma_scale": window.sigma_scale,
            "mirror_axes": list(window.mirror_axes), "device": self.device.type,
            "precision": self._precision(), "backend": self.backend,
        }
        if self.inference.output_resampling != "linear":  # recorded when not the default (older records stay valid)
            settings["output_resampling"] = self.inference.output_resampling
        if self.predicts_brain and self.inference.brain_mask != "first_pass":  # likewise
            settings["brain_mask"] = self.inference.brain_mask
            if self.inference.brain_keep != 0.5:
                settings["brain_keep"] = self.inference.brain_keep
        return {
            "model": {"name": self.name, "kind": "network", "members": len(self.networks),
                      "weights_sha256": self.weights_sha256(), "preprocessing": self.preprocessing.to_dict()},
            "settings": settings,
        }

    # ---------------------------------------------------------------------------- bundles
    def bundle_config(self) -> BundleConfig:
        """This model's ``config.json`` (:class:`~mednet_pvs.inference.bundle.BundleConfig`)."""
        if self.network is None:
            raise InputError(None, "this model's networks are not from the registry (network spec is None): it cannot be saved as a bundle")
        return BundleConfig(name=self.name, kind="network", network=self.network, preprocessing=self.preprocessing,
                            inference=self.inference, members=member_names(len(self.networks)), meta=self.meta,
                            labels={str(k): v for k, v in self.labels.items()})

    def save_pretrained(self, folder: PathType, *, card: str | None = None, load_as: str | None = None,
                        dtype: torch.dtype | None = None) -> Path:
        """Write this model as a bundle folder (``config.json``, ``model.safetensors``, ``README.md``).

        Args:
            folder: destination (created; every file written atomically).
            card: the model card (default: generated from the config, :func:`~mednet_pvs.inference.card.model_card`).
            load_as: what the generated card's example passes to ``load_pretrained`` (default the folder).
            dtype: e.g. ``torch.float16`` stores the floating-point weights at half size (loaded
                back in the network's own dtype).
        """
        from mednet_pvs.nets.state_dicts import alias_groups

        config = self.bundle_config()
        tensors: dict[str, torch.Tensor] = {}
        for member, net in zip(config.members, self.networks):
            canonical = alias_groups(net)  # modules registered twice share tensors: store each tensor once
            for key, value in net.state_dict().items():
                if key in canonical:
                    value = value.detach().to("cpu")
                    if dtype is not None and value.is_floating_point():
                        value = value.to(dtype)
                    tensors[f"{member}.{key}"] = value.contiguous()
        return write_bundle(folder, config, tensors, card=card, load_as=load_as or str(folder))

    @classmethod
    def from_pretrained(cls, folder: PathType, *, device: str | torch.device | None = None) -> Any:
        """Load a bundle folder written by :meth:`save_pretrained` (or an importer, or training)."""
        return load_bundle(folder, device=device)

    def __repr__(self) -> str:
        net = self.network.name if self.network is not None else type(self.networks[0]).__name__
        return f"PVSModel(name={self.name!r}, network={net!r}, members={len(self.networks)}, device={str(self.device)!r})"


@register_kind("network")
def _load_network_bundle(folder: Path, config: BundleConfig, device: str | torch.device | None) -> PVSModel:
    """An ensemble of registry networks with their weights, preprocessing and inference settings."""
    config.require("network", "preprocessing", "inference", "members")
    return PVSModel(load_members(folder, config), config.network, config.preprocessing, config.inference,
                    name=config.name, meta=config.meta, device=device, labels=config.labels)


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 26-connected component of ``mask`` (bool), holes filled: a brain mask from a
    thresholded brain probability (stray islands in the head dropped)."""
    from scipy import ndimage

    lab, n = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
    if n == 0:
        return mask.astype(bool)
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    return ndimage.binary_fill_holes(lab == int(sizes.argmax()))


#: ``refine_brain_mask``'s whole-head test: voxels with signal more than ``OUTSIDE_MM`` from the
#: refined mask, as a share of its voxels, of at least ``OUTSIDE_SHARE``. On the 24 held-out fit
#: cases (stage-5 weights, ``brain_keep`` 0.8) the share was 0.000-0.059 on every skull-stripped input
#: and 2.1-9.8 on every whole head, air stored as zeros included (scalp and skull remain). Measured
#: from the refined mask, not the first: a first pass that took the whole of such a head leaves no
#: signal outside itself, the second pass drops the scalp. The shipped two-member model took each of
#: the 24 fit cases for what it is (benchmarks/results/synth_any_threshold_fit_ens56_bundle.txt).
OUTSIDE_MM, OUTSIDE_SHARE = 5.0, 0.25


def signal(data: np.ndarray) -> np.ndarray:
    """The voxels of ``data`` (X, Y, Z) that hold signal: |value| above 1e-3 of its 99.9th
    percentile (interpolation residue around a skull-stripped brain counts as zero)."""
    a = np.abs(np.asarray(data, dtype=np.float32))
    return a > 1e-3 * float(np.percentile(a, 99.9))


def signal_outside(has_signal: np.ndarray, mask: np.ndarray, spacing: Sequence[float], margin_mm: float = OUTSIDE_MM) -> float:
    """Voxels of ``has_signal`` (:func:`signal` of an image) farther than ``margin_mm`` from
    ``mask``, as a share of the mask's voxels: about 0 for a skull-stripped scan, about 1 or more
    for a whole head."""
    from scipy import ndimage

    far = ndimage.distance_transform_edt(~mask, sampling=[float(s) for s in spacing]) > margin_mm
    return float((has_signal & far).sum()) / max(int(mask.sum()), 1)


def refine_brain_mask(first: np.ndarray, second: np.ndarray, data: np.ndarray, spacing: Sequence[float], mode: str,
                      *, keep: float = 0.5) -> tuple[np.ndarray, str | None]:
    """A predicted brain mask after the second pass (:attr:`InferenceConfig.brain_mask`).

    Args:
        first: the first pass's mask (bool, X, Y, Z): its largest component.
        second: the second pass's brain probability on the same grid.
        data: the image (X, Y, Z) as stored; spacing: its voxel size (mm).
        mode: ``"both_passes"`` (``first`` where ``second > keep``) or ``"auto"``: that on a
            whole head, else (a skull-stripped input: :func:`signal_outside` that mask below
            :data:`OUTSIDE_SHARE`) ``first`` cut to the image's :func:`signal`: the brain lies in
            it, and there the second pass trims true brain at the edge (fit cases).

    Returns:
        the mask (largest component, holes filled) and, for ``"auto"``, ``"whole head"`` or
        ``"skull-stripped"`` (``None`` otherwise).
    """
    both = largest_component(first & (second > keep))
    if mode != "auto":
        return both, None
    has_signal = signal(data)
    if signal_outside(has_signal, both, spacing) < OUTSIDE_SHARE:
        return largest_component(first & has_signal), "skull-stripped"
    return both, "whole head"


def load_members(folder: Path, config: BundleConfig) -> list[nn.Module]:
    """Every member network of a bundle, built from its registry spec and holding its weights
    (sha256 checked); every problem names the file."""
    from mednet_pvs.nets import create_network_from_config
    from mednet_pvs.nets.state_dicts import load_exact

    config.require("network", "members")
    tensors = read_weights(folder, config)
    wpath = folder / WEIGHTS
    networks = []
    for member in config.members:
        try:
            net = create_network_from_config(config.network)
        except ConfigError as e:
            raise ConfigError(f"network spec cannot be built: {e}") from None
        prefix = f"{member}."
        sd = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        if not sd:
            raise InputError(wpath, f"no weights for member {member!r}")
        try:
            load_exact(net, sd, f"weights of {member!r}")  # fills in aliases; names missing/unexpected/misshapen keys
        except ConfigError as e:
            raise InputError(wpath, f"weights of {member!r} do not fit the network {config.network.name!r}: {e}") from None
        networks.append(net)
    return networks
