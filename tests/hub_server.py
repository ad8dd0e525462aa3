"""A Hub-protocol HTTP server for TESTS ONLY.

This module is test infrastructure: it is not part of the `hf_active_synth` package, it stores everything in memory,
it has no real authentication (any token starting with `hf_` is accepted as the single test user), and it must never
be exposed beyond `127.0.0.1`. It speaks just enough of the Hugging Face Hub HTTP protocol for the real clients
(`huggingface_hub`, `datasets`, `transformers`) to create repositories, commit (regular and LFS files), create
branches and tags, list trees and refs, and download files by revision, so that the project's Hub code is tested
over real HTTP with the real client libraries.

Storage is git-less: a commit is an immutable snapshot `{path: file entry}`, branches and tags are names pointing at
commit ids, and LFS objects are kept in a per-server store keyed by sha256.

Fault injection: `server.fail_next(n, status=500, path_contains="/commit/")` makes the next `n` matching requests fail,
`server.fail_until_cleared(...)` makes every matching request fail until `server.clear_faults()`.

The `hub_server` fixture starts one server per test session on the port reserved by `tests/conftest.py`
(`HF_HUB_TEST_PORT`, with `HF_ENDPOINT` already pointing at it) and resets its state before each test.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, unquote, urlsplit

import pytest

TEST_USER = "test-user"
"""The only user of the test server: every valid token belongs to it."""

_LFS_SUFFIXES = (
    ".safetensors",
    ".bin",
    ".pt",
    ".pth",
    ".ckpt",
    ".h5",
    ".onnx",
    ".parquet",
    ".arrow",
    ".gguf",
    ".msgpack",
    ".npy",
    ".npz",
    ".pkl",
    ".zip",
    ".gz",
    ".tar",
    ".png",
    ".jpg",
    ".jpeg",
)
_LFS_MIN_SIZE = 10 * 1024 * 1024
_REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
_URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
_GITATTRIBUTES = "".join(f"*{suffix} filter=lfs diff=lfs merge=lfs -text\n" for suffix in _LFS_SUFFIXES).encode()


def _git_blob_id(content: bytes) -> str:
    return hashlib.sha1(b"blob " + str(len(content)).encode() + b"\0" + content).hexdigest()


def _lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


class HubError(Exception):
    """An HTTP error reply of the test server, with the Hub's `X-Error-Code` when it has one."""

    def __init__(self, status: int, message: str, error_code: str | None = None, body: dict | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_code = error_code
        self.body = body or {}


@dataclass(frozen=True)
class FileEntry:
    """One file of a commit snapshot: regular content inline, LFS content by sha256 in the server's store."""

    size: int
    blob_id: str
    content: bytes | None = None
    lfs_sha256: str | None = None
    last_commit: str = ""


@dataclass
class Commit:
    """An immutable snapshot of a repository."""

    oid: str
    parent: str | None
    title: str
    message: str
    date: str
    files: dict[str, FileEntry]


@dataclass
class Repo:
    """A repository of the test server."""

    repo_type: str
    repo_id: str
    private: bool
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)

    def resolve(self, revision: str) -> Commit:
        """Returns the commit a branch, tag or commit id names; raises a `RevisionNotFound` error otherwise."""
        oid = self.branches.get(revision) or self.tags.get(revision)
        if oid is None and revision in self.commits:
            oid = revision
        if oid is None:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return self.commits[oid]


@dataclass
class _Fault:
    status: int
    remaining: int | None  # None: until cleared
    method: str | None
    path_contains: str | None

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and (
            self.path_contains is None or self.path_contains in path
        )


