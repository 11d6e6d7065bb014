"""The model bundle: the one folder format every trained model travels in.

    <model folder>/
      config.json         format, name, network spec (registry name + kwargs), preprocessing,
                          inference settings, members, labels, meta (contrast, data, figures)
      model.safetensors   weights of every member, keys ``"<member>.<state-dict key>"``
      README.md           model card

``save_pretrained``, ``PVSModel.from_pretrained``, training's export, the importers and the zoo
all write or read exactly this. Weights are safetensors only: loading never unpickles anything.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from mednet_pvs.errors import ConfigError, InputError
from mednet_pvs.io import PathType, atomic_path, write_json, write_text

FORMAT = "mednet-pvs-bundle/1"
CONFIG, WEIGHTS, CARD = "config.json", "model.safetensors", "README.md"


def _member_names(n: int) -> list[str]:
    return [f"member_{i}" for i in range(n)]


def bundle_config(model: Any) -> dict[str, Any]:
    """The ``config.json`` content of a :class:`~mednet_pvs.inference.model.PVSModel`."""
    if model.network is None:
        raise InputError(None, "this model's networks are not from the registry (network spec is None): it cannot be saved as a bundle")
    return {
        "format": FORMAT,
        "name": model.name,
        "network": model.network,
        "preprocessing": model.preprocessing.to_dict(),
        "inference": model.inference.to_dict(),
        "members": _member_names(len(model.networks)),
        "labels": {"0": "background", "1": "PVS"},
        "meta": model.meta,
    }


def default_card(config: dict[str, Any]) -> str:
    """A minimal model card from the config (a zoo entry or training export supplies a fuller one)."""
    meta = config.get("meta", {})
    lines = [
        f"# {config['name']}",
        "",
        f"PVS segmentation model for mednet-pvs ({config['network']['name']}, {len(config['members'])} member(s)).",
        "",
        "```python",
        "from mednet_pvs.inference import PVSModel",
        "model = PVSModel.from_pretrained('<this folder>')",
        "pred = model.predict('scan.nii.gz')",
        "```",
        "",
        f"- preprocessing: `{json.dumps(config['preprocessing'])}`",
        f"- inference: `{json.dumps(config['inference'])}`",
    ]
    for key in ("contrast", "training_data", "metrics", "licence", "citation"):
        if key in meta:
            lines.append(f"- {key.replace('_', ' ')}: {json.dumps(meta[key]) if not isinstance(meta[key], str) else meta[key]}")
    return "\n".join(lines) + "\n"


def save_bundle(model: Any, folder: PathType, *, card: str | None = None, dtype: torch.dtype | None = None) -> Path:
    """Write ``model`` (a PVSModel) as a bundle folder; each file is written atomically.

    ``dtype`` (e.g. ``torch.float16``) stores the floating-point weights in that type (half the
    size); loading casts them back to the network's own dtype."""
    from safetensors.torch import save_file

    from mednet_pvs.nets.state_dicts import alias_groups

    folder = Path(folder)
    config = bundle_config(model)
    tensors: dict[str, torch.Tensor] = {}
    for member, net in zip(config["members"], model.networks):
        canonical = alias_groups(net)  # modules registered twice share tensors: store each tensor once
        for key, value in net.state_dict().items():
            if key in canonical:
                value = value.detach().to("cpu")
                if dtype is not None and value.is_floating_point():
                    value = value.to(dtype)
                tensors[f"{member}.{key}"] = value.contiguous()
    with atomic_path(folder / WEIGHTS) as tmp:
        save_file(tensors, str(tmp), metadata={"format": FORMAT})
    write_json(config, folder / CONFIG)
    write_text(card if card is not None else default_card(config), folder / CARD)
    return folder


def read_config(folder: PathType) -> dict[str, Any]:
    """Read and check a bundle's ``config.json``."""
    path = Path(folder) / CONFIG
    if not Path(folder).is_dir():
        raise InputError(folder, "model folder not found")
    if not path.exists():
        raise InputError(path, "missing: not a mednet-pvs model folder (expected config.json + model.safetensors)")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(path, f"not valid JSON ({e})") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise InputError(path, f"unknown bundle format {config.get('format') if isinstance(config, dict) else None!r} (expected {FORMAT!r})")
    required = ("name", "frangi") if config.get("kind") == "frangi" else ("name", "network", "preprocessing", "inference", "members")
    missing = [k for k in required if k not in config]
    if missing:
        raise InputError(path, f"missing key(s) {', '.join(missing)}")
    return config


def load_bundle(folder: PathType, *, device: str | torch.device | None = None) -> Any:
    """Build a ready model from a bundle folder: a :class:`~mednet_pvs.inference.model.PVSModel`,
    or a :class:`~mednet_pvs.inference.frangi_model.FrangiModel` for ``"kind": "frangi"``."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from mednet_pvs.inference.model import PVSModel
    from mednet_pvs.nets import create_network_from_config
    from mednet_pvs.nets.state_dicts import load_exact

    folder = Path(folder)
    config = read_config(folder)
    if config.get("kind") == "frangi":
        from mednet_pvs.inference.frangi_model import FrangiModel

        try:
            return FrangiModel(config["frangi"], name=config["name"], meta=config.get("meta", {}))
        except ConfigError as e:
            raise InputError(folder / CONFIG, str(e)) from None
    wpath = folder / WEIGHTS
    if not wpath.exists():
        raise InputError(wpath, "missing: the model folder has no weights")
    try:
        tensors = load_file(str(wpath))
    except (SafetensorError, OSError, ValueError) as e:
        raise InputError(wpath, f"not a readable safetensors file ({e})") from None
    networks = []
    for member in config["members"]:
        try:
            net = create_network_from_config(config["network"])
        except ConfigError as e:
            raise InputError(folder / CONFIG, f"network spec cannot be built: {e}") from None
        prefix = f"{member}."
        sd = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        if not sd:
            raise InputError(wpath, f"no weights for member {member!r}")
        try:
            load_exact(net, sd, f"weights of {member!r}")  # fills in aliases; names missing/unexpected/misshapen keys
        except ConfigError as e:
            raise InputError(wpath, f"weights of {member!r} do not fit the network {config['network'].get('name')!r}: {e}") from None
        networks.append(net)
    try:
        return PVSModel(
            networks,
            config["network"],
            config["preprocessing"],
            config["inference"],
            name=config["name"],
            meta=config.get("meta", {}),
            device=device,
        )
    except ConfigError as e:
        raise InputError(folder / CONFIG, str(e)) from None
