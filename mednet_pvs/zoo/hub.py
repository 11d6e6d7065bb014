"""Model bundles on the Hugging Face Hub: download (pinned, checked) and upload.

Downloads go through ``huggingface_hub.hf_hub_download``: the standard cache (``HF_HOME``,
``HF_HUB_CACHE`` or ``cache_dir=``), ``HF_HUB_OFFLINE`` and ``HF_ENDPOINT`` (read when called, so a
mirror or a test server set after import is honoured). A revision given as a 40-hex commit that is
already cached loads without any network request. Only ``config.json`` and ``model.safetensors``
are fetched: nothing that can execute code. A spec without a revision (``hf://owner/repo``) follows
the ``main`` branch; it still loads, with an :class:`UnpinnedRevisionWarning` naming the commit it
resolved to and the pinned spec (``hf://owner/repo@<that commit>``).
"""
from __future__ import annotations

import os
import re
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mednet_pvs.errors import ConfigError, InputError
from mednet_pvs.io import PathType

SCHEME = "hf://"
_SPEC = re.compile(r"hf://(?P<repo>[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*)(?P<sub>(?:/[\w.-]+)*)/?(?:@(?P<rev>[\w./-]+))?")
_HEX40 = re.compile(r"[0-9a-f]{40}")


class UnpinnedRevisionWarning(UserWarning):
    """An ``hf://owner/repo`` without ``@<commit>`` was loaded: it follows the ``main`` branch, so the
    same spec may give other weights tomorrow. The message names the commit and how to pin it."""


@dataclass(frozen=True)
class HubSpec:
    """Where a bundle lives on the Hub: ``hf://owner/repo[/subfolder][@revision]``."""

    repo_id: str
    revision: str | None = None
    subfolder: str | None = None

    def __str__(self) -> str:
        sub = f"/{self.subfolder}" if self.subfolder else ""
        rev = f"@{self.revision}" if self.revision else ""
        return f"{SCHEME}{self.repo_id}{sub}{rev}"


def parse_hub_spec(text: str) -> HubSpec:
    """``"hf://owner/repo[/subfolder][@revision]"`` -> :class:`HubSpec`; :class:`ConfigError` otherwise."""
    m = _SPEC.fullmatch(text.strip())
    if not m:
        raise ConfigError(f"{text!r} is not a Hub model spec: write hf://owner/repo, hf://owner/repo@<commit> "
                          "or hf://owner/repo/subfolder@<revision>")
    return HubSpec(m["repo"], m["rev"], m["sub"].strip("/") or None)


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def offline_mode(local_files_only: bool | None = None) -> bool:
    """Whether downloads are off: ``local_files_only`` if given, else ``HF_HUB_OFFLINE`` (now or at import)."""
    if local_files_only is not None:
        return bool(local_files_only)
    from huggingface_hub import constants

    return _truthy(os.environ.get("HF_HUB_OFFLINE")) or constants.is_offline_mode()


def endpoint() -> str | None:
    """``HF_ENDPOINT`` as it is now (``None``: huggingface_hub's default)."""
    value = os.environ.get("HF_ENDPOINT", "").strip().rstrip("/")
    return value or None


def fetch_instructions(spec: HubSpec) -> str:
    """How to get a bundle onto a machine without internet access (one line)."""
    from mednet_pvs.inference.bundle import CONFIG, WEIGHTS

    rev = spec.revision or "main"
    folder = spec.repo_id.split("/")[1]
    files = " ".join(f"{spec.subfolder}/{f}" if spec.subfolder else f for f in (CONFIG, WEIGHTS))
    where = f"{folder}/{spec.subfolder}" if spec.subfolder else folder
    return (f"on a machine with internet access run `hf download {spec.repo_id} {files} --revision {rev} --local-dir {folder}` "
            f"(`huggingface-cli download ...` with huggingface_hub < 1.0), copy the folder here and call "
            f"load_pretrained('{where}'); or copy that machine's Hugging Face cache (HF_HOME) and keep HF_HUB_OFFLINE=1")


def _snapshot_commit(path: Path) -> str | None:
    """The commit of a cached file (``.../snapshots/<commit>/...``), or ``None``."""
    parts = path.parts
    if "snapshots" in parts:
        i = len(parts) - 1 - parts[::-1].index("snapshots")
        if i + 1 < len(parts) and _HEX40.fullmatch(parts[i + 1]):
            return parts[i + 1]
    return None


