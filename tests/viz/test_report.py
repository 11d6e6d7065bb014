"""The cohort QC report: robust outlier flags, the page's content against the stats files of a real
predict output folder, failed/missing cases, bad folders and outputs, and the page in a real browser
(headless Chromium from Debian's packages: screenshot and DOM after a click on a column)."""
from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _report_helpers import predict_output, tree

from mednet_pvs.errors import InputError
from mednet_pvs.inference.batch import case_outputs
from mednet_pvs.inference.report import assign_sites, write_report
from mednet_pvs.viz.report import CaseQC, flag_outliers, render_report, robust_z

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def predicted(tmp_path_factory):
    """A predict output of 6 burden-1 cases (2 sites), a heavy one, an empty one and a failed one."""
    return predict_output(tmp_path_factory.mktemp("report"))


@pytest.fixture(scope="module")
def report(predicted, tmp_path_factory):
    """The report of ``predicted`` (written once), and the output folder's files before it was written."""
    before = tree(predicted)
    return write_report(predicted, tmp_path_factory.mktemp("qc") / "sub" / "report.html"), before


class Page(HTMLParser):
    """The parts of the report page the tests read: table rows (cells' text), images, links, scripts."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.rows: dict[str, list[str]] = {}
        self.heads: list[str] = []
        self.images: list[str] = []
        self.refs: list[str] = []
        self._row: str | None = None
        self._cell: list[str] | None = None
        self._in_head = False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.refs += [v for k, v in attrs if k in ("src", "href") and v]
        if tag == "img":
            self.images.append(a.get("src", ""))
        if tag == "tr" and "data-case" in a:
            self._row = a["data-case"]
            self.rows[self._row] = []
        if tag in ("td", "th") and (self._row is not None or self._in_head):
            self._cell = []
        if tag == "thead":
            self._in_head = True

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            text = " ".join("".join(self._cell).split())
            if self._row is not None:
                self.rows[self._row].append(text)
            elif self._in_head and not self.rows:
                self.heads.append(text)
            self._cell = None
        if tag == "tr":
            self._row = None
        if tag == "thead":
            self._in_head = False

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def test_robust_z_is_the_modified_z_score():
    z = robust_z([10, 11, 12, 13, 50])  # median 12, MAD 1
    assert np.allclose(z, 0.6745 * (np.array([10, 11, 12, 13, 50]) - 12) / 1.0)
    z = robust_z([5, 5, 5, 5, 9, 5])  # MAD 0: the mean absolute deviation stands in
    assert np.allclose(z, (np.array([5, 5, 5, 5, 9, 5]) - 5) / (1.2533 * 4 / 6))
    assert not robust_z([3, 3, 3]).any()


def test_outliers_are_flagged_both_ways_and_not_in_a_tiny_cohort():
    cohort = [CaseQC(f"c{i}", count=c, volume_mm3=v) for i, (c, v) in enumerate(
        [(20, 100.0), (22, 110.0), (19, 95.0), (21, 105.0), (23, 108.0), (80, 104.0), (20, 2.0)])]
    note = flag_outliers(cohort)
    flagged = {c.case_id: [f.text for f in c.flags] for c in cohort if c.flags}
    assert set(flagged) == {"c5", "c6"}, flagged
    assert "count 80 far above" in flagged["c5"][0] and "volume 2 mm\u00b3 far below" in flagged["c6"][0]
    assert "7 cases" in note
    few = [CaseQC(f"f{i}", count=c, volume_mm3=float(c)) for i, c in enumerate([20, 21, 22, 500])]
    assert "fewer than 5" in flag_outliers(few) and not any(c.flags for c in few)


def test_the_page_shows_every_case_with_its_stats_and_flags(predicted, report):
    page_path, before = report
    text = page_path.read_text()
    assert tree(predicted) == before, "the predict output folder was modified"
    page = Page(text)
    assert set(page.rows) == {f"sub-00{i}" for i in range(1, 7)} | {"sub-heavy", "sub-empty", "sub-broken"}
    cols = {h: i for i, h in enumerate(page.heads)}
    for cid, cells in page.rows.items():
        if cid == "sub-broken":
            continue
        stats = case_outputs(predicted, cid).read_stats()
        assert int(cells[cols["PVS count"]]) == stats["count"], cid
        assert float(cells[cols["volume mm\u00b3"]]) == pytest.approx(stats["volume_mm3"], abs=0.05), cid
        for key, region in stats["per_region"].items():
            assert int(cells[cols[f"{key} count"]]) == region["count"], (cid, key)
        assert cells[cols["site"]] == ("site1" if cid in ("sub-001", "sub-003", "sub-005", "sub-heavy") else "site2"), cid
    flags = {cid: cells[cols["flags"]] for cid, cells in page.rows.items()}
    assert flags["sub-broken"].startswith("failed:") and "not a readable NIfTI" in flags["sub-broken"]
    assert page.rows["sub-broken"][cols["status"]] == "failed"
    assert "empty mask" in flags["sub-empty"]
    assert "far above the cohort" in flags["sub-heavy"]
    assert not any(flags[f"sub-00{i}"] for i in range(1, 7)), flags
    assert "sites from" in text and "manifest.csv" in text
    # provenance: the model, its weights digest, the settings and the package version
    from mednet_pvs.version import __version__
    assert "truth-model" in text and "ab" * 32 in text and f">{__version__}<" in text
    # self-contained: every picture inline (PNG), nothing fetched from elsewhere
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", text) and "<link" not in text and "url(" not in text
    assert all(r.startswith(("data:image/png;base64,", "#")) for r in page.refs), page.refs
    pngs = [base64.b64decode(src.split(",", 1)[1]) for src in page.images]
    assert all(p.startswith(b"\x89PNG\r\n\x1a\n") for p in pngs)
    assert len(pngs) == 2 + 2 * 8  # cohort plots (count, volume) + a MIP and slices per case with a result


def test_missing_files_flag_the_case_and_the_page_is_still_written(predicted, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(predicted, out)
    case_outputs(out, "sub-002").path("mask").unlink()  # deleted mask, no preview: no pictures
    case_outputs(out, "sub-003").path("mask").unlink()  # deleted mask, preview kept: shown instead
    case_outputs(out, "sub-003").path("preview").write_bytes(b"\x89PNG\r\n\x1a\npreview-bytes")
    for cid, image in (("sub-004", {"path": str(tmp_path / "gone_T2w.nii.gz"), "sha256": "0" * 64}),
                       ("sub-005", None), ("sub-001", "")):
        stats_file = case_outputs(out, cid).path("stats")
        stats = json.loads(stats_file.read_text())
        if image == "":  # made with another threshold than the run record says
            stats["provenance"]["settings"]["threshold"] = 0.7
        elif image is None:  # the scan is there, but not the one predicted from; the atlas failed
            stats["provenance"]["inputs"]["image"]["sha256"] = "f" * 64
            stats["parameters"]["regions_error"] = "atlas registration failed"
        else:
            stats["provenance"]["inputs"]["image"] = image
        stats_file.write_text(json.dumps(stats))
    case_outputs(out, "sub-006").path("stats").unlink()  # summary says ok, stats gone
    page = Page(write_report(out, tmp_path / "r.html").read_text())
    flags = {cid: cells[-1] for cid, cells in page.rows.items()}
    assert "mask file missing" in flags["sub-002"] and "mask file missing" in flags["sub-003"]
    assert "input scan not found" in flags["sub-004"] and "changed since predict" in flags["sub-005"]
    assert "no per-region burden: atlas registration failed" in flags["sub-005"]
    assert "made differently from the run record: settings.threshold 0.5 -> 0.7" in flags["sub-001"]
    assert "no stats" in flags["sub-006"] and page.rows["sub-006"][2] == "incomplete"
    assert base64.b64encode(b"\x89PNG\r\n\x1a\npreview-bytes").decode() in "".join(page.images)
    # sub-004 (scan gone): a projection of the mask alone, no slices; sub-002: none
    text = (tmp_path / "r.html").read_text()
    assert "truth-model \u2014 1 case(s): sub-001<" in text  # each provenance shown with its cases
    assert 'alt="sub-004: maximum-intensity projection"' in text and 'alt="sub-004: slices"' not in text
    assert 'alt="sub-002: ' not in text


@pytest.mark.slow
def test_a_bids_layout_output_is_read_through_its_names(predicted, tmp_path):
    """``predict --layout bids``: outputs found by BIDS name, also for case ids that are not the
    BIDS prefix (matched through the cohort table's participant_id); ``jobs=2`` draws the same page."""
    from _report_helpers import TruthModel

    from mednet_pvs.inference.batch import collect_inputs, predict_batch
    from mednet_pvs.inference.outputs import CaseOutputs

    scans = predicted.parent / "scans"
    manifest = tmp_path / "m.csv"
    manifest.write_text("subject,image,regions\n" + "".join(f"{cid},{scans}/{s}/{s}_T2w.nii.gz,{scans}/{s}/{s}_regions.nii.gz\n"
                                                             for cid, s in (("A", "sub-001"), ("B", "sub-002"), ("sub-003", "sub-003"))))
    out = tmp_path / "bids"
    predict_batch(collect_inputs(manifest), out, TruthModel(), layout="bids", overlap_io=False)
    text = write_report(out, tmp_path / "r.html", jobs=2).read_text()
    page = Page(text)
    assert set(page.rows) == {"A", "B", "sub-003"} and len(page.images) == 2 + 2 * 3
    for cid, prefix in (("A", "sub-001"), ("B", "sub-002"), ("sub-003", "sub-003")):
        stats = CaseOutputs.bids(out, prefix).read_stats()
        assert page.rows[cid][3] == str(stats["count"]) and page.rows[cid][2] == "ok" and not page.rows[cid][-1], page.rows[cid]
    # cases drawn in 2 processes (above) give the same page as one after the other
    def undated(t: str) -> str:
        return re.sub(r"made \S+", "", t)

    assert undated(write_report(out, tmp_path / "r1.html", jobs=1).read_text()) == undated(text)


def test_bad_folders_and_outputs_are_one_clear_line(predicted, tmp_path):
    (tmp_path / "scans").mkdir()
    with pytest.raises(InputError, match="not a predict output folder: no summary.csv"):
        write_report(tmp_path / "scans", tmp_path / "a.html")
    with pytest.raises(InputError, match="not found or not a folder"):
        write_report(tmp_path / "nowhere", tmp_path / "a.html")
    with pytest.raises(InputError, match="is a folder"):
        write_report(predicted, tmp_path / "scans")
    before = tree(predicted)
    with pytest.raises(InputError, match="never modifies"):
        write_report(predicted, predicted / "report.html")
    assert tree(predicted) == before and not list(tmp_path.glob("*.html"))


def test_sites_from_a_table_from_id_prefixes_or_one_group(tmp_path):
    ids = ["A_sub-01", "A_sub-02", "B_sub-03", "B_sub-04_ses-1"]
    sites, note = assign_sites(ids)
    assert sites == {"A_sub-01": "A", "A_sub-02": "A", "B_sub-03": "B", "B_sub-04_ses-1": "B"} and "prefix" in note
    sites, note = assign_sites(["sub-01", "sub-02"])
    assert set(sites.values()) == {"all"} and "one group" in note
    table = tmp_path / "sites.tsv"
    table.write_text("participant_id\tsite\nsub-01\tX\nsub-02\tY\n")
    sites, note = assign_sites(["sub-01_ses-1", "sub-02", "sub-03"], source=table)
    assert sites == {"sub-01_ses-1": "X", "sub-02": "Y", "sub-03": "unknown"} and str(table) in note
    (tmp_path / "bad.csv").write_text("case_id,scanner\nsub-01,X\n")
    with pytest.raises(InputError, match="needs a site column"):
        assign_sites(["sub-01"], source=tmp_path / "bad.csv")


def test_render_report_escapes_text():
    page = render_report([CaseQC("<b>x</b>", count=1, volume_mm3=1.0)], title="a & b")
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page and "a &amp; b" in page


# ------------------------------------------------------------------------------------ browser

def _chromium(url: str, tmp: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp / 'profile'}", *args, url]
    return subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium (apt-get install chromium; .ci/run installs it)")
def test_the_page_in_a_real_browser(predicted, report, tmp_path):
    """Headless Chromium renders the page: the screenshot shows the plots (blue dots and bars on
    white) and the dark case pictures; after two clicks on "PVS count" the rows run from the
    highest count down, as the script in the page sorts them."""
    from PIL import Image

    page = report[0]
    shot = tmp_path / "shot.png"
    t0 = time.perf_counter()
    run = _chromium(page.as_uri(), tmp_path, f"--screenshot={shot}", "--window-size=1200,3000")
    assert shot.is_file(), run.stderr[-2000:]
    rgb = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert rgb.shape[:2] == (3000, 1200)
    page_bg = (np.abs(rgb - [250, 250, 250]).sum(-1) < 8).mean()
    dark = (rgb.max(-1) < 40).mean()  # the black picture panels
    blue = (np.abs(rgb - [31, 119, 180]).sum(-1) < 30).sum()  # the plots' dots and histogram bars
    red = ((rgb[..., 0] > 200) & (rgb[..., 1] < 70) & (rgb[..., 2] < 70)).sum()  # failed-case flag, mask fill
    assert 0.1 < page_bg < 0.95 and dark > 0.05 and blue > 2000 and red > 50, (page_bg, dark, blue, red)

    clicker = tmp_path / "clicked.html"  # the page plus a click, twice, on the PVS count heading
    clicker.write_text(page.read_text().replace(
        "</body>", "<script>var th=document.querySelector('th[data-key=count]');th.click();th.click();</script></body>"))
    dom = _chromium(clicker.as_uri(), tmp_path, "--dump-dom").stdout
    seconds = time.perf_counter() - t0
    assert re.search(r'data-key="count"[^>]*aria-sort="descending"', dom), dom[:500]
    order = re.findall(r'<tr class="[^"]*" data-case="([^"]+)"', dom)
    stats = {c: case_outputs(predicted, c).read_stats()["count"] for c in order if c != "sub-broken"}
    counts = [stats[c] for c in order if c != "sub-broken"]
    assert order[0] == "sub-heavy" and counts == sorted(counts, reverse=True) and order[-1] == "sub-broken", order
    print(f"chromium: screenshot + DOM in {seconds:.1f} s")
