"""Networks: MedNeXt v1 (a faithful port) and nnU-Net's U-Nets, behind one registry.

    from mednet_pvs.nets import create_network, list_networks, network_config, create_network_from_config

    net = create_network("mednext_l_k5")             # (B, 1, X, Y, Z) -> logits (B, 2, X, Y, Z)
    spec = network_config(net).to_dict()             # {"name": "mednext_l_k5", "kwargs": {...}}
    same = create_network_from_config(spec)

Output convention (all networks): logits (B, n_classes, X, Y, Z) in eval mode or without deep
supervision; with deep supervision in training mode, a list of logits from full resolution down
(each level half the size of the one before). ``config.ds_outputs_in_eval = True`` returns the list
in eval mode too (the original MedNeXt's behaviour). Inputs must be multiples of
:func:`required_divisor` per spatial axis (``InputError`` otherwise).

Every registered network satisfies :class:`Network` (config, registry name, input divisor, encoder
prefixes, optimiser preset, one-line description): training and the zoo ask the network
(:func:`encoder_parameters`, :func:`describe_network`) instead of knowing its family.

Networks know nothing of files: the safe reader is :mod:`mednet_pvs.safe_load`, the importers of
the original implementations' checkpoints and folders live in :mod:`mednet_pvs.zoo`.
Importing this package does not import dynamic_network_architectures (needed only to build nnU-Net nets).
"""
from __future__ import annotations

from mednet_pvs.nets.spec import NetConfig, NetworkSpec
from mednet_pvs.nets.registry import (
    Network,
    create_meta_network,
    create_network,
    create_network_from_config,
    describe_network,
    encoder_parameters,
    list_networks,
    network_config,
    register_network,
)
from mednet_pvs.nets.shapes import padded_shape, required_divisor
from mednet_pvs.nets.mednext import (  # noqa: E402  (registers the MedNeXt names)
    MedNeXt,
    MedNeXtConfig,
    infer_mednext_config,
    load_mednext_state_dict,
    upkern,
    widen,
)
from mednet_pvs.nets.nnunet import (  # registers nnunet_plain, nnunet_resenc_m, nnunet_resenc_l
    MissingDependency,
    NnUNetConfig,
    get_pool_and_conv_props,
    plan_patch_size,
)
from mednet_pvs.nets.generic_unet_v1 import (  # registers generic_unet_v1
    GenericUNetV1Config,
    infer_generic_unet_v1_config,
    load_generic_unet_v1,
    map_v1_state_dict,
)

__all__ = [
    "GenericUNetV1Config",
    "MedNeXt",
    "MedNeXtConfig",
    "MissingDependency",
    "NetConfig",
    "Network",
    "NetworkSpec",
    "NnUNetConfig",
    "create_meta_network",
    "create_network",
    "create_network_from_config",
    "describe_network",
    "encoder_parameters",
    "get_pool_and_conv_props",
    "infer_generic_unet_v1_config",
    "infer_mednext_config",
    "list_networks",
    "load_generic_unet_v1",
    "load_mednext_state_dict",
    "map_v1_state_dict",
    "network_config",
    "padded_shape",
    "plan_patch_size",
    "register_network",
    "required_divisor",
    "upkern",
    "widen",
]
