"""Optimiser presets (nnU-Net, MedNeXt) and the poly schedule with warm-up."""
from __future__ import annotations

import pytest
import torch

from mednet_pvs.errors import ConfigError
from mednet_pvs.training.optim import PolyWarmup, build_optimizer, build_scheduler, optim_preset


def test_presets_are_the_reference_trainers():
    nn_ = optim_preset("nnunet")
    assert (nn_.name, nn_.lr, nn_.momentum, nn_.nesterov, nn_.weight_decay, nn_.poly_power, nn_.grad_clip) == (
        "sgd", 1e-2, 0.99, True, 3e-5, 0.9, 12.0)
    mx = optim_preset("mednext")
    assert (mx.name, mx.lr, mx.eps, mx.weight_decay, mx.poly_power, mx.grad_clip) == ("adamw", 1e-3, 1e-4, 3e-5, 0.9, 12.0)
    p = torch.nn.Parameter(torch.zeros(3))
    sgd = build_optimizer([p], nn_)
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["nesterov"] and sgd.defaults["momentum"] == 0.99
    adamw = build_optimizer([p], mx)
    assert isinstance(adamw, torch.optim.AdamW) and adamw.defaults["eps"] == 1e-4


def test_overrides_and_errors():
    cfg = optim_preset("mednext", lr=5e-4, grad_clip=0.0, weight_decay=None)
    assert cfg.lr == 5e-4 and cfg.grad_clip == 0.0 and cfg.weight_decay == 3e-5
    with pytest.raises(ConfigError, match="unknown optimiser preset 'adam'"):
        optim_preset("adam")
    with pytest.raises(ConfigError, match="lr > 0"):
        optim_preset("nnunet", lr=-1.0)


def test_poly_schedule_with_warmup_and_resume():
    f = PolyWarmup(total_steps=100, warmup_steps=4, power=0.9)
    assert [round(f(s), 4) for s in range(4)] == [0.2, 0.4, 0.6, 0.8]
    assert f(50) == pytest.approx(0.5**0.9) and f(100) == 0.0 and f(150) == 0.0
    p = torch.nn.Parameter(torch.zeros(1))
    cfg = optim_preset("nnunet", warmup_steps=0)
    opt = build_optimizer([p], cfg)
    sched = build_scheduler(opt, cfg, total_steps=10)
    lrs = []
    for _ in range(5):
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs == pytest.approx([1e-2 * (1 - s / 10) ** 0.9 for s in range(1, 6)])
    # a resumed scheduler (state_dict) continues the same curve
    opt2 = build_optimizer([p], cfg)
    sched2 = build_scheduler(opt2, cfg, total_steps=999)
    sched2.load_state_dict(sched.state_dict())
    opt2.step()
    sched2.step()
    assert opt2.param_groups[0]["lr"] == pytest.approx(1e-2 * (1 - 6 / 10) ** 0.9)
    with pytest.raises(ConfigError):
        PolyWarmup(0)
