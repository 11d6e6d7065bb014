"""The zoo's registry: one small YAML file per model, read into :class:`ZooEntry` objects.

    from mednet_pvs.zoo import list_models, get_entry
    list_models()                       # pandas table: name, contrast, network, weights, figures
    get_entry("mednet-pvs-t2w")         # ZooEntry: data, figures, where the weights come from

Entries live in one place, ``mednet_pvs/zoo/entries/<name>.yaml`` (package data, so an installed
package has them; the repository's top-level ``zoo/README.md`` lists them). Folders named in the
``MEDNET_PVS_ZOO_PATH`` environment variable (``os.pathsep``-separated) add entries of one's own
(a lab's private models).

Where an entry's weights come from (``weights.kind``):

- ``hub``: a Hugging Face Hub repository pinned to a 40-hex commit, with the sha256 of
  ``config.json`` and ``model.safetensors`` (checked after download; a mismatch is refused).
- ``bundled``: a bundle folder shipped inside the package (``mednet_pvs/zoo/bundled/<folder>``).
- ``external``: no public weights in a form this package can fetch; the entry says how to obtain
  the authors' files and which ``mednet-pvs import-nnunet-v1`` command turns them into a bundle.
- ``frangi``: the classical baseline, no weights (``contrast`` picks the tube polarity).
"""
from __future__ import annotations

import difflib
import fnmatch
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mednet_pvs.errors import ConfigError, InputError

ENTRIES_DIR = Path(__file__).with_name("entries")
BUNDLED_DIR = Path(__file__).with_name("bundled")
ENV_PATH = "MEDNET_PVS_ZOO_PATH"

WEIGHT_KINDS = ("hub", "bundled", "external", "frangi")
BUNDLE_FILES = ("config.json", "model.safetensors")
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]*")
_REPO = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")
_HEX40, _HEX64 = re.compile(r"[0-9a-f]{40}"), re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Figure:
    """One validation figure of a model (as reported, e.g. a mean over cross-validation folds).

    Attributes:
        metric: e.g. ``"voxel Dice"``, ``"cluster Dice"``.
        value: the figure (Dice in [0, 1]).
        region: where it was measured (``"white matter"``, ``"basal ganglia"``), if per region.
        protocol: how (``"5-fold cross-validation"``, ``"leave-one-site-out"``).
        data: on which scans.
    """

    metric: str
    value: float
    region: str | None = None
    protocol: str | None = None
    data: str | None = None

    def label(self) -> str:
        """Short text such as ``"voxel Dice WM 0.88"``."""
        region = f" {_abbrev(self.region)}" if self.region else ""
        return f"{self.metric}{region} {self.value:.2f}"


def _abbrev(region: str) -> str:
    return {"white matter": "WM", "basal ganglia": "BG"}.get(region.lower(), region)


@dataclass(frozen=True)
class Weights:
    """Where an entry's weights come from (see the module docstring for the kinds)."""

    kind: str
    repo_id: str | None = None
    revision: str | None = None
    subfolder: str | None = None
    sha256: dict[str, str] = field(default_factory=dict)
    folder: str | None = None
    contrast: str | None = None
    how_to_get: str | None = None
    import_command: str | None = None

    @property
    def loadable(self) -> bool:
        """Whether :func:`~mednet_pvs.zoo.load_pretrained` can load it by name."""
        return self.kind != "external"

    def describe(self) -> str:
        """One short line for tables."""
        if self.kind == "hub":
            sub = f"/{self.subfolder}" if self.subfolder else ""
            return f"Hub: {self.repo_id}{sub}@{(self.revision or '')[:7]}"
        if self.kind == "bundled":
            return "bundled with the package"
        if self.kind == "frangi":
            return "built in (no weights)"
        return "not public (import the authors' files)"


