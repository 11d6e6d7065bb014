"""One path from a name to a ready model: ``load_pretrained``; and ``save_pretrained`` back to a folder.

    model = load_pretrained("frangi-t2w")                      # a registry name
    model = load_pretrained("hf://owner/repo@<commit>")        # a Hub repository, pinned
    model = load_pretrained("my_model/")                       # a bundle folder, or an nnU-Net v1 result folder
    save_pretrained(model, "my_model/")                        # config.json + model.safetensors + README.md
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mednet_pvs.errors import ConfigError, InputError
from mednet_pvs.io import PathType
from mednet_pvs.zoo import catalog
from mednet_pvs.zoo.hub import SCHEME, HubSpec, download_bundle, parse_hub_spec
from mednet_pvs.zoo.catalog import ZooEntry, find_entry, unknown_name_message

if TYPE_CHECKING:
    import torch


class ModelNotAvailableError(ConfigError):
    """A registered model whose weights this package cannot fetch (the message says how to get them)."""


def _looks_like_path(text: str) -> bool:
    return any(c in text for c in "/\\~") or text.startswith(".") or text.endswith((".json", ".safetensors"))


def load_pretrained(
    model: str | PathType,
    *,
    device: str | torch.device | None = None,
    revision: str | None = None,
    cache_dir: PathType | None = None,
    local_files_only: bool | None = None,
    token: str | bool | None = None,
) -> Any:
    """A ready model (``.predict(image)``) from a folder, a Hub spec or a registry name.

    Args:
        model: resolved in this order:

            - an existing folder: a bundle (``config.json`` + ``model.safetensors``), or an nnU-Net
              v2 trainer folder or v1 result folder (imported on the fly in exact mode, nnU-Net's
              own pipeline, every fold an ensemble member);
            - ``"hf://owner/repo[/subfolder][@revision]"``: a bundle on the Hugging Face Hub
              (without a revision it follows ``main``, with an
              :class:`~mednet_pvs.zoo.hub.UnpinnedRevisionWarning` naming the commit to pin);
            - a registry name (:func:`~mednet_pvs.zoo.list_models`): its pinned Hub weights (sha256
              checked), its bundled folder, or the Frangi baseline. Entries without public weights
              raise :class:`ModelNotAvailableError` saying how to get and import them.
        device: ``"cpu"``, ``"cuda"``... (default: CUDA when available).
        revision: Hub revision for ``hf://`` specs (overrides ``@revision``).
        cache_dir: Hugging Face cache folder (default: ``HF_HUB_CACHE`` / ``HF_HOME``).
        local_files_only: never use the network (default: ``HF_HUB_OFFLINE``).
        token: Hub token for private repositories.

    Returns:
        A :class:`~mednet_pvs.inference.PVSModel` (or a
        :class:`~mednet_pvs.inference.frangi_model.FrangiModel`).
    """
    from mednet_pvs.inference.devices import resolve_device

    if device is not None:
        resolve_device(device)  # a device this machine lacks: one line, before anything is read
    text = str(model)
    path = Path(text).expanduser()
    if not text.startswith(SCHEME) and path.is_dir():
        return _load_folder(path, device=device)
    if text.startswith(SCHEME):
        spec = parse_hub_spec(text)
        if revision is not None:
            spec = HubSpec(spec.repo_id, revision, spec.subfolder)
        return _load_hub(spec, None, device=device, cache_dir=cache_dir, local_files_only=local_files_only, token=token)
    entry = find_entry(text)
    if entry is not None:
        if revision is not None:
            raise ConfigError(f"{text!r} is pinned by the registry; to load another revision use hf://{entry.weights.repo_id}@<revision>"
                              if entry.weights.kind == "hub" else f"{text!r} has no Hub revisions")
        return _load_entry(entry, device=device, cache_dir=cache_dir, local_files_only=local_files_only, token=token)
    if path.exists():
        raise InputError(path, "not a model folder: give the folder holding config.json + model.safetensors")
    if _looks_like_path(text):
        hub_like = re.fullmatch(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*", text)
        raise InputError(text, "model folder not found" + (f" (for a Hub repository write hf://{text})" if hub_like else ""))
    raise ConfigError(unknown_name_message(text))


def _load_folder(folder: Path, *, device: str | torch.device | None) -> Any:
    from mednet_pvs.inference.bundle import CONFIG, load_bundle

    if (folder / CONFIG).is_file():
        return load_bundle(folder, device=device)
    from mednet_pvs.zoo.import_nnunet_v2 import import_nnunet_v2, is_nnunet_v2_folder

    if is_nnunet_v2_folder(folder):
        return import_nnunet_v2(folder, device=device)
    from mednet_pvs.zoo.import_nnunet_v1 import CHECKPOINT, find_folds, import_nnunet_v1

    try:
        find_folds(folder, CHECKPOINT)
    except InputError as e:
        raise InputError(folder, "not a model folder: no config.json (a mednet-pvs bundle), not an nnU-Net v2 "
                                 f"trainer folder (plans.json, dataset.json, fold_*) and not an nnU-Net v1 result folder ({e.problem})") from None
    return import_nnunet_v1(folder, device=device)


def _load_hub(spec: HubSpec, entry: ZooEntry | None, **kw: Any) -> Any:
    from mednet_pvs.inference.bundle import load_bundle

    device = kw.pop("device")
    folder, provenance = download_bundle(spec, sha256=entry.weights.sha256 if entry else None, **kw)
    try:
        model = load_bundle(folder, device=device)
    except InputError as e:
        raise InputError(str(spec), f"the downloaded bundle does not load: {e}") from None
    if hasattr(model, "meta"):
        model.meta["loaded_from"] = provenance  # where this copy came from (its own "source" is kept)
        if entry is not None:
            model.meta.setdefault("zoo_entry", entry.name)
    return model


def _load_entry(entry: ZooEntry, **kw: Any) -> Any:
    w = entry.weights
    if w.kind == "hub":
        return _load_hub(HubSpec(str(w.repo_id), w.revision, w.subfolder), entry, **kw)
    if w.kind == "frangi":
        from mednet_pvs.inference.frangi_model import FrangiModel

        model = FrangiModel.for_contrast(str(w.contrast))
        model.name = entry.name
        model.meta.update(entry.meta())
        return model.to(kw["device"])
    if w.kind == "bundled":
        folder = catalog.BUNDLED_DIR / str(w.folder)
        from mednet_pvs.inference.bundle import CONFIG

        if not (folder / CONFIG).is_file():
            raise InputError(folder, f"the bundled model of {entry.name!r} is missing from this installation: reinstall mednet-pvs")
        return _load_folder(folder, device=kw["device"])
    raise ModelNotAvailableError(
        f"{entry.name}: no public weights to download. {' '.join(str(w.how_to_get).split())} "
        f"Command: `{w.import_command}`; then load_pretrained('<the -o folder>')."
    )


def save_pretrained(model: Any, folder: PathType, *, load_as: str | None = None) -> Path:
    """Write ``model`` as a bundle folder: ``config.json``, ``model.safetensors`` (if it has
    weights) and a generated model card ``README.md`` (figures, data, licence, citation from ``model.meta``).

    Args:
        model: any model kind (:class:`~mednet_pvs.inference.Segmenter`): a
            :class:`~mednet_pvs.inference.PVSModel`, a Frangi model...
        folder: destination (created; files written atomically).
        load_as: what the card's usage example passes to ``load_pretrained`` (default the folder).
    """
    if not hasattr(model, "save_pretrained"):
        raise ConfigError(f"{type(model).__name__} cannot be saved as a model bundle")
    return Path(model.save_pretrained(folder, load_as=load_as or str(folder)))
