"""On a GPU the pipeline gives the CPU's results: prediction, bf16 autocast, stitching on the host,
the device preprocessing and a bf16-mixed training step.

Run on a machine with CUDA: ``pytest -m cuda`` (``bash benchmarks/gpu_check.sh --device cuda`` runs
these first); skipped without one. "fp32" below is ``PVSModel.predict`` with the sliding window's
autocast off (patched into the model module: ``predict`` has no switch for it) and TF32 off, so that
GPU and CPU do the same arithmetic up to summation order.
"""
from __future__ import annotations

import copy
import functools
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
import torch

import mednet_pvs.inference.model as model_module
from mednet_pvs.inference import InferenceConfig, PVSModel
from mednet_pvs.nets import create_network, network_config
from mednet_pvs.synth import PhantomConfig, make_phantom
from mednet_pvs.zoo import load_pretrained

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

BUNDLED = "mednet-pvs-synth-t2w"


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    n = int(a.sum()) + int(b.sum())
    return 1.0 if n == 0 else 2.0 * int((a & b).sum()) / n


@contextmanager
def fp32() -> Iterator[None]:
    """``PVSModel.predict`` without bf16 autocast and without TF32 inside the block. (TF32 is set and
    put back by hand: ``torch.backends.cuda.matmul.allow_tf32`` is served by ``__getattr__``, which
    ``monkeypatch`` cannot undo.)"""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    with pytest.MonkeyPatch.context() as m:
        m.setattr(model_module, "sliding_window_predict", functools.partial(model_module.sliding_window_predict, autocast=False))
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
        try:
            yield
        finally:
            torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@pytest.fixture(scope="module")
def small_phantom():
    """48^3 procedural head with PVS the bundled model finds (as tests/inference/test_device_pipeline.py)."""
    ph = make_phantom(PhantomConfig(anatomy="procedural", shape=(48, 48, 48), contrast="T2w", burden=3), seed=11)
    return (ph.image, ph.affine)


@pytest.fixture(scope="module")
def mni_phantom():
    """1 mm MNI phantom: a mask of thousands of voxels, so Dice 0.999 allows a few flipped ones."""
    ph = make_phantom(PhantomConfig(anatomy="mni", spacing=1.0, contrast="T2w", burden=3), seed=1)
    return (ph.image, ph.affine)


def _random_mednext(device: str, **window) -> PVSModel:
    torch.manual_seed(0)
    net = create_network("mednext_s_k3", n_channels=4)
    inference = InferenceConfig.from_dict({"window": {"patch_size": [32, 32, 32], "mirror_axes": [0], **window}})
    return PVSModel(net, network_config(net), {"target_spacing": [1.0, 1.0, 1.0]}, inference, device=device)


def test_predict_on_cuda_equals_cpu_random_mednext(small_phantom):
    with fp32():
        cpu = _random_mednext("cpu").predict(small_phantom)
        gpu = _random_mednext("cuda").predict(small_phantom)
    assert gpu.info["pipeline"] == "device" and cpu.info["pipeline"] == "torchio"  # "auto" on each
    assert np.abs(gpu.probabilities - cpu.probabilities).max() < 1e-3
    assert _dice(gpu.mask, cpu.mask) >= 0.999


def test_predict_on_cuda_equals_cpu_bundled_model(small_phantom):
    with fp32():
        cpu = load_pretrained(BUNDLED, device="cpu").predict(small_phantom)
        gpu = load_pretrained(BUNDLED, device="cuda").predict(small_phantom)
    assert cpu.mask.sum() > 20, "the phantom has PVS for the comparison to mean something"
    assert np.abs(gpu.probabilities - cpu.probabilities).max() < 1e-3
    assert _dice(gpu.mask, cpu.mask) >= 0.999


def test_bf16_autocast_agrees_with_fp32(mni_phantom, record_property):
    model = load_pretrained(BUNDLED, device="cuda")
    bf16 = model.predict(mni_phantom)  # the default on a GPU: bf16 autocast
    with fp32():
        ref = model.predict(mni_phantom)
    d = _dice(bf16.mask, ref.mask)
    record_property("figures", f"bf16 vs fp32: Dice {d:.5f}, {int(ref.mask.sum())} mask voxels, "
                               f"max |dp| {np.abs(bf16.probabilities - ref.probabilities).max():.2e}")
    assert ref.mask.sum() > 1000
    assert d >= 0.999


def test_stitching_on_the_host_equals_stitching_on_the_device(small_phantom):
    with fp32():
        on_device = _random_mednext("cuda").predict(small_phantom)
        on_host = _random_mednext("cuda", stitch_on_cpu=True).predict(small_phantom)
    assert np.abs(on_host.probabilities - on_device.probabilities).max() < 1e-5
    assert _dice(on_host.mask, on_device.mask) >= 0.999


def test_device_pipeline_equals_torchio_on_cuda(small_phantom):
    model = load_pretrained(BUNDLED, device="cuda")
    with fp32():
        device = model.predict(small_phantom, pipeline="device")
        torchio = model.predict(small_phantom, pipeline="torchio")
    assert device.info["pipeline"] == "device" and torchio.info["pipeline"] == "torchio"
    assert torchio.mask.sum() > 20
    assert np.abs(device.probabilities - torchio.probabilities).max() < 1e-3
    assert _dice(device.mask, torchio.mask) >= 0.999


def test_training_step_runs_in_bf16_mixed(tmp_path):
    import lightning as L

    from mednet_pvs.data.datamodule import PVSDataModule
    from mednet_pvs.training.module import PVSSegmenter

    dm = PVSDataModule({"source": "synthetic", "anatomy": "procedural", "shape": [64, 64, 64], "contrast": "T2w"},
                       preprocessing={"target_spacing": None}, augmentation="none", patch_size=32, batch_size=2,
                       samples_per_volume=4, queue_length=8, num_workers=0, synthetic_train_size=4, synthetic_val_size=1)
    module = PVSSegmenter("mednext", {"n_channels": 4, "exp_r": 2, "kernel_size": 3, "block_counts": [1] * 9,
                                      "deep_supervision": True}, image_every_n_epochs=0)
    before = copy.deepcopy(module.net.state_dict())
    autocast: list[bool] = []
    module.net.register_forward_pre_hook(lambda mod, args: autocast.append(torch.is_autocast_enabled("cuda")))
    trainer = L.Trainer(accelerator="gpu", devices=1, precision="bf16-mixed", max_steps=2, limit_val_batches=0,
                        num_sanity_val_steps=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(module, datamodule=dm)
    assert trainer.global_step == 2 and autocast and all(autocast)
    assert torch.isfinite(trainer.callback_metrics["train/loss"]).all()
    after = module.net.state_dict()
    assert all(torch.isfinite(v).all() for v in after.values() if v.is_floating_point())
    assert any(not torch.equal(before[k], after[k].cpu()) for k in before), "the optimiser step changed no weight"
    assert next(module.net.parameters()).dtype == torch.float32  # mixed: the weights stay fp32
