"""PVSDataModule: manifest, skip-bad, synthetic stream, and a real Lightning fit."""
from __future__ import annotations

import json
import warnings

import lightning as L
import nibabel as nib
import numpy as np
import pytest
import torch
from _data_helpers import write_cohort

from mednet_pvs.data.cases import load_cases
from mednet_pvs.data.datamodule import VAL_SEED_OFFSET, PVSDataModule
from mednet_pvs.data.preprocessing import PreprocessConfig, resample_to_grid
from mednet_pvs.data.splits import load_split, make_split
from mednet_pvs.errors import InputError


def _dm(source, tmp_path, **kw):
    args = dict(patch_size=24, batch_size=2, samples_per_volume=2, queue_length=4, num_workers=0, split="kfold:3", run_dir=tmp_path / "run", check_workers=1)
    args.update(kw)
    return PVSDataModule(source, **args)


def test_manifest_to_batches(tmp_path):
    m = write_cohort(tmp_path / "c", 6, brainmask=True)
    dm = _dm(m, tmp_path, preprocessing=PreprocessConfig(crop_margin_mm=2.0), augmentation="nnunet")
    dm.setup("fit")
    split = make_split(load_cases(m), "kfold:3", 0, 0)
    assert load_split(tmp_path / "run/split.json") == split
    assert [c.subject for c in dm.train_cases] == split.train and [c.subject for c in dm.val_cases] == split.val
    cfg = json.loads((tmp_path / "run/data_config.json").read_text())
    assert PreprocessConfig.from_dict(cfg["preprocessing"]) == dm.preprocessing and cfg["patch_size"] == [24, 24, 24]

    batches = list(dm.train_dataloader())
    assert len(batches) == 4  # 4 training subjects x 2 patches / batch of 2
    b = batches[0]
    assert b["image"].shape == (2, 1, 24, 24, 24) and b["image"].dtype == torch.float32
    assert b["label"].shape == (2, 1, 24, 24, 24) and set(torch.unique(b["label"]).tolist()) <= {0.0, 1.0}
    assert "brainmask" not in b  # used by preprocessing, not shipped with patches
    assert {s for x in batches for s in x["subject"]} == set(split.train)

    val = list(dm.val_dataloader())
    assert len(val) == len(split.val)
    v = val[0]
    assert v["image"].shape[:2] == (1, 1) and v["image"].shape[2:] != (24, 24, 24)  # whole volume, not a patch
    assert v["label"].shape[2:] == v["image"].shape[2:] and v["input_shape"].tolist() == [[40, 44, 36]]
    assert abs(float(v["image"][v["brainmask"] > 0].mean())) < 1e-3  # normalised inside the brain, no augmentation
    # a prediction on the validation volume goes back onto the original file's grid from the batch alone
    back = resample_to_grid(v["label"][0], v["affine"][0].numpy(), v["input_shape"][0].tolist(), v["input_affine"][0].numpy(), interpolation="nearest")
    assert np.array_equal(back[0].numpy(), nib.load(str(dm.val_cases[0].label)).get_fdata())


def test_bad_cases_fail_or_are_skipped(tmp_path):
    m = write_cohort(tmp_path / "c", 4)
    (m.parent / "labels/sub-02_pvs.nii.gz").unlink()
    with pytest.raises(InputError, match=r"1 of 4 case\(s\) have problems.*sub-02: label .*file not found"):
        _dm(m, tmp_path).setup()
    dm = _dm(m, tmp_path, skip_bad_cases=True, split="kfold:2")
    with pytest.warns(UserWarning, match="skipping 1 bad case"):
        dm.setup()
    assert "sub-02" not in {c.subject for c in dm.train_cases + dm.val_cases}
    assert dm.report is not None and dm.report.bad == ["sub-02"]


def test_list_of_cases_and_manifest_split(tmp_path):
    m = write_cohort(tmp_path / "c", 4)
    cases = load_cases(m)
    for c, s in zip(cases, ["train", "train", "val", "test"]):
        c.split = s
    dm = _dm(cases, tmp_path, split="manifest", run_dir=None)
    dm.setup()
    assert [c.subject for c in dm.val_cases] == ["sub-02"] and len(dm.train_cases) == 2


def test_synthetic_stream_makes_fresh_phantoms(tmp_path):
    pytest.importorskip("mednet_pvs.synth")
    from mednet_pvs.synth import PhantomConfig

    cfg = PhantomConfig(anatomy="procedural", shape=(32, 32, 32))
    dm = PVSDataModule(cfg, patch_size=24, batch_size=2, samples_per_volume=2, queue_length=2, num_workers=0, synthetic_train_size=3, synthetic_val_size=1, augmentation="none")
    dm.setup()
    loader = dm.train_dataloader()
    seen = {}
    for epoch in (0, 1):
        loader.sampler.set_epoch(epoch)
        seen[epoch] = [s for b in loader for s in b["subject"]]
    assert seen[0] == ["phantom-0"] * 2 + ["phantom-1"] * 2 + ["phantom-2"] * 2
    assert seen[1] == ["phantom-3"] * 2 + ["phantom-4"] * 2 + ["phantom-5"] * 2  # fresh each epoch
    b = next(iter(loader))
    assert b["image"].shape == (2, 1, 24, 24, 24) and float(b["label"].sum()) > 0  # foreground oversampled
    (v,) = list(dm.val_dataloader())
    assert v["subject"] == [f"phantom-{VAL_SEED_OFFSET}"] and v["image"].shape[0] == 1


class _Tiny(L.LightningModule):
    """Records what the data module delivers; trains a 1-layer conv."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv3d(1, 1, 3, padding=1)
        self.train_subjects: dict[int, list[str]] = {}
        self.sampler_epochs: list[int] = []
        self.val_shapes: list[tuple] = []

    def on_train_epoch_start(self):
        self.sampler_epochs.append(self.trainer.datamodule.queue.subject_sampler.epoch)

    def training_step(self, batch, _):
        self.train_subjects.setdefault(self.current_epoch, []).extend(batch["subject"])
        return torch.nn.functional.binary_cross_entropy_with_logits(self.conv(batch["image"]), batch["label"])

    def validation_step(self, batch, _):
        self.val_shapes.append(tuple(batch["image"].shape))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


@pytest.mark.slow
def test_lightning_fit_calls_set_epoch(tmp_path):
    m = write_cohort(tmp_path / "c", 8)
    dm = _dm(m, tmp_path, split="kfold:4", run_dir=None, augmentation="none", samples_per_volume=1, queue_length=1, batch_size=1)
    model = _Tiny()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = L.Trainer(
            max_epochs=3, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
            enable_model_summary=False, default_root_dir=tmp_path / "root", num_sanity_val_steps=0,
        )  # fmt: skip
        trainer.fit(model, datamodule=dm)
    assert (tmp_path / "root/split.json").is_file()  # default_root_dir when no run_dir
    assert model.sampler_epochs == [0, 1, 2]  # Lightning reached the subject sampler every epoch
    orders = [model.train_subjects[e] for e in range(3)]
    assert all(sorted(o) == sorted(orders[0]) and len(o) == 6 for o in orders)
    assert len({tuple(o) for o in orders}) > 1  # reshuffled across epochs
    assert model.val_shapes and all(s[0] == 1 and s[2:] != (24, 24, 24) for s in model.val_shapes)
    assert all(np.isfinite(p.detach().numpy()).all() for p in model.parameters())
