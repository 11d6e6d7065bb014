"""The model bundle: the one folder format every model travels in.

    <model folder>/
      config.json         BundleConfig: format, kind, name, network spec, preprocessing, inference
                          settings, members, labels, weights' sha256, meta (contrast, data, figures)
      model.safetensors   weights of every member, keys ``"<member>.<state-dict key>"`` (none for
                          models without weights, e.g. the Frangi baseline)
      README.md           model card (:func:`mednet_pvs.inference.card.model_card`)

:func:`write_bundle` and :func:`read_bundle_config` are the one pair that writes and reads this
format; they know no model class. Each model *kind* registers how it is built from a bundle
(:func:`register_kind`): the network ensemble (``"network"``, :mod:`~mednet_pvs.inference.model`),
imported nnU-Net models in exact mode (``"nnunet"``, :mod:`~mednet_pvs.inference.nnunet_model`)
and Frangi (``"frangi"``, :mod:`~mednet_pvs.inference.frangi_model`); :func:`load_bundle` looks
the kind up. Adding a kind is one new module with its ``@register_kind``. Weights are safetensors
only (loading never unpickles anything), and their sha256, recorded in ``config.json`` when
written, is checked when read. Bundles written before the sha256 was recorded still load.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mednet_pvs.classical.frangi import FrangiConfig
from mednet_pvs.config import Config, shown
from mednet_pvs.data.nnunet_preprocessing import NnUNetPipeline
from mednet_pvs.data.preprocessing import PreprocessConfig
from mednet_pvs.errors import ConfigError, InputError
from mednet_pvs.inference.settings import InferenceConfig
from mednet_pvs.io import PathType, atomic_path, write_json, write_text
from mednet_pvs.nets import NetworkSpec
from mednet_pvs.registries import Registry

FORMAT = "mednet-pvs-bundle/1"
CONFIG, WEIGHTS, CARD = "config.json", "model.safetensors", "README.md"
DEFAULT_LABELS = {"0": "background", "1": "PVS"}


@dataclass
class BundleConfig(Config):
    """The content of a bundle's ``config.json``.

    Attributes:
        format: the format version, :data:`FORMAT`.
        name: the model's short name (logs, outputs, model card).
        kind: how the model is built from the bundle (a :func:`register_kind` name).
        network: registry name + constructor arguments of every member (network kinds).
        preprocessing: what the networks were trained on (network kinds).
        inference: sliding window, threshold, minimum cluster size (network kinds).
        members: names of the ensemble members (weights ``"<member>.<key>"``).
        labels: output label values -> names.
        frangi: the filter and threshold settings (kind ``"frangi"``).
        nnunet: nnU-Net's own pre- and post-processing, run step for step (kind ``"nnunet"``:
            imported nnU-Net v1/v2 models in exact mode).
        weights_sha256: sha256 of ``model.safetensors`` (checked on load; ``None`` in bundles
            written before it was recorded, and in bundles without weights).
        meta: everything else worth keeping (contrast, training data and run, figures, provenance).
    """

    _what = "bundle"

    format: str = FORMAT
    name: str = "model"
    kind: str = "network"
    network: NetworkSpec | None = None
    preprocessing: PreprocessConfig | None = None
    inference: InferenceConfig | None = None
    members: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_LABELS))
    frangi: FrangiConfig | None = None
    nnunet: NnUNetPipeline | None = None
    weights_sha256: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        """This format, a name and a kind, distinct member names, a sha256 of 64 hex digits (or none)."""
        if self.format != FORMAT:
            raise ConfigError(f"must be {FORMAT!r}, not {shown(self.format)}", field="format")
        for name in ("name", "kind"):
            if not getattr(self, name).strip():
                raise ConfigError("must not be empty", field=name)
        if not all(m.strip() for m in self.members) or len(set(self.members)) != len(self.members):
            raise ConfigError(f"must be distinct, non-empty member names, not {shown(self.members)}", field="members")
        sha = self.weights_sha256
        if sha is not None and not (len(sha) == 64 and all(c in "0123456789abcdef" for c in sha)):
            raise ConfigError(f"must be 64 lowercase hex digits or null, not {shown(sha)}", field="weights_sha256")

    def require(self, *names: str) -> None:
        """ConfigError unless every field in ``names`` is set (:func:`load_bundle` names the file)."""
        missing = [n for n in names if getattr(self, n) in (None, ())]
        if missing:
            raise ConfigError(f"missing key(s) {', '.join(missing)} for a {self.kind!r} model")


def member_names(n: int) -> tuple[str, ...]:
    """The member names of an ensemble of ``n`` networks."""
    return tuple(f"member_{i}" for i in range(n))


def sha256_of(path: PathType) -> str:
    """Hex sha256 of a file (read in 8 MiB blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(8 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------------------------- reading
def read_bundle_config(folder: PathType) -> BundleConfig:
    """Read and check a bundle's ``config.json`` (any kind): every key known, every value of its field's
    type and in its range (:meth:`BundleConfig.from_dict`); every problem is an InputError naming the
    file and the key's path (``.../config.json: inference.window.batch_size must be >= 1 ...``)."""
    folder = Path(folder)
    path = folder / CONFIG
    if not folder.is_dir():
        raise InputError(folder, "model folder not found")
    if not path.exists():
        raise InputError(path, "missing: not a mednet-pvs model folder (expected config.json + model.safetensors)")
    try:
        raw = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(path, f"not valid JSON ({e})") from None
    except OSError as e:
        raise InputError(path, f"cannot be read ({e.strerror or e})") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise InputError(path, f"unknown bundle format {raw.get('format') if isinstance(raw, dict) else None!r} (expected {FORMAT!r})")
    if "name" not in raw:
        raise InputError(path, "missing key(s) name")
    try:
        return BundleConfig.from_dict(raw)
    except (ConfigError, TypeError, ValueError) as e:  # ConfigError: the key's path, e.g. inference.window.batch_size
        raise InputError(path, str(e)) from None


def read_weights(folder: PathType, config: BundleConfig) -> dict[str, torch.Tensor]:
    """The bundle's ``model.safetensors`` as tensors, after checking its sha256 against the config."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(folder) / WEIGHTS
    if not path.exists():
        raise InputError(path, "missing: the model folder has no weights")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise InputError(path, f"not a readable safetensors file ({e})") from None
    if config.weights_sha256 is not None:
        digest = sha256_of(path)
        if digest != config.weights_sha256:
            raise InputError(path, f"sha256 {digest} does not match the {config.weights_sha256} recorded in {CONFIG}: "
                                   "the weights are corrupt or were replaced; refused")
    return tensors


# ---------------------------------------------------------------------------------- writing
def write_bundle(
    folder: PathType,
    config: BundleConfig,
    tensors: Mapping[str, torch.Tensor] | None = None,
    *,
    card: str | None = None,
    load_as: str | None = None,
) -> Path:
    """Write a bundle folder: the weights (if any) first, then ``config.json`` with their sha256,
    then the model card; each file atomically.

    Args:
        folder: destination (created).
        config: the bundle's config (its ``weights_sha256`` is filled in here).
        tensors: the weights, ``{"<member>.<key>": tensor}``; ``None`` for models without weights.
        card: the model card's text (default :func:`~mednet_pvs.inference.card.model_card`).
        load_as: what the default card's usage example passes to ``load_pretrained``.
    """
    from mednet_pvs.inference.card import model_card

    folder = Path(folder)
    if tensors is not None:
        from safetensors.torch import save_file

        with atomic_path(folder / WEIGHTS) as tmp:
            save_file(dict(tensors), str(tmp), metadata={"format": FORMAT})
        config = config.replace(weights_sha256=sha256_of(folder / WEIGHTS))
    write_json(config.to_dict(), folder / CONFIG)
    write_text(card if card is not None else model_card(config, load_as=load_as), folder / CARD)
    return folder


# ---------------------------------------------------------------------------------- kinds
#: kind -> ``loader(folder, config, device) -> model``.
Loader = Callable[[Path, BundleConfig, "str | torch.device | None"], Any]
_KINDS: Registry[Loader] = Registry("model kind")


def register_kind(kind: str) -> Callable[[Loader], Loader]:
    """Decorator: ``loader(folder, config, device)`` builds a model of ``kind`` from a bundle."""
    return _KINDS.register(kind)


def bundle_kinds() -> list[str]:
    """The registered model kinds."""
    return _KINDS.names()


def load_bundle(folder: PathType, *, device: str | torch.device | None = None) -> Any:
    """A ready model from a bundle folder, built by the loader registered for its kind (a loader's
    ConfigError becomes an InputError naming the folder's ``config.json``)."""
    folder = Path(folder)
    config = read_bundle_config(folder)
    if config.kind not in _KINDS:
        raise InputError(folder / CONFIG, f"unknown model kind {config.kind!r} (known: {', '.join(bundle_kinds())}); "
                                          "a newer mednet-pvs may be needed")
    try:
        return _KINDS[config.kind](folder, config, device)
    except ConfigError as e:
        raise InputError(folder / CONFIG, str(e)) from None