@dataclass(frozen=True)
class ZooEntry:
    """A registered model: what it is, how well it did, and where its weights come from.

    Attributes:
        name: unique lower-case name (the YAML file's stem), e.g. ``"mednet-pvs-t2w"``.
        title: one line.
        contrast: MRI contrast it segments (``"T2w"``, ``"T1w"``, ``"FLAIR"``).
        weights: :class:`Weights`.
        task: what it segments.
        regions: brain regions it was trained / validated on.
        network: what the weights are (``family``: ``mednext`` / ``generic_unet_v1`` / ``frangi``
            ..., ``size``, ``kernel_size``, ``label`` for display).
        preprocessing: what it expects (target spacing...), informative.
        training_data: on which scans it was trained.
        training: how it was trained, for a model trained by this package (``command``, ``seed``,
            ``hardware``, ``steps``, ``minutes``...): enough to train it again.
        validation: reported figures (:class:`Figure`).
        licence: terms of use of the weights.
        citation: what to cite (plain text or BibTeX).
        description: a paragraph (model card).
        aliases: other names that resolve to it.
        path: the YAML file it was read from.
    """

    name: str
    title: str
    contrast: str
    weights: Weights
    task: str = "PVS segmentation"
    regions: tuple[str, ...] = ()
    network: dict[str, Any] = field(default_factory=dict)
    preprocessing: dict[str, Any] = field(default_factory=dict)
    training_data: str | None = None
    training: dict[str, Any] = field(default_factory=dict)
    validation: tuple[Figure, ...] = ()
    licence: str | None = None
    citation: str | None = None
    description: str | None = None
    aliases: tuple[str, ...] = ()
    path: Path | None = None

    @property
    def network_label(self) -> str:
        net = self.network
        if net.get("label"):
            return str(net["label"])
        parts = [str(net.get("family", "?"))]
        if net.get("size"):
            parts.append(str(net["size"]))
        if net.get("kernel_size"):
            parts.append(f"k{net['kernel_size']}")
        return " ".join(parts)

    def summary_row(self) -> dict[str, str]:
        """The entry as one table row (``mednet-pvs models``, :func:`list_models`)."""
        return {
            "name": self.name,
            "contrast": self.contrast,
            "network": self.network_label,
            "regions": ", ".join(_abbrev(r) for r in self.regions),
            "validation": "; ".join(f.label() for f in self.validation),
            "weights": self.weights.describe(),
            "title": self.title,
        }

    def meta(self) -> dict[str, Any]:
        """What a bundle of this model keeps in ``config.json``'s ``meta`` (and its model card shows)."""
        out: dict[str, Any] = {"zoo_entry": self.name, "title": self.title, "contrast": self.contrast, "task": self.task}
        if self.regions:
            out["regions"] = list(self.regions)
        if self.training_data:
            out["training_data"] = self.training_data
        if self.training:
            out["training"] = dict(self.training)
        if self.validation:
            out["metrics"] = [{k: v for k, v in vars(f).items() if v is not None} for f in self.validation]
        for key in ("licence", "citation", "description"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        return out


# ------------------------------------------------------------------------------------- parsing

_ENTRY_KEYS = {"name", "title", "contrast", "weights", "task", "regions", "network", "preprocessing",
               "training_data", "training", "validation", "licence", "citation", "description", "aliases"}
_WEIGHT_KEYS = {
    "hub": ({"repo_id", "revision", "sha256"}, {"subfolder"}),
    "bundled": ({"folder"}, set()),
    "external": ({"how_to_get", "import_command"}, set()),
    "frangi": ({"contrast"}, set()),
}


def _keys(d: Any, required: set[str], optional: set[str], what: str, path: Path) -> dict:
    if not isinstance(d, dict):
        raise InputError(path, f"{what} must be a mapping, not {type(d).__name__}")
    missing = sorted(required - set(d))
    unknown = sorted(set(d) - required - optional)
    if missing:
        raise InputError(path, f"{what}: missing key(s) {', '.join(missing)}")
    if unknown:
        raise InputError(path, f"{what}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(required | optional))})")
    return d


def _weights(d: Any, path: Path) -> Weights:
    kind = d.get("kind") if isinstance(d, dict) else None
    if kind not in WEIGHT_KINDS:
        raise InputError(path, f"weights.kind must be one of {', '.join(WEIGHT_KINDS)}, not {kind!r}")
    required, optional = _WEIGHT_KEYS[kind]
    d = dict(_keys(d, required | {"kind"}, optional, f"weights ({kind})", path))
    if kind == "hub":
        if not _REPO.fullmatch(str(d["repo_id"])):
            raise InputError(path, f"weights.repo_id must be 'owner/name', not {d['repo_id']!r}")
        sha = d["sha256"]
        if not isinstance(d["revision"], str) or not isinstance(sha, dict) or not all(isinstance(v, str) for v in sha.values()):
            raise InputError(path, "weights.revision and weights.sha256 values must be quoted strings "
                                   "(YAML reads all-digit hex as numbers)")
        if not _HEX40.fullmatch(str(d["revision"])):
            raise InputError(path, f"weights.revision must be a full 40-hex commit id (pinned), not {d['revision']!r}")
        if set(sha) != set(BUNDLE_FILES) or not all(_HEX64.fullmatch(str(v)) for v in sha.values()):
            raise InputError(path, f"weights.sha256 must map exactly {', '.join(BUNDLE_FILES)} to 64-hex sha256 digests")
        d["sha256"] = {k: str(v) for k, v in sha.items()}
    if kind == "frangi" and d["contrast"] not in ("T2w", "T1w", "FLAIR"):
        raise InputError(path, f"weights.contrast must be T2w, T1w or FLAIR, not {d['contrast']!r}")
    return Weights(**d)


def _figure(d: Any, path: Path) -> Figure:
    d = _keys(d, {"metric", "value"}, {"region", "protocol", "data"}, "validation item", path)
    try:
        value = float(d["value"])
    except (TypeError, ValueError):
        raise InputError(path, f"validation value must be a number, not {d['value']!r}") from None
    return Figure(**{**d, "value": value})


def read_entry(path: str | os.PathLike) -> ZooEntry:
    """Read and check one entry file; every problem is an :class:`InputError` naming it."""
    import yaml

    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise InputError(path, f"not a readable YAML entry ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    d = dict(_keys(raw, {"name", "title", "contrast", "weights"}, _ENTRY_KEYS, "entry", path))
    if d["name"] != path.stem or not _NAME.fullmatch(str(d["name"])):
        raise InputError(path, f"name {d['name']!r} must be lower-case (a-z, 0-9, '.', '_', '-') and equal the file name {path.stem!r}")
    d["weights"] = _weights(d["weights"], path)
    d["validation"] = tuple(_figure(f, path) for f in d.get("validation") or ())
    for key in ("regions", "aliases"):
        d[key] = tuple(str(v) for v in d.get(key) or ())
    for key in ("network", "preprocessing", "training"):
        if not isinstance(d.get(key, {}), dict):
            raise InputError(path, f"{key} must be a mapping")
    return ZooEntry(**d, path=path)


def entry_dirs() -> list[Path]:
    """The folders entries are read from: the package's, then ``$MEDNET_PVS_ZOO_PATH``'s."""
    extra = [Path(p).expanduser() for p in os.environ.get(ENV_PATH, "").split(os.pathsep) if p.strip()]
    for d in extra:
        if not d.is_dir():
            raise InputError(d, f"named in ${ENV_PATH} but not a folder")
    return [ENTRIES_DIR, *extra]


def _all_entries() -> dict[str, ZooEntry]:
    """name and alias -> entry, over every entry folder (re-read on each call: a handful of small files)."""
    found: dict[str, ZooEntry] = {}
    for folder in entry_dirs():
        for path in sorted(folder.glob("*.yaml")):
            entry = read_entry(path)
            for key in (entry.name, *entry.aliases):
                if key in found:
                    raise InputError(path, f"name {key!r} is already used by {found[key].path}")
                found[key] = entry
    return found


def model_entries(pattern: str = "*") -> list[ZooEntry]:
    """Registered entries whose name matches a shell-style wildcard (``"mednet-*"``), sorted by name."""
    entries = {e.name: e for e in _all_entries().values()}
    return [entries[n] for n in sorted(entries) if fnmatch.fnmatchcase(n, pattern)]


def find_entry(name: str) -> ZooEntry | None:
    """The entry called ``name`` (or with that alias), or ``None``."""
    return _all_entries().get(name)


def get_entry(name: str) -> ZooEntry:
    """The entry called ``name`` (or with that alias); :class:`ConfigError` listing names otherwise."""
    entries = _all_entries()
    if name in entries:
        return entries[name]
    raise ConfigError(unknown_name_message(name, entries))


def unknown_name_message(name: str, entries: dict[str, ZooEntry] | None = None) -> str:
    """``unknown model 'x'. Did you mean ...? Known models: ...`` (with difflib close matches)."""
    entries = _all_entries() if entries is None else entries
    names = sorted({e.name for e in entries.values()})
    close = difflib.get_close_matches(name, list(entries), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(dict.fromkeys(entries[c].name for c in close))}?" if close else ""
    return (f"unknown model {name!r}.{hint} Known models: {', '.join(names)}. "
            "A model folder (config.json + model.safetensors, or an nnU-Net v1 result folder) or "
            "hf://owner/repo[@revision] also works.")


def list_models(pattern: str = "*") -> Any:
    """A pandas DataFrame of the registered models (one row each, indexed by name).

    Columns: contrast, network, regions, validation (reported figures), weights (where they come
    from), title.
    """
    import pandas as pd

    rows = [e.summary_row() for e in model_entries(pattern)]
    columns = ["name", "contrast", "network", "regions", "validation", "weights", "title"]
    return pd.DataFrame(rows, columns=columns).set_index("name")
