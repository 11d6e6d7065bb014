"""nnU-Net-style baselines: nnU-Net's own 3D U-Nets (dynamic_network_architectures' PlainConvUNet and
ResidualEncoderUNet) configured as nnU-Net v2's 3d_fullres planners configure them.

Topology for a patch size and voxel spacing follows nnU-Net v2's ``get_pool_and_conv_props``
(``nnunetv2/experiment_planning/experiment_planners/network_topology.py``): an axis is pooled while
its feature map stays >= 8 voxels (>= 12 if it is the only one) and its spacing is within 2x of the
finest; a kernel axis becomes 3 once its spacing is within 2x of the finest; the bottleneck is 3x3x3.
Features start at 32 and double per stage up to 320. The plain U-Net has 2 convs per stage (encoder
and decoder); the ResEnc planners (M, L) use (1, 3, 4, 6, 6, 6, ...) residual blocks per encoder
stage and 1 conv per decoder stage. M and L build the same network for a given patch; they differ in
the GPU memory budget that chooses the patch (see :func:`plan_patch_size`).

dynamic_network_architectures is imported only when a network is built.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch import nn

from mednet_pvs.errors import ConfigError, MednetError
from mednet_pvs.nets.spec import NetConfig, brief, dims
from mednet_pvs.nets.registry import register_network
from mednet_pvs.nets.shapes import divisor_from_strides

PLAIN = "PlainConvUNet"
RESENC = "ResidualEncoderUNet"
ARCHITECTURES = (PLAIN, RESENC)
RESENC_ENCODER_BLOCKS = (1, 3, 4, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6)  # nnU-Net's ResEncUNetPlanner
#: How to get dynamic_network_architectures (the ``nnunet`` extra). It declares timm, which pulls
#: torchvision and, next to a CPU torch, a second (CUDA) torch; its U-Nets import neither, hence --no-deps there.
INSTALL_HINT = ("pip install 'mednet-pvs[nnunet]' (with a CPU-only torch: "
                "pip install --no-deps dynamic-network-architectures==0.4.4 einops)")


class MissingDependency(MednetError, ImportError):
    """A package that a network needs is not installed."""


def dna():
    """The module of nnU-Net's network classes (imports dynamic_network_architectures)."""
    try:
        from mednet_pvs.nets import dna_unets
    except ImportError as e:
        raise MissingDependency(
            f"nnU-Net networks need the nnunet extra (dynamic_network_architectures: {e}): {INSTALL_HINT}"
        ) from e
    return dna_unets


# ---------------------------------------------------------------------------------------------------
# nnU-Net v2 topology planning


@dataclass(frozen=True)
class PoolingPlan:
    """What ``get_pool_and_conv_props`` decides; ``strides`` starts with the stem's (1, 1, 1)."""

    num_pool_per_axis: tuple[int, ...]
    strides: tuple[tuple[int, ...], ...]
    kernel_sizes: tuple[tuple[int, ...], ...]
    patch_size: tuple[int, ...]  # the input patch padded to a multiple of ``divisor``
    divisor: tuple[int, ...]


