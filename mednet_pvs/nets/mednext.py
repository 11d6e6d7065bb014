"""MedNeXt v1 (Roy et al., MICCAI 2023), 3D: a faithful port of MIC-DKFZ/MedNeXt's ``mednextv1``.

Same modules, names and parameter shapes as the original (``nnunet_mednext/network_architecture/
mednextv1``), so its checkpoints load unchanged (see :mod:`mednet_pvs.zoo.import_checkpoints`). MONAI's
MedNeXt is a different network (its down blocks use another expansion ratio).

Layout (C = ``n_channels``, level i has ``C * 2**i`` channels and 1/2**i resolution)::

    stem (1x1x1) -> enc_block_i, down_i (i = 0..3) -> bottleneck
                 -> up_i + skip_i -> dec_block_i (i = 3..0) -> out_0 (+ out_1..out_4 deep supervision)

Every block is ``depthwise kxkxk conv -> GroupNorm(groups=channels) -> 1x1x1 expand (x exp_r) -> GELU
[-> GRN] -> 1x1x1 project`` with an identity residual (``do_res``) or, in down/up blocks, a strided
1x1x1 (transposed) conv residual (``do_res_up_down``). v1 has no layer scale.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Mapping, Union

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from mednet_pvs.errors import ConfigError, InputError
from mednet_pvs.nets.spec import NetConfig, brief
from mednet_pvs.nets.registry import register_network
from mednet_pvs.nets.shapes import INPUT_NAME, check_input
from mednet_pvs.nets.state_dicts import StateDict, describe_mismatch, load_exact, shapes_of, unwrap_state_dict

N_LEVELS = 4  # down-samplings; the input must be a multiple of 2**N_LEVELS per axis
N_STAGES = 2 * N_LEVELS + 1  # enc 0..3, bottleneck, dec 3..0: the length of exp_r and block_counts

Output = Union[torch.Tensor, list[torch.Tensor]]


@dataclass
class MedNeXtConfig(NetConfig):
    """Arguments of the original ``MedNeXt(...)`` constructor (3D, ``kernel_size`` for encoder and decoder).

    ``exp_r`` and ``block_counts`` have one entry per stage: encoder levels 0-3, bottleneck,
    decoder levels 3-0. ``gradient_checkpointing`` is the original's ``checkpoint_style='outside_block'``.
    ``ds_outputs_in_eval``: return the deep-supervision list in eval mode too (the original's behaviour).
    """

    in_channels: int = 1
    n_classes: int = 2
    n_channels: int = 32
    exp_r: tuple[int, ...] = (2,) * N_STAGES
    kernel_size: int = 3
    block_counts: tuple[int, ...] = (2,) * N_STAGES
    deep_supervision: bool = True
    do_res: bool = True
    do_res_up_down: bool = True
    norm_type: str = "group"
    grn: bool = False
    gradient_checkpointing: bool = False
    ds_outputs_in_eval: bool = False

    _one_for_all = ("exp_r",)  # one expansion ratio for every stage, as the original takes

    def __post_init__(self) -> None:
        if isinstance(self.exp_r, int):
            self.exp_r = (self.exp_r,) * N_STAGES
        super().__post_init__()
        for name in ("exp_r", "block_counts"):
            value = getattr(self, name)
            if len(value) != N_STAGES or not all(isinstance(v, int) and v >= 1 for v in value):
                raise ConfigError(f"MedNeXt {name} must be {N_STAGES} integers >= 1, got {value}")
        if not (isinstance(self.kernel_size, int) and self.kernel_size >= 1 and self.kernel_size % 2):
            raise ConfigError(f"MedNeXt kernel_size must be an odd integer >= 1, got {self.kernel_size}")
        if self.norm_type not in ("group", "layer"):
            raise ConfigError(f"MedNeXt norm_type must be 'group' or 'layer', got {self.norm_type!r}")
        for name in ("in_channels", "n_classes", "n_channels"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 1):
                raise ConfigError(f"MedNeXt {name} must be an integer >= 1, got {getattr(self, name)!r}")

    def describe(self) -> str:
        """One line: ``MedNeXt v1, 32 base channels, kernel 5, blocks (3,4,8,...), expansion (3,4,8,...), ...``."""
        extras = [s for s, on in (("GRN", self.grn), ("layer norm", self.norm_type == "layer"),
                                  ("no residuals", not self.do_res)) if on]
        return ", ".join([f"MedNeXt v1, {self.n_channels} base channels", f"kernel {self.kernel_size}",
                          f"blocks {brief(self.block_counts)}", f"expansion {brief(self.exp_r)}", *extras,
                          f"{self.in_channels} input channel(s)", f"{self.n_classes} classes"])


# The original's create_mednext_v1 presets (S, B, M, L); M and L use gradient checkpointing there.
PRESETS: dict[str, dict] = {
    "S": dict(exp_r=(2,) * 9, block_counts=(2,) * 9),
    "B": dict(exp_r=(2, 3, 4, 4, 4, 4, 4, 3, 2), block_counts=(2,) * 9),
    "M": dict(exp_r=(2, 3, 4, 4, 4, 4, 4, 3, 2), block_counts=(3, 4, 4, 4, 4, 4, 4, 4, 3),
              gradient_checkpointing=True),
    "L": dict(exp_r=(3, 4, 8, 8, 8, 8, 8, 4, 3), block_counts=(3, 4, 8, 8, 8, 8, 8, 4, 3),
              gradient_checkpointing=True),
}


def preset_config(size: str, kernel_size: int = 3, **overrides) -> MedNeXtConfig:
    """The original's ``create_mednext_v1(.., size, kernel_size, deep_supervision=True)`` as a config."""
    if size not in PRESETS:
        raise ConfigError(f"unknown MedNeXt size {size!r}; choose one of {sorted(PRESETS)}")
    return MedNeXtConfig.from_dict({"n_channels": 32, "do_res": True, "do_res_up_down": True, **PRESETS[size],
                                    "kernel_size": kernel_size, **overrides})


class ChannelsFirstLayerNorm(nn.Module):
    """LayerNorm over the channel axis of (B, C, X, Y, Z) (the original's ``norm_type='layer'``)."""

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        return self.weight[:, None, None, None] * x + self.bias[:, None, None, None]


class MedNeXtBlock(nn.Module):
    """(B, C_in, X, Y, Z) -> (B, C_out, X, Y, Z); identity residual when ``do_res`` (needs C_in == C_out)."""

    def __init__(self, in_channels: int, out_channels: int, exp_r: int, kernel_size: int,
                 do_res: bool = True, norm_type: str = "group", grn: bool = False) -> None:
        super().__init__()
        self.do_res = do_res
        self.conv1 = self._depthwise(in_channels, kernel_size)
        self.norm = (nn.GroupNorm(in_channels, in_channels) if norm_type == "group"
                     else ChannelsFirstLayerNorm(in_channels))
        self.conv2 = nn.Conv3d(in_channels, exp_r * in_channels, kernel_size=1)
        self.act = nn.GELU()
        self.conv3 = nn.Conv3d(exp_r * in_channels, out_channels, kernel_size=1)
        self.grn = grn
        if grn:  # global response normalisation (ConvNeXt v2); off in every v1 preset
            self.grn_beta = nn.Parameter(torch.zeros(1, exp_r * in_channels, 1, 1, 1))
            self.grn_gamma = nn.Parameter(torch.zeros(1, exp_r * in_channels, 1, 1, 1))

    def _depthwise(self, channels: int, kernel_size: int) -> nn.Module:
        return nn.Conv3d(channels, channels, kernel_size, stride=1, padding=kernel_size // 2, groups=channels)

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.act(self.conv2(self.norm(self.conv1(x))))
        if self.grn:
            gx = torch.norm(x1, p=2, dim=(-3, -2, -1), keepdim=True)
            nx = gx / (gx.mean(dim=1, keepdim=True) + 1e-6)
            x1 = self.grn_gamma * (x1 * nx) + self.grn_beta + x1
        return self.conv3(x1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.branch(x)
        return x + x1 if self.do_res else x1


class MedNeXtDownBlock(MedNeXtBlock):
    """(B, C_in, X, Y, Z) -> (B, C_out, X/2, Y/2, Z/2): stride-2 depthwise conv; 1x1x1 stride-2 residual."""

    def __init__(self, in_channels: int, out_channels: int, exp_r: int, kernel_size: int,
                 do_res: bool = True, norm_type: str = "group", grn: bool = False) -> None:
        super().__init__(in_channels, out_channels, exp_r, kernel_size, False, norm_type, grn)
        self.res_conv = nn.Conv3d(in_channels, out_channels, kernel_size=1, stride=2) if do_res else None

    def _depthwise(self, channels: int, kernel_size: int) -> nn.Module:
        return nn.Conv3d(channels, channels, kernel_size, stride=2, padding=kernel_size // 2, groups=channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.branch(x)
        return x1 if self.res_conv is None else x1 + self.res_conv(x)


class MedNeXtUpBlock(MedNeXtBlock):
    """(B, C_in, X, Y, Z) -> (B, C_out, 2X, 2Y, 2Z): stride-2 transposed depthwise conv, then the
    original's one-voxel pad at the start of each axis (2X-1 -> 2X); transposed 1x1x1 residual."""

    def __init__(self, in_channels: int, out_channels: int, exp_r: int, kernel_size: int,
                 do_res: bool = True, norm_type: str = "group", grn: bool = False) -> None:
        super().__init__(in_channels, out_channels, exp_r, kernel_size, False, norm_type, grn)
        self.res_conv = (nn.ConvTranspose3d(in_channels, out_channels, kernel_size=1, stride=2)
                         if do_res else None)

    def _depthwise(self, channels: int, kernel_size: int) -> nn.Module:
        return nn.ConvTranspose3d(channels, channels, kernel_size, stride=2, padding=kernel_size // 2,
                                  groups=channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = F.pad(self.branch(x), (1, 0, 1, 0, 1, 0))
        if self.res_conv is not None:
            x1 = x1 + F.pad(self.res_conv(x), (1, 0, 1, 0, 1, 0))
        return x1


class OutBlock(nn.Module):
    """(B, C, X, Y, Z) -> logits (B, n_classes, X, Y, Z); a 1x1x1 transposed conv as in the original."""

    def __init__(self, in_channels: int, n_classes: int) -> None:
        super().__init__()
        self.conv_out = nn.ConvTranspose3d(in_channels, n_classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_out(x)


class MedNeXt(nn.Module):
    """MedNeXt v1, 3D. Input (B, in_channels, X, Y, Z) float, X/Y/Z multiples of 16 (``required_divisor``),
    not all three equal to 16 (the 1/16 bottleneck needs more than one voxel).

    Output: logits (B, n_classes, X, Y, Z); with ``deep_supervision`` in training mode (or with
    ``ds_outputs_in_eval``) a list of 5 logit tensors from full resolution down to 1/16.
    """

    network_name = "mednext"
    #: The encoder (for freezing): stem, encoder stages, down-samplings and bottleneck.
    encoder_prefixes = ("stem.", "enc_block_", "down_", "bottleneck.")
    optimizer_preset = "mednext"  # AdamW, as the MedNeXt authors trained it

    def __init__(self, config: MedNeXtConfig | None = None, **kwargs) -> None:
        super().__init__()
        if config is None:
            config = MedNeXtConfig.from_dict(kwargs)
        elif kwargs:
            config = config.replace(**kwargs)
        self.config = config
        self.required_divisor = (2**N_LEVELS,) * 3
        c, r, n, k = config.n_channels, config.exp_r, config.block_counts, config.kernel_size
        common = dict(kernel_size=k, norm_type=config.norm_type)

        def stage(channels: int, s: int) -> nn.Sequential:
            return nn.Sequential(*[MedNeXtBlock(channels, channels, r[s], do_res=config.do_res, grn=config.grn,
                                                **common) for _ in range(n[s])])

        # Registration order follows the original, so state dicts list keys in the same order.
        self.stem = nn.Conv3d(config.in_channels, c, kernel_size=1)
        for i in range(N_LEVELS):
            setattr(self, f"enc_block_{i}", stage(c * 2**i, i))
            # The original builds down_0 without passing ``grn`` (so never with GRN): kept.
            setattr(self, f"down_{i}", MedNeXtDownBlock(c * 2**i, c * 2 ** (i + 1), r[i + 1],
                                                        do_res=config.do_res_up_down,
                                                        grn=config.grn and i > 0, **common))
        self.bottleneck = stage(c * 2**N_LEVELS, N_LEVELS)
        for i in reversed(range(N_LEVELS)):
            s = N_STAGES - 1 - i
            setattr(self, f"up_{i}", MedNeXtUpBlock(c * 2 ** (i + 1), c * 2**i, r[s],
                                                    do_res=config.do_res_up_down, grn=config.grn, **common))
            setattr(self, f"dec_block_{i}", stage(c * 2**i, s))
        self.out_0 = OutBlock(c, config.n_classes)
        # The original's checkpointing work-around; unused here (non-reentrant checkpointing needs none),
        # kept frozen so that checkpoints, state-dict keys and parameter counts match the original.
        self.dummy_tensor = nn.Parameter(torch.tensor([1.0]), requires_grad=False)
        if config.deep_supervision:
            for i in range(1, N_LEVELS + 1):
                setattr(self, f"out_{i}", OutBlock(c * 2**i, config.n_classes))

    @property
    def description(self) -> str:
        return self.config.describe()

    def _run(self, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if self.config.gradient_checkpointing and self.training and torch.is_grad_enabled():
            if isinstance(module, nn.Sequential):
                for block in module:
                    x = checkpoint(block, x, use_reentrant=False)
                return x
            return checkpoint(module, x, use_reentrant=False)
        return module(x)

    def forward(self, x: torch.Tensor) -> Output:
        check_input(x, self.config.in_channels, self.required_divisor)
        if all(s == 2**N_LEVELS for s in x.shape[2:]):  # GroupNorm cannot normalise a 1-voxel bottleneck
            raise InputError(INPUT_NAME, f"spatial shape {tuple(x.shape[2:])} is too small for MedNeXt: "
                                         f"make at least one axis {2 ** (N_LEVELS + 1)} voxels or more")
        ds = self.config.deep_supervision and (self.training or self.config.ds_outputs_in_eval)
        x = self.stem(x)
        skips = []
        for i in range(N_LEVELS):
            x = self._run(getattr(self, f"enc_block_{i}"), x)
            skips.append(x)
            x = self._run(getattr(self, f"down_{i}"), x)
        x = self._run(self.bottleneck, x)
        low_res = [self._run(self.out_4, x)] if ds else []
        for i in reversed(range(N_LEVELS)):
            x = skips.pop() + self._run(getattr(self, f"up_{i}"), x)
            x = self._run(getattr(self, f"dec_block_{i}"), x)
            if ds and i > 0:
                low_res.append(self._run(getattr(self, f"out_{i}"), x))
        x = self._run(self.out_0, x)
        return [x, *reversed(low_res)] if ds else x


@register_network("mednext")
def mednext(**overrides) -> MedNeXt:
    """A MedNeXt v1 of any configuration (the fields of :class:`MedNeXtConfig`)."""
    return MedNeXt(MedNeXtConfig.from_dict(overrides))


def _mednext_preset(size: str, kernel_size: int, /, **overrides) -> MedNeXt:
    return MedNeXt(preset_config(size, **{"kernel_size": kernel_size, **overrides}))


for _size in PRESETS:  # mednext_s_k3 ... mednext_l_k5: the original's create_mednext_v1 presets
    for _k in (3, 5):
        register_network(f"mednext_{_size.lower()}_k{_k}")(functools.partial(_mednext_preset, _size, _k))


# ---------------------------------------------------------------------------------------------------
# Reading a configuration back from an original state dict, and UpKern.


def _block_indices(sd: Mapping[str, torch.Tensor], prefix: str) -> list[int]:
    return sorted({int(k[len(prefix):].split(".")[0]) for k in sd if k.startswith(prefix)})


def infer_mednext_config(state_dict: Mapping[str, torch.Tensor], *, do_res: bool = True,
                         norm_type: str = "group", gradient_checkpointing: bool = False) -> MedNeXtConfig:
    """The :class:`MedNeXtConfig` of an original MedNeXt v1 state dict, from its keys and shapes alone.

    Read from the weights: ``in_channels``, ``n_channels``, ``n_classes``, ``block_counts``,
    ``exp_r``, ``kernel_size``, ``deep_supervision`` (``out_1..4``), ``do_res_up_down``
    (``res_conv``) and ``grn``. Not in the weights, so given as arguments: ``do_res`` (identity
    residuals have no parameters; True in every original preset and trainer) and ``norm_type``
    (group and layer norm have the same parameters). Raises :class:`ConfigError` when the weights
    are not those of a MedNeXt v1 (the config's network is checked to have exactly these keys and shapes).
    """
    sd = unwrap_state_dict(state_dict)
    if "stem.weight" not in sd or "out_0.conv_out.weight" not in sd:
        raise ConfigError("not a MedNeXt v1 state dict: no 'stem.weight' / 'out_0.conv_out.weight'")
    n_channels, in_channels = sd["stem.weight"].shape[:2]
    stage_prefixes = ([f"enc_block_{i}." for i in range(N_LEVELS)] + ["bottleneck."]
                      + [f"dec_block_{i}." for i in reversed(range(N_LEVELS))])
    block_counts, exp_r = [], []
    for s, prefix in enumerate(stage_prefixes):
        idx = _block_indices(sd, prefix)
        if not idx or idx != list(range(len(idx))):
            raise ConfigError(f"not a MedNeXt v1 state dict: stage '{prefix[:-1]}' has blocks {idx}")
        level = s if s <= N_LEVELS else N_STAGES - 1 - s
        block_counts.append(len(idx))
        exp_r.append(sd[f"{prefix}0.conv2.weight"].shape[0] // (n_channels * 2**level))
    kernel_sizes = {tuple(v.shape[2:]) for k, v in sd.items() if k.endswith("conv1.weight")}
    if len(kernel_sizes) != 1 or len(set(next(iter(kernel_sizes)))) != 1:
        raise ConfigError(f"MedNeXt depthwise kernels must all be the same cube, got {sorted(kernel_sizes)}")
    config = MedNeXtConfig(
        in_channels=int(in_channels), n_classes=int(sd["out_0.conv_out.weight"].shape[1]),
        n_channels=int(n_channels), exp_r=tuple(int(e) for e in exp_r),
        kernel_size=int(next(iter(kernel_sizes))[0]), block_counts=tuple(block_counts),
        deep_supervision="out_1.conv_out.weight" in sd, do_res=do_res,
        do_res_up_down="down_0.res_conv.weight" in sd, norm_type=norm_type,
        grn=any(k.endswith("grn_gamma") for k in sd), gradient_checkpointing=gradient_checkpointing,
    )
    expected = shapes_of(MedNeXt(config).state_dict())
    if "dummy_tensor" not in sd:  # unused by the network; tolerated when absent
        del expected["dummy_tensor"]
    problem = describe_mismatch(expected, shapes_of(sd))
    if problem:
        raise ConfigError(f"state dict is not a MedNeXt v1 of the inferred configuration: {problem}")
    return config


def load_mednext_state_dict(state_dict: Mapping[str, torch.Tensor],
                            config: MedNeXtConfig | None = None) -> MedNeXt:
    """A :class:`MedNeXt` holding an original MedNeXt v1 state dict (raw, or a checkpoint dict whose
    ``state_dict`` holds it). The configuration is read from the weights when ``config`` is None.
    The unused ``dummy_tensor`` is loaded when present and tolerated when absent."""
    sd = unwrap_state_dict(state_dict)
    model = MedNeXt(config or infer_mednext_config(sd))
    if "dummy_tensor" not in sd:
        sd["dummy_tensor"] = model.dummy_tensor.detach().clone()
    return load_exact(model, sd, "MedNeXt v1 state dict")


def _same_layers(source: nn.Module | Mapping[str, torch.Tensor], target: MedNeXt, what: str) -> tuple[StateDict, StateDict]:
    """(source's, target's) state dicts; refused unless both have the same layer names."""
    src: StateDict = unwrap_state_dict(source.state_dict() if isinstance(source, nn.Module) else source)
    tgt = target.state_dict()
    keys_problem = describe_mismatch({k: () for k in tgt}, {k: () for k in src})
    if keys_problem:
        raise ConfigError(f"{what} needs two networks with the same layers: {keys_problem}")
    return src, tgt


def _resize_kernel(s: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """``s`` with its spatial size changed to ``shape[2:]`` by trilinear interpolation
    (``align_corners=False``, as the original ``upkern_load_weights``); unchanged when equal."""
    if s.ndim != 5 or s.shape[2:] == shape[2:]:
        return s
    return F.interpolate(s, size=tuple(shape[2:]), mode="trilinear", align_corners=False)


def upkern(source: nn.Module | Mapping[str, torch.Tensor], target: MedNeXt) -> MedNeXt:
    """UpKern: initialise ``target`` (e.g. a k5 MedNeXt) from a trained ``source`` (e.g. k3).

    Weights whose shapes differ only in their spatial size (the depthwise kernels) are resized by
    trilinear interpolation (``align_corners=False``, as the original ``upkern_load_weights``); all
    others are copied. ``source`` is a model or a (possibly wrapped) state dict with the same keys
    as ``target``. Returns ``target``.
    """
    src, tgt = _same_layers(source, target, "UpKern")
    new: StateDict = {}
    for k, t in tgt.items():
        s = src[k].to(dtype=t.dtype, device=t.device)
        if s.shape == t.shape or (s.ndim == 5 and s.shape[:2] == t.shape[:2]):
            new[k] = _resize_kernel(s, t.shape)
        else:
            raise ConfigError(f"UpKern: {k} has shape {tuple(s.shape)} in the source and {tuple(t.shape)} in "
                              "the target; only spatial kernel sizes may differ")
    target.load_state_dict(new)
    return target


def widen(source: nn.Module | Mapping[str, torch.Tensor], target: MedNeXt) -> MedNeXt:
    """Initialise a wider ``target`` (more base channels and/or a larger expansion ratio, e.g. 32
    channels) from a trained ``source`` (e.g. 16) so that it computes the same function.

    Every source tensor fills the leading block of the target's; the target's fresh initialisation
    stays in the new channels, except where an existing output channel would read a new input
    channel: those weights are zero. Since MedNeXt's group norm normalises each channel on its own
    (``norm_type="group"``) and its decoder adds skips rather than concatenating them, the existing
    channels then evolve exactly as in ``source`` and the outputs read only them; the new channels
    carry signal from the start (their incoming weights are random), so training gives them a
    gradient. Depthwise kernels of another size are resized as :func:`upkern` does (the function is
    then no longer identical). Layer norm (over channels) cannot be widened this way: refused.
    Returns ``target``.
    """
    if target.config.norm_type != "group":
        raise ConfigError("widening needs MedNeXt's per-channel group norm; layer norm mixes the new channels in")
    src, tgt = _same_layers(source, target, "widening")
    for k, axis, what in (("stem.weight", 1, "input channels"), ("out_0.conv_out.bias", 0, "classes")):
        if src[k].shape[axis] != tgt[k].shape[axis]:  # widening them would mislabel channels
            raise ConfigError(f"widening keeps the {what}: the source has {src[k].shape[axis]}, the target {tgt[k].shape[axis]}")
    new: StateDict = {}
    for k, t in tgt.items():
        s = src[k].to(dtype=t.dtype, device=t.device)
        if s.ndim != t.ndim or any(a > b for a, b in zip(s.shape[:2], t.shape[:2])):
            raise ConfigError(f"widening: {k} has shape {tuple(s.shape)} in the source and {tuple(t.shape)} in "
                              "the target; the target must be at least as wide in every layer")
        s = _resize_kernel(s, s.shape[:2] + t.shape[2:])
        w = t.detach().clone()
        w[tuple(slice(0, n) for n in s.shape)] = s
        module = target.get_submodule(k.rsplit(".", 1)[0]) if s.ndim == 5 else None
        if isinstance(module, nn.modules.conv._ConvNd) and module.groups == 1:  # existing outputs must not read
            # new inputs (depthwise convolutions, groups == channels, read their own channel only)
            out_axis, in_axis = (1, 0) if isinstance(module, nn.ConvTranspose3d) else (0, 1)
            idx: list[slice] = [slice(None)] * 5
            idx[out_axis], idx[in_axis] = slice(0, s.shape[out_axis]), slice(s.shape[in_axis], None)
            w[tuple(idx)] = 0
        new[k] = w
    target.load_state_dict(new)
    return target
