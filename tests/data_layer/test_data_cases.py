"""Cohort description: manifests (CSV/TSV) and BIDS-like folders."""
from __future__ import annotations

from pathlib import Path

import pytest
from _data_helpers import brain_volume, save, write_cohort

from mednet_pvs.data.cases import Case, load_cases, write_manifest
from mednet_pvs.errors import InputError


def test_manifest_relative_paths_resolve_against_its_folder(cohort: Path, monkeypatch):
    monkeypatch.chdir("/")
    cases = load_cases(cohort)
    assert [c.subject for c in cases] == ["sub-00", "sub-01", "sub-02", "sub-03"]
    assert all(p.is_file() for c in cases for _, p in c.files)
    assert cases[0].images == [cohort.parent / "images" / "sub-00_T2w.nii.gz"]
    assert [c.site for c in cases] == ["A", "B", "A", "B"]
    assert cases[0].brainmask is None and cases[0].split is None


def test_tsv_manifest_and_folder_with_manifest(tmp_path):
    m = write_cohort(tmp_path / "c", 2, sep="\t", name="manifest.tsv", brainmask=True)
    by_file, by_folder = load_cases(m), load_cases(m.parent)
    assert [c.key for c in by_file] == [c.key for c in by_folder] == ["sub-00", "sub-01"]
    assert by_file[1].brainmask == m.parent / "masks" / "sub-01_brain.nii.gz"


def test_multichannel_image_column_and_optional_columns(tmp_path):
    (tmp_path / "m.csv").write_text(
        "subject,session,image,label,site,split,age\n"
        "s1,ses-1,t1.nii.gz;t2.nii.gz,l.nii.gz,X,Train,70\n"
        "s1,ses-2,/abs/t1.nii.gz; /abs/t2.nii.gz ,l2.nii.gz,X,validation,71\n"
    )
    a, b = load_cases(tmp_path / "m.csv")
    assert a.images == [tmp_path / "t1.nii.gz", tmp_path / "t2.nii.gz"]
    assert b.images == [Path("/abs/t1.nii.gz"), Path("/abs/t2.nii.gz")]
    assert (a.key, b.key) == ("s1_ses-1", "s1_ses-2")  # same subject, two sessions: allowed
    assert (a.split, b.split) == ("train", "val") and a.extra == {"age": "70"}
    assert [r for r, _ in a.files] == ["image[0]", "image[1]", "label"]


def test_missing_columns_are_named(tmp_path):
    (tmp_path / "m.csv").write_text("subject,image_0,image_1\ns1,a.nii,b.nii\n")
    with pytest.raises(InputError) as e:
        load_cases(tmp_path / "m.csv")
    msg = str(e.value)
    assert str(tmp_path / "m.csv") in msg and "image, label" in msg and "';'" in msg
    cases = load_cases(_write(tmp_path / "n.csv", "subject,image\ns1,a.nii\n"), require_label=False)
    assert cases[0].label is None


def _write(p: Path, text: str) -> Path:
    p.write_text(text)
    return p


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", "manifest is empty"),
        ("subject,image,label\n", "no rows"),
        ("subject,image,label\ns1,a.nii,l.nii\ns2,b.nii,l.nii\ns1,c.nii,l.nii\n", "duplicate subject 's1' (first on row 2)"),
        ("subject,image,label\n,a.nii,l.nii\ns2,,l.nii\ns3,a.nii,\n", "row 2: empty subject; row 3 (s2): empty image; row 4 (s3): empty label"),
        ("subject,image,label\ns1,a;b,l\ns2,a,l\n", "1 image channel(s), earlier rows have 2"),
        ("subject,image,label,split\ns1,a,l,holdout\n", "split 'holdout'"),
    ],
)
def test_manifest_problems_all_reported(tmp_path, text, expected):
    with pytest.raises(InputError) as e:
        load_cases(_write(tmp_path / "m.csv", text))
    assert expected in str(e.value)


def test_not_found(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_cases(tmp_path / "nope.csv")


def test_write_manifest_round_trip(cohort: Path, tmp_path):
    cases = load_cases(cohort)
    cases[0].split = "test"
    out = write_manifest(cases, cohort.parent / "copy.csv")
    again = load_cases(out)
    assert [(c.key, c.images, c.label, c.site, c.split) for c in again] == [(c.key, c.images, c.label, c.site, c.split) for c in cases]
    assert "images/sub-00_T2w.nii.gz" in out.read_text()  # relative below the manifest's folder


# ------------------------------------------------------------------------------------------ BIDS


def _bids(root: Path, sessions: bool = False, contrasts=("T2w",)) -> Path:
    img, lab, mask = brain_volume((20, 20, 20))
    for s in ("01", "02", "03"):
        for ses in (["ses-1", "ses-2"] if sessions else [None]):
            rel = Path(f"sub-{s}") / (ses or "") / "anat"
            stem = f"sub-{s}" + (f"_{ses}" if ses else "")
            for c in contrasts:
                save(img, root / rel / f"{stem}_{c}.nii.gz")
            save(lab, root / "derivatives" / "pvs" / rel / f"{stem}_desc-pvs_mask.nii.gz")
            save(mask, root / "derivatives" / "pvs" / rel / f"{stem}_desc-brain_mask.nii.gz")
    (root / "participants.tsv").write_text("participant_id\tsite\tsplit\nsub-01\tA\ttest\nsub-02\tB\t\n03\tB\t\n")
    return root


def test_bids_folder(tmp_path):
    root = _bids(tmp_path / "bids")
    cases = load_cases(root)
    assert [c.key for c in cases] == ["sub-01", "sub-02", "sub-03"]
    c = cases[0]
    assert c.images == [root / "sub-01/anat/sub-01_T2w.nii.gz"]
    assert c.label == root / "derivatives/pvs/sub-01/anat/sub-01_desc-pvs_mask.nii.gz"
    assert c.brainmask == root / "derivatives/pvs/sub-01/anat/sub-01_desc-brain_mask.nii.gz"
    assert [x.site for x in cases] == ["A", "B", "B"] and [x.split for x in cases] == ["test", None, None]


def test_bids_sessions_and_contrasts(tmp_path):
    root = _bids(tmp_path / "bids", sessions=True, contrasts=("T1w", "T2w"))
    with pytest.raises(InputError, match=r"several contrasts found \(T1w, T2w\)"):
        load_cases(root)
    cases = load_cases(root, contrasts=["T1w", "T2w"])
    assert [c.key for c in cases] == [f"sub-0{s}_ses-{k}" for s in (1, 2, 3) for k in (1, 2)]
    assert [p.name for p in cases[0].images] == ["sub-01_ses-1_T1w.nii.gz", "sub-01_ses-1_T2w.nii.gz"]
    assert cases[0].subject == cases[1].subject == "sub-01"


def test_bids_missing_label_named(tmp_path):
    root = _bids(tmp_path / "bids")
    (root / "derivatives/pvs/sub-02/anat/sub-02_desc-pvs_mask.nii.gz").unlink()
    with pytest.raises(InputError, match=r"sub-02: no derivatives/\*/sub-02/anat/\*_desc-pvs_mask"):
        load_cases(root)
    assert load_cases(root, require_label=False)[1].label is None


def test_not_a_cohort_folder(tmp_path):
    with pytest.raises(InputError, match="not a cohort folder"):
        load_cases(tmp_path)


def test_case_is_plain_data():
    c = Case("s", [Path("a.nii")], Path("l.nii"))
    assert c.key == "s" and c.files == [("image", Path("a.nii")), ("label", Path("l.nii"))]
