"""PVSSegmenter: logging, clipping, schedule, whole-volume validation metrics, freezing, warm starts."""
from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import pandas as pd
import pytest
import torch
from _training_helpers import TINY_NET, tiny_data, tiny_module, tiny_trainer
from lightning.pytorch.loggers import CSVLogger

from mednet_pvs.errors import ConfigError, InputError
from mednet_pvs.nets import create_network, upkern
from mednet_pvs.training import encoder_parameters


class GradNorm(L.Callback):
    """Gradient norm and lr after each optimiser step (Lightning zeroes gradients before the next one)."""

    def __init__(self) -> None:
        self.norms: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        grads = [p.grad.detach().flatten() for p in pl_module.parameters() if p.grad is not None]
        self.norms.append(float(torch.cat(grads).norm()))


def test_training_logs_loss_and_lr_clips_gradients_and_decays_lr(tmp_path):
    module = tiny_module(grad_clip=1e-3, optimizer="nnunet")
    cb = GradNorm()
    trainer = tiny_trainer(tmp_path, max_epochs=2, limit_train_batches=3, limit_val_batches=0, log_every_n_steps=1,
                           logger=CSVLogger(tmp_path, name="logs"), callbacks=[cb])
    trainer.fit(module, tiny_data())
    assert trainer.global_step == 6
    assert cb.norms and max(cb.norms) <= 1e-3 * (1 + 1e-4)  # clipped at the preset override
    log = pd.read_csv(tmp_path / "logs" / "version_0" / "metrics.csv")
    lrs = log["train/lr"].dropna().tolist()
    assert lrs == pytest.approx([1e-2 * (1 - s / 6) ** 0.9 for s in range(len(lrs))])  # poly, per step, over 6 steps
    losses = log["train/loss_step"].dropna()
    assert len(losses) == 6 and losses.gt(0).all() and log["train/loss_epoch"].notna().sum() == 2


class FakePrediction(L.Callback):
    """Makes the module 'predict' the reference for the first validation case and nothing for the second."""

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        label = batch["label"][0, 0].float()
        pl_module.predict_volume = lambda image, brainmask=None: label if batch_idx == 0 else torch.zeros_like(label)


def test_validation_metrics_are_whole_volume_means_without_nan_and_a_picture_is_saved(tmp_path):
    module = tiny_module(image_every_n_epochs=1)
    trainer = tiny_trainer(tmp_path, limit_train_batches=0, logger=CSVLogger(tmp_path, name="logs"), callbacks=[FakePrediction()])
    out = trainer.validate(module, tiny_data(), verbose=False)[0]
    # case 1: perfect; case 2: empty prediction -> Dice 0, recall 0, precision NaN (left out of the mean)
    assert out["val/dice"] == pytest.approx(0.5) and out["val/recall"] == pytest.approx(0.5)
    assert out["val/precision"] == pytest.approx(1.0) and out["val/det_f1"] == pytest.approx(0.5)
    assert module.val_metrics["cases"] == 2
    pictures = list((tmp_path / "logs" / "version_0" / "images").glob("val_epoch0000_phantom-*.png"))
    assert len(pictures) == 1 and pictures[0].stat().st_size > 10_000


def test_validation_runs_the_sliding_window_on_whole_volumes(tmp_path):
    module = tiny_module()
    out = tiny_trainer(tmp_path).validate(module, tiny_data(), verbose=False)[0]
    assert set(out) == {"val/dice", "val/precision", "val/recall", "val/det_f1", "val/cluster_dice"}
    assert 0.0 <= out["val/dice"] <= 1.0 and 0.0 <= out["val/recall"] <= 1.0  # an untrained net: low but defined


def test_patch_size_must_fit_the_network(tmp_path):
    with pytest.raises(ConfigError, match=r"multiple of \(16, 16, 16\)"):
        tiny_trainer(tmp_path).validate(tiny_module(), tiny_data(patch_size=24), verbose=False)


def _params(module, names):
    return {n: p.detach().clone() for n, p in module.net.named_parameters() if n in names}


