"""``predict_batch(layout="bids")``: BIDS derivatives named after the input's entities, the dataset's
own files, provenance in the sidecars, resume; the BIDS rules the layout keeps are written down here
(the deno BIDS validator 3.0.2 found no error in such a dataset: see the README)."""
from __future__ import annotations

import csv
import fnmatch
import json
import re
import warnings

import nibabel as nib
import numpy as np
import pytest

from mednet_pvs.errors import ConfigError, InputError
from mednet_pvs.inference import CaseOutputs
from mednet_pvs.inference.batch import collect_inputs, outputs_for, predict_batch
from mednet_pvs.inference.outputs import bids_prefix
from mednet_pvs.synth import make_phantom
from mednet_pvs.version import __version__
from mednet_pvs.zoo import load_pretrained

#: A BIDS derivative file of this layout: sub[, ses], other entities, desc, suffix, extension.
DERIVATIVE = re.compile(r"(?P<sub>sub-[A-Za-z0-9]+)(?:_(?P<ses>ses-[A-Za-z0-9]+))?(?:_(?!desc-)[a-z]+-[A-Za-z0-9]+)*"
                        r"_desc-[A-Za-z0-9]+_(?P<suffix>mask|probseg|dseg)\.(?P<ext>nii\.gz|json)")
#: dataset_description.json fields a derivative dataset must have.
REQUIRED_DESCRIPTION = ("Name", "BIDSVersion", "DatasetType", "GeneratedBy")
BIDS_ROOT_FILES = {"dataset_description.json", "README.md", ".bidsignore"}


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    """A BIDS raw dataset: sub-01 with two sessions, sub-02 with one (32^3 T2w phantoms)."""
    root = tmp_path_factory.mktemp("bids") / "raw"
    for i, (sub, ses) in enumerate((("01", "1"), ("01", "2"), ("02", "1"))):
        ph = make_phantom(anatomy="procedural", shape=(32, 32, 32), burden=3, seed=i)
        folder = root / f"sub-{sub}" / f"ses-{ses}" / "anat"
        folder.mkdir(parents=True)
        nib.save(nib.Nifti1Image(ph.image, ph.affine), folder / f"sub-{sub}_ses-{ses}_T2w.nii.gz")
    return root


@pytest.fixture(scope="module")
def model():
    return load_pretrained("frangi-t2w")


def _bidsignored(rel: str, patterns: list[str]) -> bool:
    """Whether a dataset-relative path is matched by .bidsignore (gitignore-like: a pattern without '/' matches any part)."""
    return any(fnmatch.fnmatch(rel, p) or any(fnmatch.fnmatch(part, p) for part in rel.split("/")) for p in patterns)


@pytest.mark.slow  # three cases with previews: ~8 s on 2 cores
def test_bids_layout_follows_the_rules(tmp_path, raw, model):
    out = tmp_path / "derivatives" / "mednet-pvs"
    report = predict_batch(collect_inputs(raw), out, model, layout="bids", save_probs=True, preview=True)
    assert report.done == ["sub-01_ses-1", "sub-01_ses-2", "sub-02_ses-1"] and not report.failed

    description = json.loads((out / "dataset_description.json").read_text())
    assert all(k in description for k in REQUIRED_DESCRIPTION)
    assert description["DatasetType"] == "derivative" and re.fullmatch(r"\d+\.\d+\.\d+", description["BIDSVersion"])
    assert description["GeneratedBy"][0]["Name"] == "mednet-pvs" and description["GeneratedBy"][0]["Version"] == __version__
    assert "frangi-t2w" in description["GeneratedBy"][0]["Description"]

    ignore = (out / ".bidsignore").read_text().split()
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    for rel in files:
        parts = rel.split("/")
        if rel in BIDS_ROOT_FILES or parts[0] == "phenotype" or _bidsignored(rel, ignore):
            continue
        m = DERIVATIVE.fullmatch(parts[-1])
        assert m, f"{rel} is neither a BIDS derivative name nor .bidsignore'd"
        assert parts[:-1] == [m["sub"], m["ses"], "anat"], f"{rel} is not in its subject/session anat folder"
        if m["ext"] == "nii.gz":
            assert (out / rel.replace(".nii.gz", ".json")).is_file(), f"{rel} has no JSON sidecar"
    assert "summary.csv" in files and "run.json" in files  # kept for the flat layout's readers, ignored by BIDS

    anat = out / "sub-01" / "ses-2" / "anat"
    src = raw / "sub-01" / "ses-2" / "anat" / "sub-01_ses-2_T2w.nii.gz"
    assert {p.name for p in anat.iterdir()} == {f"sub-01_ses-2_desc-pvs_{n}" for n in (
        "mask.nii.gz", "mask.json", "probseg.nii.gz", "probseg.json", "preview.png", "clusters.tsv")}
    np.testing.assert_allclose(nib.load(anat / "sub-01_ses-2_desc-pvs_mask.nii.gz").affine, nib.load(src).affine, atol=1e-5)
    sidecar = json.loads((anat / "sub-01_ses-2_desc-pvs_mask.json").read_text())
    assert sidecar["Type"] == "ROI" and sidecar["Sources"] == [src.absolute().as_uri()] and sidecar["SpatialReference"] == sidecar["Sources"][0]
    assert sidecar["provenance"]["model"]["name"] == "frangi-t2w" and len(sidecar["provenance"]["inputs"]["image"]["sha256"]) == 64
    assert isinstance(sidecar["count"], int) and "volume_mm3" in sidecar
    probseg = json.loads((anat / "sub-01_ses-2_desc-pvs_probseg.json").read_text())
    assert probseg["Sources"] == sidecar["Sources"] and probseg["provenance"] == sidecar["provenance"]
    clusters = (anat / "sub-01_ses-2_desc-pvs_clusters.tsv").read_text().splitlines()
    assert clusters[0].split("\t")[:3] == ["id", "n_voxels", "volume_mm3"] and len(clusters) == sidecar["count"] + 1

    rows = list(csv.DictReader((out / "phenotype" / "pvs_burden.tsv").read_text().splitlines(), delimiter="\t"))
    header = list(rows[0])
    assert header[:2] == ["participant_id", "session_id"]
    assert [(r["participant_id"], r["session_id"]) for r in rows] == [("sub-01", "ses-1"), ("sub-01", "ses-2"), ("sub-02", "ses-1")]
    assert all(v != "" for r in rows for v in r.values()), "missing values are n/a, never empty"
    assert int(rows[1]["count"]) == sidecar["count"]
    described = json.loads((out / "phenotype" / "pvs_burden.json").read_text())
    assert all(described[c]["Description"] for c in header), "every column is described"


