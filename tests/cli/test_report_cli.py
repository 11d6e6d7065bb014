"""``mednet-pvs report``: its options reach the page, bad folders and outputs are one line."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from mednet_pvs.cli.main import main

sys.path.insert(0, str(Path(__file__).parents[1] / "viz"))
from _report_helpers import predict_output, tree  # the viz tests' predict output maker


@pytest.fixture(scope="module")
def predicted(tmp_path_factory):
    return predict_output(tmp_path_factory.mktemp("report_cli"))


def test_report_options_reach_the_page(predicted, tmp_path, capsys):
    before = tree(predicted)
    sites = tmp_path / "sites.csv"
    sites.write_text("case_id,site\n" + "".join(f"sub-00{i},scanner{'AB'[i % 2]}\n" for i in range(1, 7)))
    out = tmp_path / "plain.html"
    code = main(["report", "-i", str(predicted), "-o", str(out), "--sites", str(sites), "--outlier-z", "100", "--no-pictures", "-q", "-j", "2"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.out.startswith(f"wrote {out}") and captured.err == ""  # -q: the final line only
    page = out.read_text()
    assert f"sites from {sites}" in page and ">scannerA<" in page and ">scannerB<" in page
    assert ">unknown<" in page  # sub-heavy, sub-empty, sub-broken are not in the table
    assert "far above the cohort" not in page and "|robust z| &gt; 100" in page  # --outlier-z
    assert 'alt="sub-001: ' not in page  # --no-pictures: no case pictures (the cohort plots stay)
    assert tree(predicted) == before

    assert main(["report", "-i", str(predicted), "-o", str(out), "-j", "0"]) == 2  # --jobs at least 1
    capsys.readouterr()
    default = tmp_path / "default.html"
    assert main(["report", "-i", str(predicted), "-o", str(default), "--no-pictures"]) == 0
    captured = capsys.readouterr()
    assert "[1/9] sub-001" in captured.err and "[9/9]" in captured.err  # progress per case without -q
    page = default.read_text()
    assert "far above the cohort" in page and ">site1<" in page  # default z 3; sites found from the manifest


def test_report_writes_report_html_here_by_default(predicted, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["report", "-i", str(predicted), "--no-pictures", "-q"]) == 0
    assert (tmp_path / "report.html").is_file() and "wrote report.html" in capsys.readouterr().out


@pytest.mark.parametrize("case", ["not_predict_output", "out_is_folder", "out_inside_input", "bad_sites"])
def test_report_bad_input_is_one_line(case, predicted, tmp_path, capsys):
    folder, out, extra = predicted, tmp_path / "r.html", []
    if case == "not_predict_output":
        folder = tmp_path / "empty"
        folder.mkdir()
    elif case == "out_is_folder":
        out = tmp_path
    elif case == "out_inside_input":
        out = predicted / "report.html"
    else:
        (tmp_path / "s.csv").write_text("case_id,scanner\nsub-001,X\n")
        extra = ["--sites", str(tmp_path / "s.csv")]
    before = tree(predicted)
    code = main(["report", "-i", str(folder), "-o", str(out), "--no-pictures", *extra])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and lines[0].startswith("error: "), err
    expected = {"not_predict_output": "not a predict output folder", "out_is_folder": "is a folder",
                "out_inside_input": "never modifies", "bad_sites": "needs a site column"}[case]
    assert expected in lines[0]
    assert tree(predicted) == before and not (tmp_path / "r.html").exists()