class HubTestServer:
    """An in-memory Hub-protocol server for tests (see the module docstring). Not for production use.

    Args:
        host (`str`, defaults to `"127.0.0.1"`):
            Interface to listen on; keep it on loopback.
        port (`int`, defaults to `0`):
            Port to listen on (`0` picks a free one).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.host = host
        self.port = port
        self._lock = threading.RLock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.reset()

    # ----------------------------------------------------------------------------------------------------- lifecycle
    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> HubTestServer:
        """Starts serving in a daemon thread and returns `self`."""
        handler = type("_BoundHandler", (_Handler,), {"hub": self})
        self._httpd = ThreadingHTTPServer((self.host, self.port), handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="hub-test-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stops serving."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def reset(self) -> None:
        """Drops every repository, LFS object, fault and logged request."""
        with self._lock:
            self.repos: dict[tuple[str, str], Repo] = {}
            self.lfs_objects: dict[str, bytes] = {}
            self.requests: list[tuple[str, str, int]] = []
            self._faults: list[_Fault] = []
            self._counter = 0

    # ----------------------------------------------------------------------------------------------- fault injection
    def fail_next(
        self, n: int = 1, status: int = 500, method: str | None = None, path_contains: str | None = None
    ) -> None:
        """Makes the next `n` requests matching `method` / `path_contains` (all requests when `None`) fail with
        `status`."""
        with self._lock:
            self._faults.append(_Fault(status, n, method, path_contains))

    def fail_until_cleared(self, status: int = 500, method: str | None = None, path_contains: str | None = None):
        """Makes every matching request fail with `status` until `clear_faults()`."""
        with self._lock:
            self._faults.append(_Fault(status, None, method, path_contains))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _take_fault(self, method: str, path: str) -> int | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    if fault.remaining is not None:
                        fault.remaining -= 1
                        if fault.remaining <= 0:
                            self._faults.remove(fault)
                    return fault.status
        return None

    # ---------------------------------------------------------------------------------------------------- inspection
    def get_repo(self, repo_id: str, repo_type: str = "model") -> Repo:
        """Returns the stored repository (for assertions); raises `KeyError` when it does not exist."""
        return self.repos[(repo_type, repo_id)]

    def file_content(self, repo: Repo, entry: FileEntry) -> bytes:
        return entry.content if entry.content is not None else self.lfs_objects[entry.lfs_sha256]

    # ------------------------------------------------------------------------------------------------------- storage
    def _new_oid(self, *parts: str) -> str:
        self._counter += 1
        return hashlib.sha1("\0".join((*parts, str(self._counter))).encode()).hexdigest()

    def create_repo(self, repo_type: str, repo_id: str, private: bool) -> Repo:
        with self._lock:
            if (repo_type, repo_id) in self.repos:
                url = f"{self.endpoint}/{_URL_PREFIX[repo_type]}{repo_id}"
                raise HubError(409, "You already created this repo", body={"url": url})
            repo = Repo(repo_type=repo_type, repo_id=repo_id, private=private)
            oid = self._new_oid(repo_type, repo_id, "initial commit")
            entry = FileEntry(
                size=len(_GITATTRIBUTES), blob_id=_git_blob_id(_GITATTRIBUTES), content=_GITATTRIBUTES, last_commit=oid
            )
            repo.commits[oid] = Commit(oid, None, "initial commit", "", _now(), {".gitattributes": entry})
            repo.branches["main"] = oid
            self.repos[(repo_type, repo_id)] = repo
            return repo

    def commit(self, repo: Repo, branch: str, lines: list[dict]) -> Commit:
        """Applies an NDJSON commit payload to `branch`; raises `HubError` like the Hub does."""
        with self._lock:
            if branch not in repo.branches:
                raise HubError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
            head = repo.commits[repo.branches[branch]]
            header = next((line["value"] for line in lines if line.get("key") == "header"), None)
            if header is None:
                raise HubError(400, "Missing commit header")
            parent = header.get("parentCommit")
            if parent and parent != head.oid:
                raise HubError(412, "A commit has happened since. Please refresh and try again.")
            oid = self._new_oid(repo.repo_id, branch, head.oid, header.get("summary", ""))
            files = dict(head.files)
            for line in lines:
                key, value = line.get("key"), line.get("value", {})
                if key == "header":
                    continue
                path = value.get("path", "")
                if key == "file":
                    if value.get("encoding", "base64") != "base64":
                        raise HubError(400, f"Unsupported encoding for {path}")
                    content = base64.b64decode(value["content"])
                    files[path] = FileEntry(len(content), _git_blob_id(content), content=content, last_commit=oid)
                elif key == "lfsFile":
                    sha256 = value["oid"]
                    if sha256 not in self.lfs_objects:
                        raise HubError(400, f"LFS object {sha256} for {path} was not uploaded")
                    size = len(self.lfs_objects[sha256])
                    blob = _git_blob_id(_lfs_pointer(sha256, size))
                    files[path] = FileEntry(size, blob, lfs_sha256=sha256, last_commit=oid)
                elif key == "deletedFile":
                    if path not in files:
                        raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
                    del files[path]
                elif key == "deletedFolder":
                    prefix = path.rstrip("/") + "/"
                    for existing in [p for p in files if p.startswith(prefix)]:
                        del files[existing]
                else:
                    raise HubError(400, f"Unsupported commit operation {key!r}")
            commit = Commit(oid, head.oid, header.get("summary", ""), header.get("description", ""), _now(), files)
            repo.commits[oid] = commit
            repo.branches[branch] = oid
            return commit


def _tree_entries(
    server: HubTestServer, commit: Commit, prefix: str, recursive: bool, expand: bool
) -> list[dict[str, object]]:
    """Lists files and folders under `prefix` of a snapshot as the Hub's tree API does."""
    base = prefix.strip("/")
    if base and base in commit.files:
        raise HubError(404, f"{base} is a file, not a folder", "EntryNotFound")
    start = base + "/" if base else ""
    entries: dict[str, dict[str, object]] = {}
    for path in sorted(commit.files):
        if not path.startswith(start):
            continue
        rest = path[len(start) :].split("/")
        # Folders on the way to the file.
        depth = len(rest) - 1 if recursive else min(1, len(rest) - 1)
        for i in range(depth):
            folder = start + "/".join(rest[: i + 1])
            entries.setdefault(folder, _folder_entry(commit, folder, expand))
        if recursive or len(rest) == 1:
            entries[path] = _file_entry(server, commit, path, expand)
    if base and not entries:
        raise HubError(404, f"{base} does not exist", "EntryNotFound")
    return list(entries.values())


