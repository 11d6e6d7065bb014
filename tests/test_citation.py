"""CITATION.cff is valid CFF 1.2.0 and agrees with the README, the package and pyproject.toml.

The schema is the official one, ``schema.json`` of citation-file-format/citation-file-format at tag
1.2.0 (commit 396f738fb025b1d8acdb02a56ffc923f95dc8999), vendored unchanged in
``tests/data/cff-1.2.0-schema.json`` so the test runs offline.
"""
from __future__ import annotations

import copy
import hashlib
import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

import mednet_pvs

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = Path(__file__).parent / "data" / "cff-1.2.0-schema.json"
SCHEMA_SHA256 = "0b8d22140da702d766df318dcff3a91af2f39521298dcf36d76315fd99cc169b"


class _CffLoader(yaml.SafeLoader):
    """YAML as CFF tools read it: dates stay strings (the schema types them as strings)."""


_CffLoader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:timestamp"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


@pytest.fixture(scope="module")
def cff() -> dict:
    return yaml.load((ROOT / "CITATION.cff").read_text(encoding="utf-8"), Loader=_CffLoader)


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    assert hashlib.sha256(SCHEMA.read_bytes()).hexdigest() == SCHEMA_SHA256, "vendored schema was modified"
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    assert schema["$id"] == "https://citation-file-format.github.io/1.2.0/schema.json"
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)


def test_citation_cff_is_valid_cff_1_2_0(cff, validator):
    errors = [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in validator.iter_errors(cff)]
    assert not errors, "\n".join(errors)
    assert cff["cff-version"] == "1.2.0"


def test_the_validator_rejects_broken_files(cff, validator):
    """Guard against a vacuous check: the schema does catch the usual mistakes."""
    for key, value in [("authors", None), ("cff-version", "1.3.0"), ("doi", "not-a-doi")]:
        bad = copy.deepcopy(cff)
        if value is None:
            del bad[key]
        else:
            bad[key] = value
        assert not validator.is_valid(bad), key
    bad = copy.deepcopy(cff)
    bad["preferred-citation"]["authors"][0] = {"family_names": "Low"}  # underscore: not a CFF key
    assert not validator.is_valid(bad)


def test_software_metadata_matches_the_package(cff):
    assert cff["type"] == "software"
    assert str(cff["version"]) == mednet_pvs.__version__
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert re.search(rf'license\s*=\s*{{\s*text\s*=\s*"{re.escape(cff["license"])}"', pyproject)
    assert cff["preferred-citation"]["url"] in pyproject  # [project.urls] Paper


def _readme_citation() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    m = re.search(r"^## Citation\s*$(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    assert m, "README.md has no '## Citation' section"
    return " ".join(m.group(1).split())


def _short_name(title: str) -> str:
    return title.split(":")[0].strip()  # "MedNeXt: Transformer-driven ..." -> "MedNeXt"


def test_readme_citation_section_matches_citation_cff(cff):
    section = _readme_citation()
    assert "CITATION.cff" in section
    works = [cff["preferred-citation"], *cff["references"]]
    assert [_short_name(w["title"]) for w in works] == ["MedNet-PVS", "MedNeXt", "nnU-Net"]
    for work in works:
        first = work["authors"][0]["family-names"]
        cite = f"{first} et al"
        assert cite in section, f"README citation section lacks {cite!r}"
        assert _short_name(work["title"]) in section
        assert str(work["year"]) in section
    arxiv = next(i["value"] for i in cff["preferred-citation"]["identifiers"] if i["value"].startswith("arXiv:"))
    assert arxiv == "arXiv:2508.20256" and arxiv in section
    assert cff["references"][1]["journal"] in section  # Nature Methods
    assert re.search(r"\((MICCAI) \d{4}\)", cff["references"][0]["collection-title"]).group(1) in section