def test_encoder_is_frozen_for_the_first_epochs(tmp_path):
    module = tiny_module(freeze_encoder_epochs=1)
    enc = {n for n, _ in encoder_parameters(module.net)}
    dec = {n for n, _ in module.net.named_parameters()} - enc
    snaps = []

    class Snap(L.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            snaps.append((_params(pl_module, enc), _params(pl_module, dec)))

    start = (_params(module, enc), _params(module, dec))
    tiny_trainer(tmp_path, max_epochs=2, limit_val_batches=0, callbacks=[Snap()]).fit(module, tiny_data())
    (e0, d0), (e1, d1) = snaps
    assert all(torch.equal(e0[n], start[0][n]) for n in enc)  # epoch 0: encoder fixed
    assert any(not torch.equal(d0[n], start[1][n]) for n in dec)  # ... decoder trained
    assert any(not torch.equal(e1[n], e0[n]) for n in enc)  # epoch 1: encoder trained


def test_encoder_parameters_of_both_families():
    mednext = encoder_parameters(create_network("mednext", **TINY_NET))
    assert {n.split(".")[0] for n, _ in mednext} == {"stem", "enc_block_0", "enc_block_1", "enc_block_2", "enc_block_3",
                                                     "down_0", "down_1", "down_2", "down_3", "bottleneck"}
    nnunet = create_network("nnunet_plain", patch_size=(32, 32, 32), spacing=(1, 1, 1), base_features=4, max_features=16)
    names = [n for n, _ in encoder_parameters(nnunet)]
    assert names and all(n.startswith("encoder.") for n in names)
    with pytest.raises(ConfigError, match="cannot tell the encoder"):
        encoder_parameters(torch.nn.Conv3d(1, 2, 3))


def test_init_from_checkpoint_bundle_upkern_and_widen(tmp_path):
    from mednet_pvs.inference import PVSModel

    k3 = tiny_module()
    ckpt = tmp_path / "k3.ckpt"
    torch.save({"state_dict": k3.state_dict()}, ckpt)  # as Lightning stores it: keys "net.<name>"
    same = tiny_module(init_from=str(ckpt))
    same.setup("fit")
    assert all(torch.equal(a, b) for a, b in zip(same.net.state_dict().values(), k3.net.state_dict().values()))

    k5 = tiny_module(network_kwargs={**TINY_NET, "kernel_size": 5}, init_from=str(ckpt))
    k5.setup("fit")
    ref = upkern(k3.net, create_network("mednext", **{**TINY_NET, "kernel_size": 5}))
    assert k5.net.enc_block_0[0].conv1.weight.shape[-1] == 5
    assert all(torch.allclose(a, b) for a, b in zip(k5.net.state_dict().values(), ref.state_dict().values()))

    folder = PVSModel(k3.net, k3.network_spec, {"target_spacing": None}, {"patch_size": [32, 32, 32]}, device="cpu").save_pretrained(tmp_path / "bundle")
    from_bundle = tiny_module(init_from=str(folder))
    from_bundle.setup("fit")
    assert all(torch.equal(a, b) for a, b in zip(from_bundle.net.state_dict().values(), k3.net.state_dict().values()))

    # a wider MedNeXt (16 base channels from 8) starts as the same function (mednet_pvs.nets.widen)
    wide = tiny_module(network_kwargs={**TINY_NET, "n_channels": 16}, init_from=str(ckpt))
    wide.setup("fit")
    x = torch.randn(1, 1, 32, 32, 32)
    with torch.no_grad():
        assert torch.allclose(wide.net.eval()(x), k3.net.eval()(x), atol=1e-5)
    narrow = tiny_module(network_kwargs={**TINY_NET, "n_channels": 4}, init_from=str(ckpt))
    with pytest.raises(InputError, match="k3.ckpt.*at least as wide"):  # widen's reason, not UpKern's
        narrow.setup("fit")
    two_inputs = tiny_module(network_kwargs={**TINY_NET, "n_channels": 16, "in_channels": 2}, init_from=str(ckpt))
    with pytest.raises(InputError, match="widening keeps the input channels"):
        two_inputs.setup("fit")
    k5_other_classes = tiny_module(network_kwargs={**TINY_NET, "kernel_size": 5, "n_classes": 3}, init_from=str(ckpt))
    with pytest.raises(InputError, match="keeps the classes: the source has 2, the target 3"):
        k5_other_classes.setup("fit")
    deeper = tiny_module(network_kwargs={**TINY_NET, "kernel_size": 5, "block_counts": [2] * 9}, init_from=str(ckpt))
    with pytest.raises(InputError, match="UpKern needs two networks with the same layers"):  # same widths
        deeper.setup("fit")
    with pytest.raises(InputError, match="not found"):
        tiny_module(init_from=str(tmp_path / "missing.ckpt")).setup("fit")


def test_init_from_bundle_with_other_classes_maps_them_by_name(tmp_path):
    """A background/PVS bundle starts a background/brain/PVS module: PVS from PVS, brain and
    background from background; everything else copied as it is."""
    from mednet_pvs.inference import PVSModel
    from mednet_pvs.training.weights import class_rows

    two = tiny_module()
    folder = PVSModel(two.net, two.network_spec, {"target_spacing": None}, {"patch_size": [32, 32, 32]}, device="cpu").save_pretrained(tmp_path / "bundle")
    three = tiny_module(network_kwargs={**TINY_NET, "n_classes": 3}, labels={"0": "background", "1": "brain", "2": "PVS"}, init_from=str(folder))
    three.setup("fit")
    src, own = two.net.state_dict(), three.net.state_dict()
    mapped = [k for k in own if own[k].shape != src[k].shape]
    assert mapped and all(k.startswith("out_") for k in mapped)
    for k in mapped:
        axis = 1 if own[k].ndim == 5 and own[k].shape[1] == 3 else 0  # transposed convolutions: classes on axis 1
        for new, old in enumerate(class_rows({0: "background", 1: "PVS"}, three.labels)):
            assert torch.equal(own[k].select(axis, new), src[k].select(axis, old)), k
    assert all(torch.equal(own[k], src[k]) for k in own if k not in mapped)
    assert class_rows({0: "background", 1: "PVS"}, {2: "pvs", 0: "background", 1: "brain"}) == [0, 0, 1]


def test_bad_arguments_are_config_errors():
    with pytest.raises(ConfigError, match="unknown network"):
        tiny_module(network="mednext_xl")
    with pytest.raises(ConfigError, match="threshold"):
        tiny_module(inference={"threshold": 1.5})
    with pytest.raises(ConfigError, match="unknown optimiser preset"):
        tiny_module(optimizer="adam")
    assert math.isclose(tiny_module(lr=3e-3).optim.lr, 3e-3)


def test_pictures_reach_a_wandb_logger(tmp_path, monkeypatch):
    from mednet_pvs.training.cli import make_logger

    monkeypatch.delenv("WANDB_API_KEY", raising=False)  # offline; WANDB_MODE=disabled in tests: nothing is sent
    logger = make_logger("wandb", tmp_path)
    sent = []
    monkeypatch.setattr(type(logger), "log_image", lambda self, key, images, step=None, **kw: sent.append((key, images, step, kw)))
    module = tiny_module(image_every_n_epochs=1)
    tiny_trainer(tmp_path, logger=logger, callbacks=[FakePrediction()]).validate(module, tiny_data(), verbose=False)
    (key, images, step, kw), = sent
    assert key == "val/overview" and Path(images[0]).is_file() and "Dice 1.000" in kw["caption"][0]


def test_validation_uses_the_inference_block_unmirrored_unless_asked():
    module = tiny_module(inference={"window": {"patch_size": 32, "mirror_axes": [0, 1]}, "threshold": 0.3})
    assert module.window().mirror_axes == () and module.window().patch_size == (32, 32, 32)
    assert module.inference_config().window.mirror_axes == (0, 1) and module.inference.threshold == 0.3
    assert tiny_module(inference={"patch_size": 32, "mirror_axes": [0, 1]}, val_tta=True).window().mirror_axes == (0, 1)
    with pytest.raises(ConfigError, match="set inference.window.patch_size"):
        tiny_module().window()  # no tile given and no datamodule to take it from


class LabelAsLogits(torch.nn.Module):
    """A 'network' whose input is a class map: logits 10 on the class the input holds."""

    def forward(self, x):
        v = x[:, :1].round()
        return torch.cat([10.0 * (v == k).float() for k in range(3)], 1)


def _class_batch():
    label = torch.zeros(1, 1, 40, 40, 40)
    label[0, 0, 8:32, 8:32, 8:32] = 1  # brain
    label[0, 0, 12:28, 18:20, 18:20] = 2  # a PVS
    label[0, 0, 20:22, 10:30, 24:26] = 2
    return {"image": label.clone(), "label": label, "affine": torch.eye(4)[None], "subject": ["case"]}


def test_brain_and_pvs_labels_score_pvs_on_its_channel_and_the_brain(tmp_path):
    module = tiny_module(labels={"0": "background", "1": "brain", "2": "PVS"}, inference={"window": {"patch_size": [32, 32, 32]}},
                         network_kwargs=dict(TINY_NET, n_classes=3))
    module.net = LabelAsLogits()
    module._evaluate_batch(_class_batch())
    case = module._cases[0]
    assert case["dice"] == pytest.approx(1.0) and case["brain_dice"] == pytest.approx(1.0)
    assert module.export_info()["labels"] == {"0": "background", "1": "brain", "2": "PVS"}
    # without the labels every foreground class is 'PVS' (in the prediction and the reference alike), no brain score
    plain = tiny_module(inference={"window": {"patch_size": [32, 32, 32]}}, network_kwargs=dict(TINY_NET, n_classes=3))
    plain.net = LabelAsLogits()
    plain._evaluate_batch(_class_batch())
    assert math.isnan(plain._cases[0]["brain_dice"])


@pytest.mark.slow
def test_any_contrast_training_on_domain_phantoms_logs_brain_dice(tmp_path):
    source = {"source": "synthetic", "generator": "domain", "anatomy": "procedural", "shape": [48, 48, 48]}
    module = tiny_module(labels={"0": "background", "1": "brain", "2": "PVS"}, network_kwargs=dict(TINY_NET, n_classes=3))
    data = tiny_data(source, synthetic_train_size=1, synthetic_val_size=1, samples_per_volume=2, queue_length=2,
                     preprocessing={"target_spacing": [1.0, 1.0, 1.0]}, boundary_fraction=0.25)
    trainer = tiny_trainer(tmp_path, limit_train_batches=1)
    trainer.fit(module, data)  # one step, then whole-volume validation
    label = data.queue.subjects_dataset[0]["label"].data
    assert set(torch.unique(label).tolist()) == {0, 1, 2}
    assert data.queue.sampler.boundary_fraction == 0.25 and data.config()["boundary_fraction"] == 0.25
    assert 0.0 <= float(trainer.callback_metrics["val/brain_dice"]) <= 1.0 and "val/dice" in trainer.callback_metrics


def test_skeleton_recall_weight_scores_the_pvs_class(tmp_path):
    """--model.skeleton_recall_weight adds Skeleton Recall on the PVS channel (2 of background/brain/PVS)."""
    from mednet_pvs.training.cli import run_cli

    assert tiny_module().loss.loss.skeleton is None  # off by default: nnU-Net's Dice + CE
    two = tiny_module(skeleton_recall_weight=1.0)
    assert two.loss.loss.skeleton.classes == [1] and two.loss.loss.skeleton_weight == 1.0
    cli = run_cli(["--config", "synth_any", "--logger", "none", "--trainer.default_root_dir", str(tmp_path),
                   "--model.skeleton_recall_weight", "0.5", "--model.network_kwargs.n_channels", "4"], run=False)
    assert cli.model.loss.loss.skeleton.classes == [2] and cli.model.loss.loss.skeleton_weight == 0.5
    torch.manual_seed(0)
    target = torch.zeros(1, 1, 32, 32, 32)
    target[0, 0, 4:28, 4:28, 4:28] = 1
    target[0, 0, 10:12, 10:12, 6:26] = 2
    outputs = cli.model.net(torch.randn(1, 1, 32, 32, 32))
    with_srec = cli.model.loss(outputs, target)
    cli.model.loss.loss.skeleton_weight = 0.0
    assert float(with_srec) > float(cli.model.loss(outputs, target)) + 0.1  # a random net recalls little of the tube


def test_skeletons_from_the_data_workers_reach_the_loss_and_must_match_its_classes(tmp_path):
    """--data.skeleton_classes: the batch's skeleton is the one the loss scores; a mismatch fails before training."""
    from mednet_pvs.training.cli import run_cli

    seen: list[torch.Tensor | None] = []
    module = tiny_module(skeleton_recall_weight=1.0)
    forward = module.loss.forward
    module.loss.forward = lambda outputs, target, skeleton=None: seen.append(skeleton) or forward(outputs, target, skeleton)
    tiny_trainer(tmp_path, max_steps=2, limit_val_batches=0).fit(module, tiny_data(skeleton_classes=[1], foreground_fraction=1.0))
    assert len(seen) == 2 and all(s is not None and s.shape == (2, 1, 32, 32, 32) for s in seen)
    assert sum(float(s.sum()) for s in seen) > 0
    with pytest.raises(ConfigError, match="no loss uses them"):
        tiny_trainer(tmp_path, max_steps=1, limit_val_batches=0).fit(tiny_module(), tiny_data(skeleton_classes=[1]))
    cli = run_cli(["--config", "synth_any", "--logger", "none", "--trainer.default_root_dir", str(tmp_path / "cli"),
                   "--model.skeleton_recall_weight", "1", "--data.skeleton_classes", "[1]", "--model.network_kwargs.n_channels", "4",
                   "--trainer.max_steps", "1", "--trainer.limit_val_batches", "0"], run=False)
    assert cli.datamodule.skeleton_classes == [1]
    with pytest.raises(ConfigError, match=r"data.skeleton_classes \[1\] differ .* \[2\]"):
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)