def _folder_entry(commit: Commit, folder: str, expand: bool) -> dict[str, object]:
    oid = hashlib.sha1((commit.oid + folder).encode()).hexdigest()
    entry: dict[str, object] = {"type": "directory", "path": folder, "oid": oid, "size": 0}
    if expand:
        entry["lastCommit"] = {"id": commit.oid, "title": commit.title, "date": commit.date}
    return entry


def _file_entry(server: HubTestServer, commit: Commit, path: str, expand: bool) -> dict[str, object]:
    file = commit.files[path]
    entry: dict[str, object] = {"type": "file", "path": path, "oid": file.blob_id, "size": file.size}
    if file.lfs_sha256 is not None:
        pointer_size = len(_lfs_pointer(file.lfs_sha256, file.size))
        entry["lfs"] = {"oid": file.lfs_sha256, "size": file.size, "pointerSize": pointer_size}
    if expand:
        last = file.last_commit
        entry["lastCommit"] = {"id": last, "title": "", "date": commit.date}
    return entry


class _Handler(BaseHTTPRequestHandler):
    """Routes one request of the Hub protocol to the in-memory `HubTestServer` bound as `hub`."""

    hub: HubTestServer
    protocol_version = "HTTP/1.1"
    server_version = "HubTestServer/0.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        """Silences per-request logging (it would print URLs to stderr)."""

    # --------------------------------------------------------------------------------------------------- plumbing
    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(
        self, status: int, body: bytes = b"", content_type: str = "application/json", headers: dict | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _json(self, status: int, payload: object, headers: dict | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), headers=headers)

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        self.query = parse_qs(url.query, keep_blank_values=True)
        self.body = self._read_body() if method in ("POST", "PUT", "DELETE") else b""
        status = 200
        try:
            fault = self.hub._take_fault(method, url.path)
            if fault is not None:
                raise HubError(fault, f"Injected fault {fault}")
            self._route(method, [unquote(part) for part in url.path.strip("/").split("/")])
        except HubError as error:
            status = error.status
            headers = {"X-Error-Message": error.message}
            if error.error_code:
                headers["X-Error-Code"] = error.error_code
            self._json(error.status, {"error": error.message, **error.body}, headers=headers)
        except Exception as error:  # noqa: BLE001 - a test server must answer, and the traceback is in the reply
            status = 500
            self._json(500, {"error": f"test server bug: {type(error).__name__}: {error}"})
            raise
        finally:
            with self.hub._lock:
                self.hub.requests.append((method, url.path, status))

    # ------------------------------------------------------------------------------------------------------ auth
    def _user(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        if not auth:
            return None
        token = auth.removeprefix("Bearer ").strip()
        if not token.startswith("hf_"):
            raise HubError(401, "Invalid credentials in Authorization header")
        return TEST_USER

    def _repo(self, repo_type: str, repo_id: str, write: bool = False) -> Repo:
        user = self._user()
        repo = self.hub.repos.get((repo_type, repo_id))
        if repo is None or (repo.private and user is None):
            raise HubError(401 if user is None else 404, "Repository not found", "RepoNotFound")
        if write and user is None:
            raise HubError(401, "You must be authenticated to write")
        return repo

    # ---------------------------------------------------------------------------------------------------- routing
    def _route(self, method: str, parts: list[str]) -> None:
        if parts[:2] == ["api", "whoami-v2"]:
            if self._user() is None:
                raise HubError(401, "Invalid credentials in Authorization header")
            return self._json(200, {"type": "user", "name": TEST_USER, "orgs": [], "auth": {"type": "access_token"}})
        if parts[:2] == ["api", "validate-yaml"]:
            return self._json(200, {"errors": [], "warnings": []})
        if parts[:3] == ["api", "repos", "create"] and method == "POST":
            return self._create_repo()
        if parts[:3] == ["api", "repos", "delete"] and method == "DELETE":
            payload = json.loads(self.body or b"{}")
            repo_id = f"{payload.get('organization') or TEST_USER}/{payload['name']}"
            self._repo(payload.get("type") or "model", repo_id, write=True)
            del self.hub.repos[(payload.get("type") or "model", repo_id)]
            return self._json(200, {})
        if parts[0] == "api" and len(parts) >= 4 and parts[1] in _REPO_TYPES:
            return self._api_repo(method, _REPO_TYPES[parts[1]], f"{parts[2]}/{parts[3]}", parts[4:])
        if parts[0] == "lfs-upload" and method == "PUT":
            return self._lfs_put(parts[1])
        repo_type = "model"
        if parts[0] in ("datasets", "spaces"):
            repo_type, parts = _REPO_TYPES[parts[0]], parts[1:]
        if len(parts) >= 2 and parts[1].endswith(".git") and parts[2:] == ["info", "lfs", "objects", "batch"]:
            return self._lfs_batch(repo_type, f"{parts[0]}/{parts[1][: -len('.git')]}")
        if len(parts) >= 5 and parts[2] == "resolve":
            return self._resolve(method, repo_type, f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:]))
        raise HubError(404, f"No route for {method} /{'/'.join(parts)}")

    def _create_repo(self) -> None:
        if self._user() is None:
            raise HubError(401, "You must be authenticated to create a repo")
        payload = json.loads(self.body)
        repo_type = payload.get("type") or "model"
        repo_id = f"{payload.get('organization') or TEST_USER}/{payload['name']}"
        private = payload.get("visibility", "public") == "private" or bool(payload.get("private"))
        self.hub.create_repo(repo_type, repo_id, private)
        self._json(200, {"url": f"{self.hub.endpoint}/{_URL_PREFIX[repo_type]}{repo_id}", "name": repo_id})

    def _api_repo(self, method: str, repo_type: str, repo_id: str, rest: list[str]) -> None:
        action = rest[0] if rest else ""
        if method == "GET" and action in ("", "revision"):
            repo = self._repo(repo_type, repo_id)
            commit = repo.resolve(rest[1] if action == "revision" else "main")
            return self._json(200, self._repo_info(repo, commit))
        if method == "GET" and action == "tree":
            repo = self._repo(repo_type, repo_id)
            commit = repo.resolve(rest[1])
            recursive = self.query.get("recursive", ["false"])[0].lower() in ("1", "true")
            expand = self.query.get("expand", ["false"])[0].lower() in ("1", "true")
            return self._json(200, _tree_entries(self.hub, commit, "/".join(rest[2:]), recursive, expand))
        if method == "POST" and action == "paths-info":
            repo = self._repo(repo_type, repo_id)
            commit = repo.resolve(rest[1])
            form = parse_qs(self.body.decode(), keep_blank_values=True)
            expand = form.get("expand", ["false"])[0].lower() in ("1", "true")
            result = []
            for path in form.get("paths", []):
                path = path.strip("/")
                if path in commit.files:
                    result.append(_file_entry(self.hub, commit, path, expand))
                elif any(p.startswith(path + "/") for p in commit.files) or path == "":
                    result.append(_folder_entry(commit, path, expand))
            return self._json(200, result)
        if method == "GET" and action == "refs":
            repo = self._repo(repo_type, repo_id)
            refs = {
                "branches": [
                    {"name": n, "ref": f"refs/heads/{n}", "targetCommit": o} for n, o in repo.branches.items()
                ],
                "tags": [{"name": n, "ref": f"refs/tags/{n}", "targetCommit": o} for n, o in repo.tags.items()],
                "converts": [],
            }
            if self.query.get("include_prs"):
                refs["pullRequests"] = []
            return self._json(200, refs)
        if method == "GET" and action == "commits":
            repo = self._repo(repo_type, repo_id)
            commit: Commit | None = repo.resolve(rest[1])
            history = []
            while commit is not None:
                history.append(
                    {
                        "id": commit.oid,
                        "title": commit.title,
                        "message": commit.message,
                        "authors": [{"user": TEST_USER, "avatar": None}],
                        "date": commit.date,
                    }
                )
                commit = repo.commits.get(commit.parent) if commit.parent else None
            return self._json(200, history)
        if method == "POST" and action == "preupload":
            repo = self._repo(repo_type, repo_id, write=True)
            commit = repo.resolve(rest[1])
            files = []
            for file in json.loads(self.body)["files"]:
                lfs = file["path"].endswith(_LFS_SUFFIXES) or file["size"] >= _LFS_MIN_SIZE
                existing = commit.files.get(file["path"])
                oid = None
                if existing is not None:
                    oid = existing.lfs_sha256 if existing.lfs_sha256 is not None else existing.blob_id
                files.append(
                    {
                        "path": file["path"],
                        "uploadMode": "lfs" if lfs else "regular",
                        "shouldIgnore": False,
                        "oid": oid,
                    }
                )
            return self._json(200, {"files": files, "commitOid": commit.oid})
        if method == "POST" and action == "commit":
            repo = self._repo(repo_type, repo_id, write=True)
            if self.query.get("create_pr", ["0"])[0] in ("1", "true"):
                raise HubError(400, "Pull requests are not supported by the test server")
            lines = [json.loads(line) for line in self.body.decode().splitlines() if line.strip()]
            commit = self.hub.commit(repo, rest[1], lines)
            url = f"{self.hub.endpoint}/{_URL_PREFIX[repo_type]}{repo_id}/commit/{commit.oid}"
            return self._json(200, {"success": True, "commitOid": commit.oid, "commitUrl": url})
        if action == "branch" and method in ("POST", "DELETE"):
            repo = self._repo(repo_type, repo_id, write=True)
            branch = rest[1]
            with self.hub._lock:
                if method == "DELETE":
                    if branch not in repo.branches:
                        raise HubError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
                    if branch == "main":
                        raise HubError(403, "Cannot delete main")
                    del repo.branches[branch]
                    return self._json(200, {})
                if branch in repo.branches:
                    raise HubError(409, f"Reference already exists: refs/heads/{branch}")
                payload = json.loads(self.body or b"{}")
                repo.branches[branch] = repo.resolve(payload.get("startingPoint") or "main").oid
            return self._json(200, {})
        if action == "tag" and method in ("POST", "DELETE"):
            repo = self._repo(repo_type, repo_id, write=True)
            with self.hub._lock:
                if method == "DELETE":
                    if rest[1] not in repo.tags:
                        raise HubError(404, f"Invalid rev id: {rest[1]}", "RevisionNotFound")
                    del repo.tags[rest[1]]
                    return self._json(200, {})
                tag = json.loads(self.body)["tag"]
                if tag in repo.tags:
                    raise HubError(409, f"Reference already exists: refs/tags/{tag}")
                repo.tags[tag] = repo.resolve(rest[1]).oid
            return self._json(200, {})
        if method == "PUT" and action == "settings":
            repo = self._repo(repo_type, repo_id, write=True)
            payload = json.loads(self.body or b"{}")
            if "private" in payload:
                repo.private = bool(payload["private"])
            return self._json(200, {})
        raise HubError(404, f"No API route for {method} {action!r}")

    def _repo_info(self, repo: Repo, commit: Commit) -> dict[str, object]:
        blobs = self.query.get("blobs", ["false"])[0].lower() in ("1", "true")
        siblings = []
        for path, file in sorted(commit.files.items()):
            sibling: dict[str, object] = {"rfilename": path}
            if blobs:
                sibling.update(size=file.size, blobId=file.blob_id)
                if file.lfs_sha256 is not None:
                    pointer_size = len(_lfs_pointer(file.lfs_sha256, file.size))
                    sibling["lfs"] = {"sha256": file.lfs_sha256, "size": file.size, "pointerSize": pointer_size}
            siblings.append(sibling)
        return {
            "_id": hashlib.sha1(repo.repo_id.encode()).hexdigest()[:24],
            "id": repo.repo_id,
            "author": repo.repo_id.split("/")[0],
            "sha": commit.oid,
            "lastModified": commit.date,
            "private": repo.private,
            "gated": False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": siblings,
        }

    # ------------------------------------------------------------------------------------------------------ files
    def _resolve(self, method: str, repo_type: str, repo_id: str, revision: str, path: str) -> None:
        if method not in ("GET", "HEAD"):
            raise HubError(405, "Method not allowed")
        repo = self._repo(repo_type, repo_id)
        commit = repo.resolve(revision)
        file = commit.files.get(path)
        if file is None:
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound")
        content = self.hub.file_content(repo, file)
        etag = file.lfs_sha256 or file.blob_id
        headers = {"X-Repo-Commit": commit.oid, "ETag": f'"{etag}"', "Accept-Ranges": "bytes"}
        if file.lfs_sha256 is not None:
            headers.update({"X-Linked-Etag": f'"{etag}"', "X-Linked-Size": str(file.size)})
        range_header = self.headers.get("Range")
        if range_header and range_header.startswith("bytes="):
            start_text, _, end_text = range_header[len("bytes=") :].split(",")[0].partition("-")
            if start_text:
                start = int(start_text)
                end = min(int(end_text), len(content) - 1) if end_text else len(content) - 1
            else:  # suffix range: the last N bytes
                start, end = max(0, len(content) - int(end_text)), len(content) - 1
            if start >= len(content) and len(content) > 0:
                raise HubError(416, "Range not satisfiable")
            headers["Content-Range"] = f"bytes {start}-{end}/{len(content)}"
            return self._send(206, content[start : end + 1], "application/octet-stream", headers)
        self._send(200, content, "application/octet-stream", headers)

    def _lfs_batch(self, repo_type: str, repo_id: str) -> None:
        self._repo(repo_type, repo_id, write=True)
        payload = json.loads(self.body)
        objects = []
        for obj in payload.get("objects", []):
            entry: dict[str, object] = {"oid": obj["oid"], "size": obj["size"]}
            if obj["oid"] not in self.hub.lfs_objects:
                href = f"{self.hub.endpoint}/lfs-upload/{quote(obj['oid'])}"
                entry["actions"] = {"upload": {"href": href, "header": {}}}
            objects.append(entry)
        self._send(200, json.dumps({"transfer": "basic", "objects": objects}).encode(), "application/vnd.git-lfs+json")

    def _lfs_put(self, oid: str) -> None:
        if hashlib.sha256(self.body).hexdigest() != oid:
            raise HubError(400, "LFS object does not match its oid")
        with self.hub._lock:
            self.hub.lfs_objects[oid] = self.body
        self._send(200)


_SERVER: HubTestServer | None = None


def get_test_server() -> HubTestServer:
    """Returns the session's test server, started on `HF_HUB_TEST_PORT` (set by `tests/conftest.py`) on first use."""
    global _SERVER
    if _SERVER is None:
        port = int(os.environ.get("HF_HUB_TEST_PORT", "0"))
        _SERVER = HubTestServer(port=port).start()
        expected = os.environ.get("HF_ENDPOINT")
        if expected and expected.rstrip("/") != _SERVER.endpoint:
            raise RuntimeError(f"HF_ENDPOINT={expected} does not point at the test server {_SERVER.endpoint}")
    return _SERVER


@pytest.fixture
def hub_server() -> Iterator[HubTestServer]:
    """The Hub-protocol test server on `HF_ENDPOINT`, emptied before each test, with no faults left after it."""
    server = get_test_server()
    server.reset()
    yield server
    server.clear_faults()
