"""The model zoo: registered models, one loader for names, folders and the Hub, importers.

    from mednet_pvs.zoo import list_models, load_pretrained, save_pretrained, push_to_hub
    list_models()                                    # pandas table of the registry (zoo/entries/*.yaml)
    model = load_pretrained("frangi-t2w")            # a name, "hf://owner/repo@<commit>", or a folder
    model = import_nnunet_v1("nnUNet/3d_fullres/Task019_HCP_T2w/<Trainer>__<Plans>")   # authors' release
    save_pretrained(model, "my_model/")              # config.json + model.safetensors + README.md
    push_to_hub(model, "me/my-pvs-model")            # same files on the Hub; returns the pinned spec

Importing this package is light: torch, pandas and huggingface_hub load when a function needs them.
"""
from __future__ import annotations

from mednet_pvs.zoo.hub import PushResult, UnpinnedRevisionWarning, push_to_hub
from mednet_pvs.zoo.import_checkpoints import load_generic_unet_v1_checkpoint, load_mednext_checkpoint
from mednet_pvs.zoo.import_nnunet_v1 import ZooImportWarning, import_nnunet_v1
from mednet_pvs.zoo.import_nnunet_v2 import NnUNetV2Preprocessing, load_nnunet_v2_folder
from mednet_pvs.zoo.pretrained import ModelNotAvailableError, load_pretrained, save_pretrained
from mednet_pvs.zoo.catalog import Figure, Weights, ZooEntry, get_entry, list_models, model_entries



def __getattr__(name: str):  # PEP 562: the card writer lives with the bundle format (imports torch)
    if name == "model_card":
        from mednet_pvs.inference.card import model_card

        return model_card
    raise AttributeError(f"module 'mednet_pvs.zoo' has no attribute {name!r}")


__all__ = [
    "Figure",
    "ModelNotAvailableError",
    "NnUNetV2Preprocessing",
    "PushResult",
    "UnpinnedRevisionWarning",
    "Weights",
    "ZooEntry",
    "ZooImportWarning",
    "get_entry",
    "import_nnunet_v1",
    "list_models",
    "load_generic_unet_v1_checkpoint",
    "load_mednext_checkpoint",
    "load_nnunet_v2_folder",
    "load_pretrained",
    "model_card",
    "model_entries",
    "push_to_hub",
    "save_pretrained",
]
