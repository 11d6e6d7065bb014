"""A Hugging Face Hub on 127.0.0.1 for tests: the requests ``huggingface_hub`` makes, answered as the Hub does.

Emulated (as huggingface_hub 2.x calls them):

- downloads: ``HEAD``/``GET {endpoint}/{repo}/resolve/{revision}/{path}``. Regular files answer 200
  with ``ETag`` (git blob sha1), ``X-Repo-Commit`` and ``Content-Length``. LFS files
  (``*.safetensors``) answer ``302`` to a second server on another port (a CDN: another origin, so
  the client neither follows the redirect on HEAD nor sends its token there) with
  ``X-Linked-Etag`` (the sha256), ``X-Linked-Size`` and ``X-Repo-Commit``; the CDN serves the blob
  only with a signature query. Branches resolve to commits; unknown repositories answer 401 with
  ``X-Error-Code: RepoNotFound``, unknown revisions 404 ``RevisionNotFound``, unknown files 404
  ``EntryNotFound`` (with ``X-Repo-Commit``).
- uploads (``HfApi.create_repo`` + ``upload_folder``): ``POST /api/repos/create`` (409 when it
  exists), ``POST /api/validate-yaml``, ``POST /api/models/{repo}/preupload/{rev}`` (LFS for
  ``*.safetensors``), the LFS batch API ``POST /{repo}.git/info/lfs/objects/batch`` (basic transfer:
  ``PUT`` to the CDN, then ``verify``), and ``POST /api/models/{repo}/commit/{rev}`` (NDJSON with
  base64 regular files and LFS pointers), which makes a new commit on the branch.

Not emulated: Xet storage (tests set ``HF_HUB_DISABLE_XET``; downloads never see Xet headers),
multipart LFS, pull requests, ``repo_info``/tree listings.
"""
from __future__ import annotations

import base64
import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def is_lfs(path: str) -> bool:
    return path.endswith((".safetensors", ".bin", ".pt"))


@dataclass
class Seen:
    """One request as the server saw it."""

    server: str  # "hub" or "cdn"
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class Repo:
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)


class FakeHub:
    """Two loopback HTTP servers (Hub + CDN) with in-memory repositories."""

    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.blobs: dict[str, bytes] = {}  # sha256 -> content (LFS storage)
        self.seen: list[Seen] = []
        self.lock = threading.Lock()
        self._hub = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self, "hub"))
        self._cdn = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self, "cdn"))
        for server in (self._hub, self._cdn):
            threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._hub.server_address[1]}"

    @property
    def cdn(self) -> str:
        return f"http://127.0.0.1:{self._cdn.server_address[1]}"

    def close(self) -> None:
        for server in (self._hub, self._cdn):
            server.shutdown()
            server.server_close()

    # ---------------------------------------------------------------------------- repositories
    def commit(self, repo_id: str, files: dict[str, bytes], branch: str = "main", *, replace: bool = False) -> str:
        """Add a commit with ``files`` (on top of the branch's, unless ``replace``); returns its sha."""
        with self.lock:
            repo = self.repos.setdefault(repo_id, Repo())
            parent = repo.refs.get(branch)
            tree = {} if (replace or parent is None) else dict(repo.commits[parent])
            tree.update(files)
            digest = hashlib.sha1(json.dumps([parent, sorted((p, hashlib.sha256(d).hexdigest()) for p, d in tree.items())]).encode())
            sha = digest.hexdigest()
            repo.commits[sha] = tree
            repo.refs[branch] = sha
            for data in tree.values():
                self.blobs[hashlib.sha256(data).hexdigest()] = data
            return sha

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        repo = self.repos[repo_id]
        return repo.commits[repo.refs.get(revision, revision)]

    def requests(self, server: str | None = None) -> list[Seen]:
        with self.lock:
            return [s for s in self.seen if server is None or s.server == server]