def get_pool_and_conv_props(spacing: Sequence[float], patch_size: Sequence[int],
                            min_feature_map_size: int = 4, max_numpool: int = 999999) -> PoolingPlan:
    """nnU-Net v2's pooling and kernel plan for a patch (voxels) at a spacing (mm), axis by axis."""
    dim = len(spacing)
    if len(patch_size) != dim or any(s <= 0 for s in spacing) or any(p < 1 for p in patch_size):
        raise ConfigError(f"need positive spacing and patch size of the same length, got {spacing}, {patch_size}")
    current_spacing = [float(s) for s in spacing]
    current_size = [float(p) for p in patch_size]
    strides: list[tuple[int, ...]] = [(1,) * dim]
    kernels: list[tuple[int, ...]] = []
    num_pool = [0] * dim
    kernel = [1] * dim
    while True:
        valid = [i for i in range(dim) if current_size[i] >= 2 * min_feature_map_size]
        if not valid:
            break
        finest = min(current_spacing[i] for i in valid)
        valid = [i for i in valid if current_spacing[i] / finest < 2 and num_pool[i] < max_numpool]
        if len(valid) == 1 and current_size[valid[0]] < 3 * min_feature_map_size:
            break
        if not valid:
            break
        for d in range(dim):
            if kernel[d] != 3 and current_spacing[d] / min(current_spacing) < 2:
                kernel[d] = 3
        for v in valid:
            num_pool[v] += 1
            current_spacing[v] *= 2
            current_size[v] = math.ceil(current_size[v] / 2)
        strides.append(tuple(2 if d in valid else 1 for d in range(dim)))
        kernels.append(tuple(kernel))
    kernels.append((3,) * dim)  # the bottleneck
    divisor = tuple(2**n for n in num_pool)
    padded = tuple(-(-int(p) // d) * d for p, d in zip(patch_size, divisor))
    return PoolingPlan(tuple(num_pool), tuple(strides), tuple(kernels), padded, divisor)


def default_features(n_stages: int, base: int = 32, max_features: int = 320) -> tuple[int, ...]:
    """nnU-Net's features per stage: ``base`` doubling per stage, capped at ``max_features``."""
    return tuple(min(max_features, base * 2**i) for i in range(n_stages))


@dataclass
class NnUNetConfig(NetConfig):
    """An nnU-Net v2 3D U-Net. Topology fields left ``None`` are planned from ``patch_size`` (voxels)
    and ``spacing`` (mm) as nnU-Net v2 plans 3d_fullres; after that the config holds them explicitly.

    ``n_blocks_per_stage``: convs per encoder stage (PlainConvUNet) or residual blocks (ResidualEncoderUNet).
    """

    architecture: str = PLAIN
    input_channels: int = 1
    num_classes: int = 2
    patch_size: tuple[int, ...] = (128, 128, 128)
    spacing: tuple[float, ...] = (0.8, 0.8, 0.8)
    base_features: int = 32
    max_features: int = 320
    n_stages: Optional[int] = None
    features_per_stage: Optional[tuple[int, ...]] = None
    kernel_sizes: Optional[tuple[tuple[int, ...], ...]] = None
    strides: Optional[tuple[tuple[int, ...], ...]] = None
    n_blocks_per_stage: Optional[tuple[int, ...]] = None
    n_conv_per_stage_decoder: Optional[tuple[int, ...]] = None
    deep_supervision: bool = True
    ds_outputs_in_eval: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.architecture not in ARCHITECTURES:
            raise ConfigError(f"nnU-Net architecture must be one of {ARCHITECTURES}, got {self.architecture!r}")
        if self.strides is None or self.kernel_sizes is None:
            plan = get_pool_and_conv_props(self.spacing, self.patch_size)
            self.strides = self.strides or plan.strides
            self.kernel_sizes = self.kernel_sizes or plan.kernel_sizes
            self.patch_size = plan.patch_size
        n = self.n_stages = self.n_stages or len(self.strides)
        self.features_per_stage = self.features_per_stage or default_features(n, self.base_features, self.max_features)
        plain = self.architecture == PLAIN
        self.n_blocks_per_stage = self.n_blocks_per_stage or ((2,) * n if plain else RESENC_ENCODER_BLOCKS[:n])
        self.n_conv_per_stage_decoder = self.n_conv_per_stage_decoder or ((2 if plain else 1),) * (n - 1)
        lengths = dict(features_per_stage=n, kernel_sizes=n, strides=n, n_blocks_per_stage=n,
                       n_conv_per_stage_decoder=n - 1)
        for name, length in lengths.items():
            if len(getattr(self, name)) != length:
                raise ConfigError(f"nnU-Net {name} needs {length} entries for {n} stages, got {getattr(self, name)}")
        div = divisor_from_strides(self.strides)
        if any(p % d for p, d in zip(self.patch_size, div)):
            raise ConfigError(f"patch_size {self.patch_size} is not a multiple of {div}, which strides "
                              f"{self.strides} need")

    def describe(self) -> str:
        """One line: ``nnU-Net v2 PlainConvUNet, 6 stages, features (32,64,...), kernels 3x3x3, ...``."""
        plain = self.architecture == PLAIN
        blocks = f"{brief(self.n_blocks_per_stage)} {'convs' if plain else 'residual blocks'} per encoder stage"
        return ", ".join([
            f"nnU-Net v2 {self.architecture}", f"{self.n_stages} stages", f"features {brief(self.features_per_stage)}",
            f"kernels {brief(self.kernel_sizes)}", f"strides {brief(self.strides)}", blocks,
            f"{brief(self.n_conv_per_stage_decoder)} convs per decoder stage",
            f"{self.input_channels} input channel(s)", f"{self.num_classes} classes",
            f"planned for patch {dims(self.patch_size)} at {dims(self.spacing)} mm",
        ])

    def arch_kwargs(self) -> dict:
        """Constructor arguments of the dynamic_network_architectures class."""
        blocks = "n_conv_per_stage" if self.architecture == PLAIN else "n_blocks_per_stage"
        return dict(input_channels=self.input_channels, num_classes=self.num_classes, n_stages=self.n_stages,
                    features_per_stage=self.features_per_stage, kernel_sizes=self.kernel_sizes,
                    strides=self.strides, n_conv_per_stage_decoder=self.n_conv_per_stage_decoder,
                    **{blocks: self.n_blocks_per_stage})


def build_nnunet(config: NnUNetConfig) -> nn.Module:
    """The dynamic_network_architectures network of ``config`` (He-initialised as nnU-Net does)."""
    cls = dna().NnUNetPlainConvUNet if config.architecture == PLAIN else dna().NnUNetResidualEncoderUNet
    return cls(config, **config.arch_kwargs())


#: Registry presets: architecture and default patch size (voxels, at the default 0.8 mm spacing). The
#: patches are what :func:`plan_patch_size` (nnU-Net v2's planners) picks for 0.8 mm isotropic images
#: that do not limit it (median shape 256**3): 128**3 for the default and ResEnc M budgets, 192**3 for L.
NNUNET_PRESETS = {
    "nnunet_plain": (PLAIN, (128, 128, 128)),
    "nnunet_resenc_m": (RESENC, (128, 128, 128)),
    "nnunet_resenc_l": (RESENC, (192, 192, 192)),
}


def _nnunet_preset(name: str, /, **overrides) -> nn.Module:
    arch, patch = NNUNET_PRESETS[name]
    if overrides.get("architecture", arch) != arch:
        raise ConfigError(f"{name} is a {arch}; got architecture={overrides['architecture']!r}")
    return build_nnunet(NnUNetConfig.from_dict({"architecture": arch, "patch_size": patch, **overrides}))


for _name in NNUNET_PRESETS:
    register_network(_name)(functools.partial(_nnunet_preset, _name))


# ---------------------------------------------------------------------------------------------------
# nnU-Net v2's patch-size planning (the GPU-memory budget that distinguishes the presets)

#: Per planner: (reference feature-map volume for the budget, budget in GB the reference stands for,
#: default budget in GB, architecture) from nnU-Net v2's ExperimentPlanner and nnUNetPlannerResEnc{M,L}.
PLANNERS = {
    "plain": (560_000_000, 8, 8, PLAIN),
    "resenc_m": (680_000_000, 8, 8, RESENC),
    "resenc_l": (2_100_000_000, 24, 24, RESENC),
}


def plan_patch_size(spacing: Sequence[float], median_shape: Sequence[int], planner: str = "plain",
                    input_channels: int = 1, num_classes: int = 2,
                    gpu_memory_gb: float | None = None) -> tuple[NnUNetConfig, int]:
    """nnU-Net v2's 3d_fullres patch and batch size for images of ``median_shape`` voxels at ``spacing``.

    Starts from a 256**3-voxel patch shaped like the spacing's field of view, clipped to the median
    shape, and shrinks the axis largest relative to the median shape until the network's estimated
    feature-map volume fits the planner's budget. Returns the config and the batch size (>= 2; the
    default planner's cap of 5 % of the dataset per batch is not applied: it needs the dataset size).
    """
    if planner not in PLANNERS:
        raise ConfigError(f"unknown planner {planner!r}; choose one of {sorted(PLANNERS)}")
    ref_val, ref_gb, default_gb, arch = PLANNERS[planner]
    reference = ref_val * (gpu_memory_gb or default_gb) / ref_gb
    inv = [1 / s for s in spacing]
    scale = (256**3 / math.prod(inv)) ** (1 / 3)
    patch = [min(round(i * scale), int(m)) for i, m in zip(inv, median_shape)]

    def estimate(p: Sequence[int]) -> tuple[NnUNetConfig, float]:
        cfg = NnUNetConfig(architecture=arch, input_channels=input_channels, num_classes=num_classes,
                           patch_size=tuple(p), spacing=tuple(spacing))
        with torch.device("meta"):  # only shapes are needed: no memory, no initialisation cost
            net = build_nnunet(cfg)
        net.decoder.deep_supervision = False  # nnU-Net estimates without deep supervision
        return cfg, float(net.compute_conv_feature_map_size(cfg.patch_size))

    cfg, est = estimate(patch)
    while est > reference:
        patch = list(cfg.patch_size)
        axis = max(range(len(patch)), key=lambda i: (patch[i] / median_shape[i], i))
        smaller = list(patch)
        smaller[axis] -= get_pool_and_conv_props(spacing, patch).divisor[axis]
        patch[axis] -= get_pool_and_conv_props(spacing, smaller).divisor[axis]
        cfg, est = estimate(patch)
    return cfg, max(round(reference / est * 2), 2)
