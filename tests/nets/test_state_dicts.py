"""mednet_pvs.nets.state_dicts: weight averaging (model soups)."""
import pytest
import torch
from torch import nn

from mednet_pvs.errors import ConfigError
from mednet_pvs.nets.state_dicts import average_state_dicts


def _net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv3d(1, 4, 3), nn.BatchNorm3d(4)).half()


def test_average_is_the_weighted_mean_in_the_first_dtype_counters_from_the_first():
    a, b = _net(0).state_dict(), _net(1).state_dict()
    b["1.num_batches_tracked"] += 7
    mean = average_state_dicts([a, b])
    assert mean.keys() == a.keys() and mean["0.weight"].dtype == torch.float16
    assert torch.allclose(mean["0.weight"].float(), (a["0.weight"].float() + b["0.weight"].float()) / 2, atol=1e-3)
    assert int(mean["1.num_batches_tracked"]) == int(a["1.num_batches_tracked"])
    w = average_state_dicts([a, b], weights=[3, 1])  # normalised: 0.75 / 0.25
    assert torch.allclose(w["0.bias"].float(), 0.75 * a["0.bias"].float() + 0.25 * b["0.bias"].float(), atol=1e-3)
    assert torch.equal(average_state_dicts([a, b], weights=[1, 0])["0.weight"], a["0.weight"])
    net = _net(2)
    net.load_state_dict(mean)  # loads into the same network


def test_average_refuses_other_networks_and_bad_weights():
    a = _net(0).state_dict()
    other = nn.Sequential(nn.Conv3d(1, 8, 3), nn.BatchNorm3d(8)).state_dict()
    with pytest.raises(ConfigError, match="state dict 1 is not the same network.*shape"):
        average_state_dicts([a, other])
    with pytest.raises(ConfigError, match="two or more"):
        average_state_dicts([a])
    with pytest.raises(ConfigError, match="one non-negative weight"):
        average_state_dicts([a, a], weights=[1])
    with pytest.raises(ConfigError, match="one non-negative weight"):
        average_state_dicts([a, a], weights=[1, -1])
