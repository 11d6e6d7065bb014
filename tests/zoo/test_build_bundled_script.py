"""zoo/build_bundled.py: the inference settings it ships (tile, mirroring, threshold, padding, way back,
brain mask)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _build_bundled():
    spec = importlib.util.spec_from_file_location("build_bundled", ROOT / "zoo" / "build_bundled.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_shipped_settings_are_the_ones_asked_for():
    mod = _build_bundled()
    run = ROOT / "mednet_pvs" / "zoo" / "bundled" / "mednet-pvs-synth-any"  # a bundle in the run-export format
    model = mod.shipped_model(run, "mednet-pvs-synth-any", 48, "0,2", 0.4, "replicate", "area", "both_passes", 0.7)
    w = model.inference.window
    assert w.patch_size == (48, 48, 48) and w.mirror_axes == (0, 2) and w.pad_mode == "replicate"
    assert model.inference.output_resampling == "area" and model.inference.brain_mask == "both_passes"
    assert model.inference.brain_keep == 0.7
    assert model.inference.threshold == 0.4 and model.name == "mednet-pvs-synth-any"
    finer = mod.shipped_model(run, "mednet-pvs-synth-any", None, "none", finest_spacing=0.8)
    assert finer.preprocessing.finest_spacing == 0.8
    shipped = mod.PVSModel.from_pretrained(run, device="cpu").meta  # re-shipped from itself: the runs' record stays
    assert shipped["member_runs"] and finer.meta["member_runs"] == shipped["member_runs"] and finer.meta["run"] == shipped["run"]
    assert finer.preprocessing.replace(finest_spacing=None) == mod.PVSModel.from_pretrained(run, device="cpu").preprocessing.replace(finest_spacing=None)
    kept = mod.shipped_model(run, "mednet-pvs-synth-any", None, "none")  # no --pad / --back: the run's
    run_inf = mod.PVSModel.from_pretrained(run, device="cpu").inference
    assert kept.inference.window.pad_mode == run_inf.window.pad_mode
    assert kept.inference.output_resampling == run_inf.output_resampling
    assert kept.inference.brain_mask == run_inf.brain_mask and kept.inference.brain_keep == run_inf.brain_keep
    assert kept.preprocessing == mod.PVSModel.from_pretrained(run, device="cpu").preprocessing  # no --finest-spacing: the run's


@pytest.mark.parametrize("option", [["--pad", "reflect"], ["--back", "cubic"], ["--brain", "third_pass"],
                                    ["--brain-keep", "high"], ["--finest-spacing", "fine"],
                                    ["--min-cluster", "big"], ["--max-spread", "wide"]])
def test_choice_options_are_checked(option):
    with pytest.raises(SystemExit):
        _build_bundled().main(["x", "mednet-pvs-synth-any", *option])


def test_member_runs_make_an_ensemble_and_a_different_network_is_refused(tmp_path):
    mod = _build_bundled()
    run = ROOT / "mednet_pvs" / "zoo" / "bundled" / "mednet-pvs-synth-any"
    model = mod.shipped_model(run, "mednet-pvs-synth-any", None, "none", 0.35, members=[run])
    n = len(mod.PVSModel.from_pretrained(run, device="cpu").networks)  # the shipped bundle is itself an ensemble
    assert len(model.networks) == 2 * n and model.networks[0] is not model.networks[n]
    own = mod.PVSModel.from_pretrained(run, device="cpu").meta.get("member_runs")  # a bundle brings its own runs' record
    assert model.meta["member_runs"] == (2 * own if own else [{"from": str(run), "epoch": None, "global_step": None}] * 2)
    other = mod.PVSModel.from_pretrained(run, device="cpu")
    spec = other.network.to_dict()
    spec["kwargs"] = {**spec["kwargs"], "n_channels": 8}  # another width: cannot share an ensemble
    from mednet_pvs.nets import create_network_from_config

    mod.PVSModel(create_network_from_config(spec), spec, other.preprocessing, other.inference, labels=other.labels,
                 device="cpu").save_pretrained(tmp_path / "narrow")
    with pytest.raises(SystemExit, match="network differs"):
        mod.shipped_model(run, "mednet-pvs-synth-any", None, "none", 0.35, members=[tmp_path / "narrow"])


def test_soup_ships_one_network_with_the_members_mean_weights(tmp_path):
    """``--soup``: the networks' weights averaged into one (not an ensemble); the mean and its spread
    are recorded; one network alone, or networks from different starts, are refused; a bundle given
    as the first network records no empty run; ``--min-cluster`` is shipped as inference.min_cluster_mm3."""
    import torch

    mod = _build_bundled()
    run = ROOT / "mednet_pvs" / "zoo" / "bundled" / "mednet-pvs-synth-any"
    base = mod.PVSModel.from_pretrained(run, device="cpu")
    from mednet_pvs.nets import create_network_from_config

    a, b = create_network_from_config(base.network), create_network_from_config(base.network)
    a.load_state_dict(base.networks[0].state_dict())
    b.load_state_dict({k: v * 1.1 if v.is_floating_point() else v for k, v in a.state_dict().items()})
    no_removal = base.inference.updated({"min_cluster_mm3": 0.0})  # the shipped bundle removes small clusters itself
    mod.PVSModel([a, b], base.network, base.preprocessing, no_removal, labels=base.labels,
                 device="cpu").save_pretrained(tmp_path / "pair")
    soup = mod.shipped_model(tmp_path / "pair", "mednet-pvs-synth-any", None, "none", 0.8, soup=True, min_cluster=2.0)
    assert len(soup.networks) == 1 and soup.meta["weights_averaged"]["networks"] == 2
    assert soup.meta["weights_averaged"]["spread"] == pytest.approx(0.05 / 1.05, abs=1e-4)  # each 5 % of the mean from it
    key = next(k for k, v in a.state_dict().items() if v.is_floating_point())
    assert torch.allclose(soup.networks[0].state_dict()[key], a.state_dict()[key] * 1.05, atol=1e-5)
    assert soup.inference.min_cluster_mm3 == 2.0 and soup.inference.threshold == 0.8
    soup.meta["zoo_entry"] = "mednet-pvs-synth-any"
    soup.save_pretrained(tmp_path / "soup")  # re-shipped from the soup itself: the averaging's record stays
    again = mod.shipped_model(tmp_path / "soup", "mednet-pvs-synth-any", None, "none", 0.7)
    assert again.meta["weights_averaged"] == soup.meta["weights_averaged"] and len(again.networks) == 1
    pair = mod.shipped_model(tmp_path / "pair", "mednet-pvs-synth-any", None, "none", 0.8)
    assert len(pair.networks) == 2 and "weights_averaged" not in pair.meta  # without --soup: an ensemble
    mod.PVSModel([a], base.network, base.preprocessing, base.inference, labels=base.labels,
                 device="cpu").save_pretrained(tmp_path / "one")
    coarse = mod.PVSModel([a], base.network, base.preprocessing.replace(finest_spacing=None), base.inference,
                          labels=base.labels, device="cpu")
    coarse.save_pretrained(tmp_path / "coarse")  # trained without finest_spacing: --finest-spacing sets it for all
    with pytest.raises(SystemExit, match="preprocessing differs"):
        mod.shipped_model(tmp_path / "pair", "mednet-pvs-synth-any", None, "none", members=[tmp_path / "coarse"])
    three = mod.shipped_model(tmp_path / "pair", "mednet-pvs-synth-any", None, "none", members=[tmp_path / "coarse"],
                              finest_spacing=0.8, soup=True)
    assert three.meta["weights_averaged"]["networks"] == 3 and three.preprocessing.finest_spacing == 0.8
    with pytest.raises(SystemExit, match="--soup needs two or more networks"):
        mod.shipped_model(tmp_path / "one", "mednet-pvs-synth-any", None, "none", soup=True)
    assert "run" not in three.meta and len(three.meta["member_runs"]) == 2  # the pair is no run: no record of Nones
    torch.manual_seed(0)
    mod.PVSModel([create_network_from_config(base.network)], base.network, base.preprocessing, no_removal, labels=base.labels,
                 device="cpu").save_pretrained(tmp_path / "random")  # another start: its mean with the pair is no network
    with pytest.raises(SystemExit, match=r"lie 0\.[3-9]\d apart .*--max-spread 0\.3"):
        mod.shipped_model(tmp_path / "pair", "mednet-pvs-synth-any", None, "none", members=[tmp_path / "random"], soup=True)
    assert mod.shipped_model(tmp_path / "pair", "mednet-pvs-synth-any", None, "none", members=[tmp_path / "random"], soup=True,
                             max_spread=1.0).meta["weights_averaged"]["spread"] > 0.3
    argv = [str(tmp_path / "pair"), "mednet-pvs-synth-any", "--member", str(tmp_path / "random"), "--soup", "--threshold", "0.5"]
    with pytest.raises(SystemExit, match="apart"):
        mod.main(argv)
    assert mod.main([*argv, "--max-spread", "1"]) == 0
