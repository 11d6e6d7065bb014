"""Networks from the original implementations' weight files (MedNeXt v1, nnU-Net v1 Generic_UNet)."""
from __future__ import annotations

import pytest
import torch

from mednet_pvs.errors import InputError
from mednet_pvs.nets import MedNeXt
from mednet_pvs.zoo import load_generic_unet_v1_checkpoint, load_mednext_checkpoint


def test_loads_mednext_checkpoint_file(mednext_reference, tmp_path):
    sd, x, outputs = mednext_reference
    torch.save({"epoch": 3, "state_dict": sd}, tmp_path / "model_final_checkpoint.model")
    net = load_mednext_checkpoint(tmp_path / "model_final_checkpoint.model").eval()
    with torch.no_grad():
        assert torch.allclose(net(x), outputs[0], atol=1e-5, rtol=0)
    torch.save({"state_dict": {k: v for k, v in sd.items() if not k.startswith("out_3")}}, tmp_path / "cut.pt")
    with pytest.raises(InputError, match="cut.pt: .*out_3"):
        load_mednext_checkpoint(tmp_path / "cut.pt")


def test_loads_mednext_from_an_in_memory_container(mednext_reference):
    sd, x, outputs = mednext_reference
    net = load_mednext_checkpoint({"state_dict": {f"module.{k}": v for k, v in sd.items()}}).eval()
    assert isinstance(net, MedNeXt)
    with torch.no_grad():
        assert torch.allclose(net(x), outputs[0], atol=1e-5, rtol=0)


def test_loads_v1_checkpoint_container_file(generic_reference, tmp_path):
    sd, x, outputs = generic_reference
    path = tmp_path / "model_final_checkpoint.model"
    torch.save({"epoch": 1000, "state_dict": sd, "optimizer_state_dict": {"state": {}, "param_groups": []},
                "lr_scheduler_state_dict": None, "plot_stuff": ([1.0], [0.9], [0.5], [0.4]),
                "best_stuff": (10, 0.4, 0.5, 1000)}, path)
    net = load_generic_unet_v1_checkpoint(path).eval()
    with torch.no_grad():
        assert torch.allclose(net(x), outputs[0], atol=1e-5, rtol=0)


def test_v1_checkpoint_errors_name_the_file(generic_reference, tmp_path):
    sd, *_ = generic_reference
    path = tmp_path / "bad.model"
    torch.save({"state_dict": {k: v for k, v in sd.items() if k != "tu.1.weight"}}, path)
    with pytest.raises(InputError, match="bad.model"):
        load_generic_unet_v1_checkpoint(path)