def _handler(hub: FakeHub, name: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # quiet
            pass

        # ------------------------------------------------------------------------ plumbing
        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                out = b""
                while True:
                    size = int(self.rfile.readline().strip().split(b";")[0], 16)
                    if size == 0:
                        self.rfile.readline()
                        return out
                    out += self.rfile.read(size)
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
                  content_type: str = "application/octet-stream") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, status: int, obj: object, headers: dict[str, str] | None = None) -> None:
            self._send(status, json.dumps(obj).encode(), headers, "application/json")

        def _error(self, status: int, code: str, message: str, extra: dict[str, str] | None = None) -> None:
            self._json(status, {"error": message}, {"X-Error-Code": code, "X-Error-Message": message, **(extra or {})})

        def _record(self) -> None:
            with hub.lock:
                hub.seen.append(Seen(name, self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))

        def _handle(self) -> None:
            self._record()
            self._route()

        do_HEAD = do_GET = do_POST = do_PUT = _handle

        # ------------------------------------------------------------------------ routes
        def _route(self) -> None:
            url = urlsplit(self.path)
            parts = [unquote(p) for p in url.path.strip("/").split("/")]
            if name == "cdn":
                return self._cdn(parts, parse_qs(url.query))
            if self.command in ("HEAD", "GET") and len(parts) >= 5 and parts[2] == "resolve":
                return self._resolve(f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:]))
            if self.command == "POST" and parts[:3] == ["api", "repos", "create"]:
                return self._create_repo(json.loads(self._body()))
            if self.command == "POST" and parts[:2] == ["api", "validate-yaml"]:
                self._body()
                return self._json(200, {"errors": [], "warnings": []})
            if self.command == "POST" and len(parts) == 6 and parts[:2] == ["api", "models"] and parts[4] == "preupload":
                return self._preupload(f"{parts[2]}/{parts[3]}", json.loads(self._body()))
            if self.command == "POST" and len(parts) == 6 and parts[:2] == ["api", "models"] and parts[4] == "commit":
                return self._commit(f"{parts[2]}/{parts[3]}", parts[5], self._body())
            if self.command == "POST" and len(parts) == 6 and parts[1].endswith(".git") and parts[2:4] == ["info", "lfs"]:
                repo_id = f"{parts[0]}/{parts[1][:-4]}"
                payload = json.loads(self._body())
                return self._lfs_batch(repo_id, payload) if parts[5] == "batch" else self._lfs_verify(payload)
            self._error(404, "NotFound", f"no route for {self.command} {url.path}")

        def _resolve(self, repo_id: str, revision: str, path: str) -> None:
            repo = hub.repos.get(repo_id)
            if repo is None:
                return self._error(401, "RepoNotFound", "Repository not found")
            commit = repo.refs.get(revision, revision if revision in repo.commits else None)
            if commit is None:
                return self._error(404, "RevisionNotFound", "Invalid rev id: " + revision)
            data = repo.commits[commit].get(path)
            if data is None:
                return self._error(404, "EntryNotFound", "Entry not found", {"X-Repo-Commit": commit})
            if is_lfs(path):
                sha = hashlib.sha256(data).hexdigest()
                pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha}\nsize {len(data)}\n".encode()
                return self._send(302, b"", {
                    "Location": f"{hub.cdn}/repos/{sha[:2]}/{sha}?X-Amz-Signature=fake&X-Amz-Expires=3600",
                    "X-Repo-Commit": commit, "ETag": f'"{git_blob_sha1(pointer)}"',
                    "X-Linked-Etag": f'"{sha}"', "X-Linked-Size": str(len(data)),
                })
            self._send(200, data, {"ETag": f'"{git_blob_sha1(data)}"', "X-Repo-Commit": commit, "Accept-Ranges": "bytes"})

        def _cdn(self, parts: list[str], query: dict[str, list[str]]) -> None:
            if self.command == "PUT" and parts[:1] == ["upload"]:
                data = self._body()
                if hashlib.sha256(data).hexdigest() != parts[1]:
                    return self._send(400, b"sha256 mismatch")
                with hub.lock:
                    hub.blobs[parts[1]] = data
                return self._send(200)
            if parts[:1] != ["repos"] or "X-Amz-Signature" not in query:
                return self._send(403, b"<Error><Code>AccessDenied</Code></Error>", content_type="application/xml")
            data = hub.blobs.get(parts[-1])
            if data is None:
                return self._send(404, b"<Error><Code>NoSuchKey</Code></Error>", content_type="application/xml")
            self._send(200, data, {"ETag": f'"{hashlib.md5(data).hexdigest()}"'})

        def _create_repo(self, payload: dict) -> None:
            repo_id = f"{payload.get('organization')}/{payload['name']}"
            with hub.lock:
                exists = repo_id in hub.repos
                hub.repos.setdefault(repo_id, Repo())
            if exists:  # the Hub's 409 also carries the url
                message = "You already created this model repo"
                return self._json(409, {"error": message, "url": f"{hub.endpoint}/{repo_id}"}, {"X-Error-Message": message})
            self._json(200, {"url": f"{hub.endpoint}/{repo_id}", "name": repo_id, "id": repo_id})

        def _preupload(self, repo_id: str, payload: dict) -> None:
            if repo_id not in hub.repos:
                return self._error(401, "RepoNotFound", "Repository not found")
            files = [{"path": f["path"], "uploadMode": "lfs" if is_lfs(f["path"]) else "regular",
                      "shouldIgnore": False, "oid": None} for f in payload["files"]]
            self._json(200, {"files": files})

        def _lfs_batch(self, repo_id: str, payload: dict) -> None:
            objects = []
            for obj in payload["objects"]:
                out = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
                if obj["oid"] not in hub.blobs:
                    out["actions"] = {
                        "upload": {"href": f"{hub.cdn}/upload/{obj['oid']}", "header": {}},
                        "verify": {"href": f"{hub.endpoint}/{repo_id}.git/info/lfs/objects/verify", "header": {}},
                    }
                objects.append(out)
            self._send(200, json.dumps({"transfer": "basic", "objects": objects}).encode(), content_type="application/vnd.git-lfs+json")

        def _lfs_verify(self, payload: dict) -> None:
            ok = payload.get("oid") in hub.blobs and len(hub.blobs[payload["oid"]]) == payload.get("size")
            self._json(200 if ok else 422, {"message": "ok" if ok else "object missing"})

        def _commit(self, repo_id: str, revision: str, body: bytes) -> None:
            if repo_id not in hub.repos:
                return self._error(401, "RepoNotFound", "Repository not found")
            files: dict[str, bytes] = {}
            for line in body.decode().splitlines():
                item = json.loads(line)
                value = item["value"]
                if item["key"] == "file":
                    files[value["path"]] = base64.b64decode(value["content"])
                elif item["key"] == "lfsFile":
                    if value["oid"] not in hub.blobs:
                        return self._error(422, "LfsObjectMissing", f"LFS object {value['oid']} was not uploaded")
                    files[value["path"]] = hub.blobs[value["oid"]]
            sha = hub.commit(repo_id, files, branch=revision)
            self._json(200, {"commitUrl": f"{hub.endpoint}/{repo_id}/commit/{sha}", "commitOid": sha, "pullRequestUrl": None})

    return Handler