class NetWeights(L.Callback):
    """The trained network's weights after each optimiser step (before the module's own hook)."""

    def __init__(self) -> None:
        self.after: list[dict[str, torch.Tensor]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.after.append({k: v.detach().clone() for k, v in pl_module.net.state_dict().items()})


def test_ema_decay_averages_the_weights_and_validation_export_and_warm_starts_use_the_average(tmp_path):
    """--model.ema_decay: ema = d * ema + (1 - d) * weights after every step, from the first step's
    weights; predict_volume, the checkpoint, export_bundle and init_from all take the average."""
    from mednet_pvs.inference import PVSModel
    from mednet_pvs.inference.sliding_window import sliding_window_predict
    from mednet_pvs.training.cli import run_cli
    from mednet_pvs.training.export import export_bundle
    from mednet_pvs.training.weights import read_weights

    with pytest.raises(ConfigError, match="ema_decay"):
        tiny_module(ema_decay=1.0)
    plain = tiny_module()
    assert plain.net_ema is None and plain.eval_net() is plain.net
    torch.manual_seed(0)
    module, seen = tiny_module(ema_decay=0.5), NetWeights()
    trainer = tiny_trainer(tmp_path, max_steps=3, limit_train_batches=3, limit_val_batches=0, callbacks=[seen])
    trainer.fit(module, tiny_data())
    assert len(seen.after) == 3 and int(module.net_ema.n_averaged) == 3
    expected = seen.after[0]
    for w in seen.after[1:]:
        expected = {k: 0.5 * expected[k] + 0.5 * w[k] if w[k].is_floating_point() else w[k] for k in w}
    ema = module.eval_net().state_dict()
    assert module.eval_net() is module.net_ema.module
    assert all(torch.allclose(ema[k], expected[k], atol=1e-6) for k in expected)
    assert any(not torch.allclose(ema[k], seen.after[-1][k]) for k in expected)  # the average is not the last weights
    assert not any(p.requires_grad for p in module.net_ema.parameters())

    image = torch.randn(1, 32, 32, 32)
    got = module.predict_volume(image)
    want = sliding_window_predict(module.net_ema.module, image, module.window(), device="cpu")[1:].sum(0)
    assert torch.allclose(got, want) and not torch.allclose(got, sliding_window_predict(module.net, image, module.window(), device="cpu")[1:].sum(0))

    ckpt = tmp_path / "ema.ckpt"
    trainer.save_checkpoint(ckpt)
    assert all(torch.equal(read_weights(ckpt)[k], ema[k]) for k in ema)  # init_from a checkpoint takes the average
    folder = export_bundle(ckpt, tmp_path / "bundle")
    exported = PVSModel.from_pretrained(folder, device="cpu")
    assert all(torch.equal(exported.networks[0].state_dict()[k], ema[k]) for k in ema)
    assert "moving average, decay 0.5" in exported.meta["training"]["weights"]
    resumed = tiny_module(ema_decay=0.5)
    resumed.load_state_dict(torch.load(ckpt, weights_only=True)["state_dict"])
    assert int(resumed.net_ema.n_averaged) == 3  # a resumed run continues the average

    accumulated = tiny_module(ema_decay=0.5)  # 4 batches, 2 per optimiser step: averaged twice, not per batch
    tiny_trainer(tmp_path, max_steps=2, limit_train_batches=4, accumulate_grad_batches=2, limit_val_batches=0).fit(accumulated, tiny_data())
    assert accumulated.global_step == 2 and int(accumulated.net_ema.n_averaged) == 2

    cli = run_cli(["--config", "synth_any", "--logger", "none", "--trainer.default_root_dir", str(tmp_path / "cli"),
                   "--model.ema_decay", "0.999", "--model.network_kwargs.n_channels", "4"], run=False)
    assert cli.model.net_ema is not None and cli.model.hparams.ema_decay == 0.999