def test_bids_layout_resumes_and_refuses_another_models_results(tmp_path, raw, model):
    out = tmp_path / "out"
    cases = collect_inputs(raw)
    assert predict_batch(cases, out, model, layout="bids").done
    mask = out / "sub-02" / "ses-1" / "anat" / "sub-02_ses-1_desc-pvs_mask.nii.gz"
    before = mask.stat().st_mtime_ns
    again = predict_batch(cases, out, model, layout="bids")
    assert again.skipped == [c.case_id for c in cases] and not again.done and mask.stat().st_mtime_ns == before

    class Other:  # the same predictions under another model's name: its results must not pass for these
        def predict(self, *a, **kw):
            return model.predict(*a, **kw)

        def provenance(self, **kw):
            record = model.provenance(**kw)
            record["model"]["name"] = "another-model"
            return record

    with pytest.raises(InputError, match="made differently: model.name frangi-t2w -> another-model"):
        predict_batch(cases, out, Other(), layout="bids")
    assert mask.stat().st_mtime_ns == before
    # asking for probabilities now that were not written then: those cases are redone
    redo = predict_batch(cases, out, model, layout="bids", save_probs=True)
    assert redo.done == [c.case_id for c in cases] and mask.with_name("sub-02_ses-1_desc-pvs_probseg.nii.gz").is_file()


def test_inputs_without_bids_entities_are_named_from_their_id_with_a_warning(tmp_path, raw, model):
    flat = tmp_path / "scans"
    flat.mkdir()
    img = next(raw.rglob("*_T2w.nii.gz"))
    (flat / "patient_A.nii.gz").write_bytes(img.read_bytes())
    (flat / "sub-07_acq-fast_T2w.nii.gz").write_bytes(img.read_bytes())
    with pytest.warns(UserWarning, match=r"1 input\(s\) without BIDS entities.*patient_A -> sub-patientA"):
        report = predict_batch(collect_inputs(flat), tmp_path / "out", model, layout="bids")
    assert sorted(report.done) == ["patient_A", "sub-07_acq-fast_T2w"]
    assert (tmp_path / "out" / "sub-patientA" / "anat" / "sub-patientA_desc-pvs_mask.nii.gz").is_file()
    assert (tmp_path / "out" / "sub-07" / "anat" / "sub-07_acq-fast_desc-pvs_mask.nii.gz").is_file(), "source entities are kept"
    rows = list(csv.DictReader((tmp_path / "out" / "phenotype" / "pvs_burden.tsv").read_text().splitlines(), delimiter="\t"))
    assert list(rows[0])[:2] == ["participant_id", "case_id"], "no session_id column without sessions"

    (flat / "patient-A.nii.gz").write_bytes(img.read_bytes())  # also sub-patientA: the names would clash
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(InputError, match="patient-A and patient_A would both be written as sub-patientA"):
            predict_batch(collect_inputs(flat), tmp_path / "clash", model, layout="bids")
    assert not (tmp_path / "clash").exists(), "nothing written"
    with pytest.raises(ConfigError, match="layout must be one of flat, bids, not 'nested'"):
        outputs_for(collect_inputs(flat), tmp_path / "x", "nested")


@pytest.mark.parametrize(("name", "subject", "session", "expected"), [
    ("sub-01_ses-pre_T2w.nii.gz", None, None, "sub-01_ses-pre"),
    ("sub-01_ses-1_acq-iso_run-2_T2w.nii.gz", None, None, "sub-01_ses-1_acq-iso_run-2"),
    ("scan.nii.gz", "sub-03", "ses-b", "sub-03_ses-b"),
    ("scan.nii.gz", "03", None, "sub-03"),
    ("scan.nii.gz", "site1/03", None, None),
    ("scan_T2w.nii.gz", None, None, None),
])
def test_bids_prefix(name, subject, session, expected):
    assert bids_prefix(name, subject=subject, session=session) == expected


def test_case_outputs_bids_names():
    out = CaseOutputs.bids("/d", "sub-01_ses-2_acq-x")
    assert str(out.path("mask")) == "/d/sub-01/ses-2/anat/sub-01_ses-2_acq-x_desc-pvs_mask.nii.gz"
    assert str(out.path("stats")) == "/d/sub-01/ses-2/anat/sub-01_ses-2_acq-x_desc-pvs_mask.json"
    with pytest.raises(InputError, match="not a BIDS file-name prefix"):
        CaseOutputs.bids("/d", "sub-0_1")