def _weightless(config: Path) -> bool:
    from mednet_pvs.inference.bundle import read_bundle_config

    try:
        return not read_bundle_config(config.parent).members
    except InputError:
        return False  # load_bundle reports a broken config.json


def download_bundle(
    spec: HubSpec,
    *,
    sha256: dict[str, str] | None = None,
    cache_dir: PathType | None = None,
    local_files_only: bool | None = None,
    token: str | bool | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Fetch ``config.json`` and ``model.safetensors`` of a Hub bundle (or find them in the cache).

    Args:
        spec: repository, revision (a branch is resolved to its commit first, so both files come
            from the same commit) and subfolder.
        sha256: expected digests per file; a mismatch is refused (:class:`InputError`).
        cache_dir: Hugging Face cache folder (default: ``HF_HUB_CACHE`` / ``HF_HOME/hub``).
        local_files_only: never use the network (default: ``HF_HUB_OFFLINE``).
        token: Hub token for private repositories (default: the saved login).

    Returns:
        ``(folder holding both files, provenance {"hub", "revision", "subfolder", "sha256"})``.
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    from mednet_pvs.inference.bundle import CONFIG, WEIGHTS, sha256_of
    from mednet_pvs.version import __version__

    offline = offline_mode(local_files_only)
    revision = spec.revision or "main"
    paths: dict[str, Path] = {}
    for fname in (CONFIG, WEIGHTS):
        if fname == WEIGHTS and _weightless(paths[CONFIG]):
            break  # a Frangi bundle: config.json is the whole model
        where = f"{spec}: {spec.subfolder + '/' if spec.subfolder else ''}{fname}"
        try:
            p = Path(hf_hub_download(
                spec.repo_id, fname, subfolder=spec.subfolder, revision=revision, cache_dir=cache_dir,
                local_files_only=offline, token=token, endpoint=endpoint(),
                library_name="mednet-pvs", library_version=__version__,
            ))
        except (LocalEntryNotFoundError, OfflineModeIsEnabled) as e:
            cause = e.__cause__ or e
            why = ("downloads are off (HF_HUB_OFFLINE=1 or local_files_only=True)" if offline
                   else f"the Hub ({endpoint() or 'https://huggingface.co'}) cannot be reached "
                        f"({type(cause).__name__}: {str(cause).strip().splitlines()[0] if str(cause).strip() else '-'})")
            raise InputError(where, f"not in the local Hugging Face cache and {why}; {fetch_instructions(spec)}") from None
        except GatedRepoError:
            raise InputError(where, "gated repository: accept its conditions on the Hub and log in (`hf auth login`) "
                                    "or pass token=") from None
        except RepositoryNotFoundError:
            raise InputError(where, "repository not found, or private (log in with `hf auth login` or pass token=)") from None
        except RevisionNotFoundError:
            raise InputError(where, f"the repository has no revision {revision!r}") from None
        except RemoteEntryNotFoundError:
            raise InputError(where, "not in the repository: a mednet-pvs model repository holds config.json + model.safetensors "
                                    "(written by save_pretrained / push_to_hub)") from None
        except (HfHubHTTPError, OSError, ValueError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise InputError(where, f"download failed: {first}") from None
        paths[fname] = p
        commit = _snapshot_commit(p)
        if fname == CONFIG and commit and commit != revision:
            revision = commit  # a branch or tag: take the weights from the very commit the config came from
    folder = paths[CONFIG].parent
    if WEIGHTS in paths and paths[WEIGHTS].parent != folder:
        raise InputError(paths[WEIGHTS], f"is not beside {paths[CONFIG]}: the cache is inconsistent; delete both and retry")
    digests = {f: sha256_of(p) for f, p in paths.items()}
    for fname, want in (sha256 or {}).items():
        if digests.get(fname) != want:
            raise InputError(paths[fname], f"sha256 {digests.get(fname)} does not match the expected {want} for {spec}: refused "
                                           "(the file is not the one the registry pins; if the cache is corrupted, delete it "
                                           "and download again)")
    provenance = {"hub": spec.repo_id, "revision": _snapshot_commit(paths[CONFIG]) or revision,
                  "subfolder": spec.subfolder, "sha256": digests}
    if spec.revision is None:
        warnings.warn(unpinned_message(spec, provenance["revision"]), UnpinnedRevisionWarning, stacklevel=2)
    return folder, provenance


def unpinned_message(spec: HubSpec, commit: str) -> str:
    """One line: ``spec`` has no revision, so it followed ``main`` to ``commit``; how to pin that commit."""
    known = bool(_HEX40.fullmatch(commit))
    pinned = HubSpec(spec.repo_id, commit if known else "<commit>", spec.subfolder)
    now = f"commit {commit}" if known else "its latest commit"
    return (f"{spec} is not pinned: it follows the branch 'main', which now resolves to {now} and may change; "
            f"write {pinned} to load exactly these weights every time")


@dataclass(frozen=True)
class PushResult:
    """What :func:`push_to_hub` made: the commit to pin, and the digests a registry entry needs."""

    repo_id: str
    revision: str
    url: str
    subfolder: str | None = None
    sha256: dict[str, str] = field(default_factory=dict)

    @property
    def spec(self) -> str:
        """``hf://owner/repo[/subfolder]@<commit>``: load exactly what was pushed."""
        return str(HubSpec(self.repo_id, self.revision, self.subfolder))

    def entry_weights(self) -> str:
        """The ``weights:`` block of a registry entry (YAML) pinning this upload."""
        lines = ["weights:", "  kind: hub", f"  repo_id: {self.repo_id}", f"  revision: '{self.revision}'"]
        if self.subfolder:
            lines.append(f"  subfolder: {self.subfolder}")
        lines += ["  sha256:", *[f"    {k}: '{v}'" for k, v in sorted(self.sha256.items())]]
        return "\n".join(lines) + "\n"


def push_to_hub(
    model: Any,
    repo_id: str,
    *,
    subfolder: str | None = None,
    revision: str | None = None,
    private: bool | None = None,
    token: str | bool | None = None,
    commit_message: str | None = None,
    create_repo: bool = True,
) -> PushResult:
    """Upload a model (or a bundle folder) to the Hub: ``config.json``, ``model.safetensors``, ``README.md``.

    Args:
        model: a :class:`~mednet_pvs.inference.PVSModel` (saved with a generated model card) or a
            bundle folder (uploaded as it is, after checking that it loads).
        repo_id: ``owner/name``.
        subfolder: a folder inside the repository (several models in one repository).
        revision: branch to commit to (default ``main``).
        private: create the repository private (only when it does not exist yet).
        token: Hub token (default: the saved login).
        commit_message: default ``"Upload <model name> (mednet-pvs)"``.
        create_repo: create the repository if needed.

    Returns:
        :class:`PushResult` (``result.spec`` is the pinned ``hf://`` spec to load it back).
    """
    from huggingface_hub import HfApi

    from mednet_pvs.inference.bundle import CARD, CONFIG, WEIGHTS, load_bundle, read_bundle_config, sha256_of

    if not re.fullmatch(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*", repo_id):
        raise ConfigError(f"repo_id must be 'owner/name', not {repo_id!r}")
    api = HfApi(endpoint=endpoint(), token=token)
    with tempfile.TemporaryDirectory(prefix="mednet-pvs-push-") as tmp:
        if isinstance(model, (str, os.PathLike)):
            folder = Path(model)
            load_bundle(folder, device="cpu")  # refuse to publish a bundle that does not load
        else:
            folder = Path(model.save_pretrained(Path(tmp) / "bundle", load_as=str(HubSpec(repo_id, None, subfolder))))
        config = read_bundle_config(folder)
        files = [f for f in (CONFIG, WEIGHTS, CARD) if (folder / f).is_file()]
        digests = {f: sha256_of(folder / f) for f in (CONFIG, WEIGHTS) if f in files}
        if create_repo:
            api.create_repo(repo_id, private=private, exist_ok=True)
        info = api.upload_folder(
            repo_id=repo_id, folder_path=folder, path_in_repo=subfolder, revision=revision, allow_patterns=files,
            commit_message=commit_message or f"Upload {config.name} (mednet-pvs)",
        )
    return PushResult(repo_id=repo_id, revision=info.oid, url=info.commit_url, subfolder=subfolder, sha256=digests)
