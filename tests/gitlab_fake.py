"""A small, strict fake of the GitLab REST API (v4) for tests: a real HTTP server on 127.0.0.1.

Only the endpoints modelci uses are implemented, with the paths, methods, auth headers, pagination
and response shapes of GitLab's REST API documentation:

  GET  /projects/:id
  GET  /projects/:id/packages                                   (packages API, filters + pagination)
  DELETE /projects/:id/packages/:package_id                     (clean-up in test_real_gitlab)
  GET  /projects/:id/packages/:package_id/package_files
  PUT  /projects/:id/packages/generic/:name/:version/:file_name  (generic packages: upload)
  GET  /projects/:id/packages/generic/:name/:version/:file_name  (generic packages: download)
  GET  /projects/:id/merge_requests/:iid
  GET  /projects/:id/merge_requests/:iid/notes                  (notes API, sort/order_by, pagination)
  POST /projects/:id/merge_requests/:iid/notes
  GET  /projects/:id/merge_requests/:iid/notes/:note_id
  PUT  /projects/:id/merge_requests/:iid/notes/:note_id
  GET  /projects/:id/repository/commits/:sha/discussions        (discussions API, pagination)
  POST /projects/:id/repository/commits/:sha/discussions
  PUT  /projects/:id/repository/commits/:sha/discussions/:discussion_id/notes/:note_id
  POST /projects/:id/uploads                                    (markdown uploads, multipart `file`)

Strictness: 401 for a missing or unknown token (PRIVATE-TOKEN, JOB-TOKEN or Authorization: Bearer);
a job token only works on the package endpoints (as on GitLab); 403 insufficient_scope when the
token's scopes do not cover the endpoint; 403 for a role too low to write packages; 404 for an
unknown route, project, merge request, commit, package or note (and for a project the token's user
cannot see); 405 for a known route with the wrong method.

Test controls: `fail_next(count, status=503, retry_after=None, path_contains=None, mode="status")`
makes the next matching requests fail (mode "reset" drops the connection, "delay" sleeps `delay`
seconds first); `requests` is the request log; `dump()` is the whole state (also written as JSON to
`state_file` after every request). Other processes can use the control routes (no auth):
GET /__fake__/state, POST /__fake__/fail {count, status, retry_after, path_contains, mode, delay},
POST /__fake__/reset-log.

Run standalone for pipeline tests:
  python tests/gitlab_fake.py --port 0 --token glpat-xyz --job-token jobtok --project 42:group/project \
      --mr 7 --commit <sha> --state /tmp/fake-state.json
It prints one JSON line {"url": ..., "api_url": ..., "port": ...} on stdout when ready.
"""
from __future__ import annotations

import argparse
import email.parser
import email.policy
import hashlib
import itertools
import json
import os
import re
import secrets
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

API = "/api/v4"
READ = {"api", "read_api"}
WRITE = {"api"}
PKG_READ = {"api", "read_api", "read_package_registry"}
PKG_WRITE = {"api", "write_package_registry"}
ROLES = {"guest": 10, "reporter": 20, "developer": 30, "maintainer": 40, "owner": 50}
NAME_RE = re.compile(r"^[A-Za-z0-9._-]+$")
VERSION_RE = re.compile(r"^(\.?[\w+-]+\.?)+$")
FILE_RE = re.compile(r"^[A-Za-z0-9._~-]+$")


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class HTTPError(Exception):
    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None):
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers or {}


def _not_found(what: str) -> HTTPError:
    return HTTPError(404, {"message": f"404 {what} Not Found"})


class Request:
    def __init__(self, handler: BaseHTTPRequestHandler, method: str):
        self.handler = handler
        self.method = method
        split = urlsplit(handler.path)
        self.raw_path = split.path
        self.path = unquote(split.path)
        self.query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        self.headers = handler.headers
        length = int(handler.headers.get("Content-Length") or 0)
        self.body = handler.rfile.read(length) if length else b""

    def json(self) -> dict[str, Any]:
        ctype = self.headers.get("Content-Type", "")
        if not self.body:
            return {}
        if "application/json" in ctype:
            try:
                data = json.loads(self.body)
            except ValueError:
                raise HTTPError(400, {"error": "body is not valid JSON"}) from None
            return data if isinstance(data, dict) else {}
        if "application/x-www-form-urlencoded" in ctype:
            return {k: v[-1] for k, v in parse_qs(self.body.decode()).items()}
        return {}

    def multipart(self) -> dict[str, tuple[str | None, bytes]]:
        ctype = self.headers.get("Content-Type", "")
        if not ctype.startswith("multipart/form-data"):
            raise HTTPError(400, {"error": "file is missing"})
        msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {ctype}\r\n\r\n".encode() + self.body)
        parts: dict[str, tuple[str | None, bytes]] = {}
        for part in msg.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if name:
                parts[name] = (part.get_filename(), part.get_payload(decode=True) or b"")
        return parts


class FakeGitLab:
    """State + routing. Thread-safe (one lock around each request)."""

    def __init__(self, *, tokens: dict[str, dict[str, Any]] | None = None,
                 projects: dict[int, dict[str, Any]] | None = None, state_file: str | None = None):
        self.lock = threading.RLock()
        self.tokens = tokens if tokens is not None else {
            "glpat-test-api-token": {"kind": "private", "scopes": ["api"], "role": "maintainer"},
        }
        self.projects: dict[int, dict[str, Any]] = {}
        for pid, spec in (projects or {42: {"path": "group/project", "mrs": [7], "commits": []}}).items():
            self.add_project(pid, spec.get("path", f"group/p{pid}"), mrs=spec.get("mrs", []),
                             commits=spec.get("commits", []))
        self.state_file = state_file
        self._ids = itertools.count(1000)
        self.packages: list[dict[str, Any]] = []
        self.notes: dict[str, list[dict[str, Any]]] = {}
        self.discussions: dict[str, list[dict[str, Any]]] = {}
        self.uploads: list[dict[str, Any]] = []
        self.requests: list[dict[str, Any]] = []
        self.failures: list[dict[str, Any]] = []
        self.server: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None
        self.routes: list[tuple[re.Pattern[str], dict[str, Callable[..., Any]], str]] = []
        self._route(r"/projects/(?P<pid>[^/]+)", {"GET": self.get_project}, "project")
        self._route(r"/projects/(?P<pid>[^/]+)/packages", {"GET": self.list_packages}, "packages")
        self._route(r"/projects/(?P<pid>[^/]+)/packages/(?P<pkg>\d+)", {"DELETE": self.delete_package},
                    "package")
        self._route(r"/projects/(?P<pid>[^/]+)/packages/(?P<pkg>\d+)/package_files",
                    {"GET": self.list_package_files}, "package_files")
        self._route(r"/projects/(?P<pid>[^/]+)/packages/generic/(?P<name>[^/]+)/(?P<version>[^/]+)/"
                    r"(?P<file>[^/]+)", {"PUT": self.put_generic, "GET": self.get_generic}, "generic")
        self._route(r"/projects/(?P<pid>[^/]+)/merge_requests/(?P<iid>\d+)", {"GET": self.get_mr}, "mr")
        self._route(r"/projects/(?P<pid>[^/]+)/merge_requests/(?P<iid>\d+)/notes",
                    {"GET": self.list_mr_notes, "POST": self.create_mr_note}, "mr_notes")
        self._route(r"/projects/(?P<pid>[^/]+)/merge_requests/(?P<iid>\d+)/notes/(?P<nid>\d+)",
                    {"GET": self.get_mr_note, "PUT": self.update_mr_note}, "mr_note")
        self._route(r"/projects/(?P<pid>[^/]+)/repository/commits/(?P<sha>[0-9a-fA-F]{7,64})/discussions",
                    {"GET": self.list_commit_discussions, "POST": self.create_commit_discussion},
                    "commit_discussions")
        self._route(r"/projects/(?P<pid>[^/]+)/repository/commits/(?P<sha>[0-9a-fA-F]{7,64})/discussions/"
                    r"(?P<did>[0-9a-f]+)/notes/(?P<nid>\d+)", {"PUT": self.update_commit_note},
                    "commit_discussion_note")
        self._route(r"/projects/(?P<pid>[^/]+)/uploads", {"POST": self.create_upload}, "uploads")

    # ---- set-up helpers ---------------------------------------------------------------------------
    def add_project(self, pid: int, path: str, *, mrs: list[int] = (), commits: list[str] = ()) -> None:
        self.projects[int(pid)] = {"id": int(pid), "path_with_namespace": path,
                                   "mrs": {int(i) for i in mrs}, "commits": set(commits)}

    def add_token(self, token: str, *, kind: str = "private", scopes: list[str] = ("api",),
                  role: str = "maintainer", projects: list[int] | None = None) -> None:
        self.tokens[token] = {"kind": kind, "scopes": list(scopes), "role": role, "projects": projects}

    def fail_next(self, count: int = 1, status: int = 503, retry_after: int | None = None,
                  path_contains: str | None = None, mode: str = "status", delay: float = 0.0) -> None:
        with self.lock:
            for _ in range(count):
                self.failures.append({"status": status, "retry_after": retry_after,
                                      "path_contains": path_contains, "mode": mode, "delay": delay})

    # ---- server -----------------------------------------------------------------------------------
    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def setup(self) -> None:
                super().setup()
                # headers and body go out in separate writes: without this, Nagle + delayed ACK add 40 ms
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def _any(self) -> None:
                fake.handle(self, self.command)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _any

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # dropped connections (mode "reset") are expected

        self.server = Server((host, port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        return self.url

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def api_url(self) -> str:
        return self.url + API

    # ---- request handling -------------------------------------------------------------------------
    def _route(self, pattern: str, methods: dict[str, Callable[..., Any]], name: str) -> None:
        self.routes.append((re.compile(f"^{API}{pattern}$"), methods, name))

    def handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        req = Request(handler, method)
        entry: dict[str, Any] = {"method": method, "path": req.path, "query": req.query, "status": None,
                                 "auth": None, "route": None, "time": time.time()}
        status, headers, body = 500, {}, b""
        try:
            if req.path.startswith("/__fake__/"):
                status, headers, body = self._control(req)
                self._send(handler, method, status, headers, body)
                return
            with self.lock:
                failure = self._take_failure(req.path)
            if failure:
                entry["injected"] = failure["mode"]
                if failure["mode"] == "reset":
                    entry["status"] = "reset"
                    self._log(entry)
                    handler.close_connection = True
                    try:
                        handler.connection.shutdown(2)
                    except OSError:
                        pass
                    return
                if failure["mode"] == "delay":
                    time.sleep(failure["delay"])
                else:
                    st = failure["status"]
                    hdrs = {"Retry-After": str(failure["retry_after"])} if failure["retry_after"] is not None \
                        else {}
                    reason = {429: "Retry later", 500: "500 Internal Server Error", 502: "502 Bad Gateway",
                              503: "503 Service Unavailable", 504: "504 Gateway Timeout"}.get(st, str(st))
                    raise HTTPError(st, {"message": reason}, hdrs)
            with self.lock:
                status, headers, payload = self._dispatch(req, entry)
            if isinstance(payload, bytes):
                body = payload
                headers.setdefault("Content-Type", "application/octet-stream")
            else:
                body = json.dumps(payload).encode()
                headers.setdefault("Content-Type", "application/json")
        except HTTPError as err:
            status, headers = err.status, dict(err.headers)
            headers["Content-Type"] = "application/json"
            body = json.dumps(err.body).encode()
        except Exception as exc:  # noqa: BLE001 - a bug in the fake must be loud (500 with detail)
            status, headers = 500, {"Content-Type": "application/json"}
            body = json.dumps({"message": f"fake error: {exc!r}"}).encode()
        entry["status"] = status
        self._log(entry)
        self._send(handler, method, status, headers, body)

    def _send(self, handler: BaseHTTPRequestHandler, method: str, status: int, headers: dict[str, str],
              body: bytes) -> None:
        handler.send_response(status)
        for k, v in headers.items():
            handler.send_header(k, v)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if method != "HEAD":
            handler.wfile.write(body)

    def _log(self, entry: dict[str, Any]) -> None:
        with self.lock:
            self.requests.append(entry)
            if self.state_file:
                self._write_state()

    def _take_failure(self, path: str) -> dict[str, Any] | None:
        for i, f in enumerate(self.failures):
            if f["path_contains"] is None or f["path_contains"] in path:
                return self.failures.pop(i)
        return None

    def _control(self, req: Request) -> tuple[int, dict[str, str], bytes]:
        if req.path == "/__fake__/state" and req.method == "GET":
            return 200, {"Content-Type": "application/json"}, json.dumps(self.dump()).encode()
        if req.path == "/__fake__/fail" and req.method == "POST":
            spec = req.json()
            self.fail_next(int(spec.get("count", 1)), int(spec.get("status", 503)), spec.get("retry_after"),
                           spec.get("path_contains"), spec.get("mode", "status"), float(spec.get("delay", 0)))
            return 200, {"Content-Type": "application/json"}, b'{"ok": true}'
        if req.path == "/__fake__/reset-log" and req.method == "POST":
            with self.lock:
                self.requests.clear()
            return 200, {"Content-Type": "application/json"}, b'{"ok": true}'
        return 404, {"Content-Type": "application/json"}, b'{"message": "404 Not Found"}'

    def _dispatch(self, req: Request, entry: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
        for pattern, methods, name in self.routes:
            match = pattern.match(req.raw_path)  # raw: a project path arrives as group%2Fproject
            if not match:
                continue
            entry["route"] = name
            if req.method not in methods:
                raise HTTPError(405, {"message": "405 Method Not Allowed"},
                                {"Allow": ", ".join(sorted(methods))})
            handler = methods[req.method]
            return handler(req, entry, **{k: unquote(v) for k, v in match.groupdict().items()})
        raise HTTPError(404, {"error": "404 Not Found"})

    # ---- auth -------------------------------------------------------------------------------------
    def _auth(self, req: Request, entry: dict[str, Any], scopes: set[str], *, job_ok: bool = False,
              min_role: str = "guest") -> dict[str, Any]:
        h = req.headers
        if h.get("PRIVATE-TOKEN"):
            kind, token = "private", h["PRIVATE-TOKEN"]
        elif h.get("JOB-TOKEN"):
            kind, token = "job", h["JOB-TOKEN"]
        elif (h.get("Authorization") or "").startswith("Bearer "):
            kind, token = "bearer", h["Authorization"][7:]
        else:
            raise HTTPError(401, {"message": "401 Unauthorized"})
        entry["auth"] = kind
        info = self.tokens.get(token)
        if not info:
            raise HTTPError(401, {"message": "401 Unauthorized"})
        if (info["kind"] == "job") != (kind == "job"):
            raise HTTPError(401, {"message": "401 Unauthorized"})
        if kind == "job":
            if not job_ok:  # GitLab ignores CI_JOB_TOKEN on endpoints that do not support it
                raise HTTPError(401, {"message": "401 Unauthorized"})
        elif not scopes & set(info["scopes"]):
            needed = "api" if "api" in scopes else min(scopes)
            raise HTTPError(403, {"error": "insufficient_scope",
                                  "error_description": "The request requires higher privileges than "
                                                       "provided by the access token.",
                                  "scope": needed},
                            {"WWW-Authenticate": f'Bearer realm="", error="insufficient_scope", '
                                                 f'scope="{needed}"'})
        info = dict(info)
        info["role_ok"] = ROLES.get(info.get("role", "maintainer"), 0) >= ROLES[min_role]
        return info

    def _project(self, pid: str, auth: dict[str, Any]) -> dict[str, Any]:
        project = None
        if pid.isdigit():
            project = self.projects.get(int(pid))
        else:
            project = next((p for p in self.projects.values() if p["path_with_namespace"] == pid), None)
        allowed = auth.get("projects")
        if project is None or (allowed is not None and project["id"] not in allowed):
            raise _not_found("Project")
        if not auth["role_ok"]:
            raise HTTPError(403, {"message": "403 Forbidden"})
        return project

    # ---- pagination -------------------------------------------------------------------------------
    def _paginate(self, req: Request, items: list[Any]) -> tuple[int, dict[str, str], list[Any]]:
        try:
            page = max(1, int(req.query.get("page", 1)))
            per_page = min(100, max(1, int(req.query.get("per_page", 20))))
        except ValueError:
            raise HTTPError(400, {"error": "page is invalid"}) from None
        total = len(items)
        pages = max(1, -(-total // per_page))
        chunk = items[(page - 1) * per_page: page * per_page]
        host = req.headers.get("Host", "127.0.0.1")
        base = f"http://{host}{req.raw_path}"

        def link(p: int) -> str:
            q = dict(req.query, page=str(p), per_page=str(per_page))
            return f"{base}?{urlencode(q)}"

        links = []
        if page < pages:
            links.append(f'<{link(page + 1)}>; rel="next"')
        if page > 1:
            links.append(f'<{link(page - 1)}>; rel="prev"')
        links.append(f'<{link(1)}>; rel="first"')
        links.append(f'<{link(pages)}>; rel="last"')
        headers = {
            "X-Page": str(page), "X-Per-Page": str(per_page), "X-Total": str(total),
            "X-Total-Pages": str(pages), "X-Next-Page": str(page + 1) if page < pages else "",
            "X-Prev-Page": str(page - 1) if page > 1 else "", "Link": ", ".join(links),
        }
        return 200, headers, chunk

    # ---- shapes -----------------------------------------------------------------------------------
    def _author(self) -> dict[str, Any]:
        return {"id": 1, "username": "modelci-bot", "name": "modelci bot", "state": "active",
                "avatar_url": None, "web_url": self.url + "/modelci-bot"}

    def _note(self, project: dict[str, Any], body: str, noteable_type: str, noteable_id: Any,
              noteable_iid: Any) -> dict[str, Any]:
        now = _now()
        return {"id": next(self._ids), "type": None if noteable_type == "MergeRequest" else "DiscussionNote",
                "body": body, "attachment": None, "author": self._author(), "created_at": now,
                "updated_at": now, "system": False, "noteable_id": noteable_id,
                "noteable_type": noteable_type, "project_id": project["id"], "resolvable": False,
                "confidential": False, "internal": False, "noteable_iid": noteable_iid,
                "commands_changes": {}}

    # ---- handlers ---------------------------------------------------------------------------------
    def get_project(self, req: Request, entry: dict[str, Any], pid: str) -> Any:
        project = self._project(pid, self._auth(req, entry, READ))
        path = project["path_with_namespace"]
        return 200, {}, {"id": project["id"], "name": path.rsplit("/", 1)[-1],
                         "path": path.rsplit("/", 1)[-1], "path_with_namespace": path,
                         "name_with_namespace": path.replace("/", " / "), "default_branch": "main",
                         "web_url": f"{self.url}/{path}", "visibility": "private"}

    def _package_json(self, pkg: dict[str, Any], project: dict[str, Any]) -> dict[str, Any]:
        return {"id": pkg["id"], "name": pkg["name"], "version": pkg["version"], "package_type": "generic",
                "status": "default", "created_at": pkg["created_at"], "last_downloaded_at": None,
                "tags": [], "pipeline": None, "pipelines": [],
                "_links": {"web_path": f"/{project['path_with_namespace']}/-/packages/{pkg['id']}",
                           "delete_api_path": f"{self.api_url}/projects/{project['id']}/packages/{pkg['id']}"}}

    def list_packages(self, req: Request, entry: dict[str, Any], pid: str) -> Any:
        project = self._project(pid, self._auth(req, entry, READ, job_ok=True))
        items = [p for p in self.packages if p["project_id"] == project["id"]]
        q = req.query
        if q.get("package_type") and q["package_type"] != "generic":
            items = []
        if q.get("package_name"):
            items = [p for p in items if q["package_name"].lower() in p["name"].lower()]  # fuzzy, as GitLab
        if q.get("package_version"):
            items = [p for p in items if p["version"] == q["package_version"]]
        order = q.get("order_by", "created_at")
        if order not in ("created_at", "name", "version", "type"):
            raise HTTPError(400, {"error": "order_by does not have a valid value"})
        key = {"created_at": lambda p: p["seq"], "name": lambda p: p["name"],
               "version": lambda p: p["version"], "type": lambda p: "generic"}[order]
        items = sorted(items, key=key, reverse=q.get("sort", "asc") == "desc")
        status, headers, chunk = self._paginate(req, items)
        return status, headers, [self._package_json(p, project) for p in chunk]

    def list_package_files(self, req: Request, entry: dict[str, Any], pid: str, pkg: str) -> Any:
        project = self._project(pid, self._auth(req, entry, READ, job_ok=True))
        found = next((p for p in self.packages if p["project_id"] == project["id"] and p["id"] == int(pkg)),
                     None)
        if not found:
            raise _not_found("Package")
        files = [{"id": f["id"], "package_id": found["id"], "created_at": f["created_at"],
                  "file_name": f["file_name"], "size": len(f["data"]), "file_md5": None, "file_sha1": None,
                  "file_sha256": f["sha256"], "pipelines": []} for f in found["files"]]
        return self._paginate(req, files)

    def delete_package(self, req: Request, entry: dict[str, Any], pid: str, pkg: str) -> Any:
        auth = self._auth(req, entry, WRITE, job_ok=True)
        project = self._project(pid, auth)
        found = next((p for p in self.packages if p["project_id"] == project["id"] and p["id"] == int(pkg)),
                     None)
        if not found:
            raise _not_found("Package")
        if ROLES.get(auth.get("role", "maintainer"), 0) < ROLES["maintainer"]:
            raise HTTPError(403, {"message": "403 Forbidden"})
        self.packages.remove(found)
        return 204, {}, b""

    def put_generic(self, req: Request, entry: dict[str, Any], pid: str, name: str, version: str,
                    file: str) -> Any:
        auth = self._auth(req, entry, PKG_WRITE, job_ok=True)
        if ROLES.get(auth.get("role", "maintainer"), 0) < ROLES["developer"]:
            self._project(pid, auth)
            raise HTTPError(403, {"message": "403 Forbidden"})
        project = self._project(pid, auth)
        if not NAME_RE.match(name):
            raise HTTPError(400, {"error": "package_name is invalid"})
        if not VERSION_RE.match(version):
            raise HTTPError(400, {"error": "package_version is invalid"})
        if not FILE_RE.match(file) or file[0] in "~@":
            raise HTTPError(400, {"error": "file_name is invalid"})
        pkg = next((p for p in self.packages if p["project_id"] == project["id"] and p["name"] == name
                    and p["version"] == version), None)
        if pkg is None:
            pkg = {"id": next(self._ids), "seq": len(self.packages), "project_id": project["id"],
                   "name": name, "version": version, "created_at": _now(), "files": []}
            self.packages.append(pkg)
        record = {"id": next(self._ids), "file_name": file, "data": req.body,
                  "sha256": hashlib.sha256(req.body).hexdigest(), "created_at": _now()}
        pkg["files"].append(record)  # duplicates allowed (GitLab's default); downloads get the newest
        entry["bytes"] = len(req.body)
        if req.query.get("select") == "package_file":
            return 200, {}, {"id": record["id"], "package_id": pkg["id"], "file_name": file,
                             "size": len(req.body), "file_sha256": record["sha256"],
                             "created_at": record["created_at"]}
        return 201, {}, {"message": "201 Created"}

    def get_generic(self, req: Request, entry: dict[str, Any], pid: str, name: str, version: str,
                    file: str) -> Any:
        project = self._project(pid, self._auth(req, entry, PKG_READ, job_ok=True))
        pkg = next((p for p in self.packages if p["project_id"] == project["id"] and p["name"] == name
                    and p["version"] == version), None)
        files = [f for f in (pkg or {}).get("files", []) if f["file_name"] == file]
        if not files:
            raise _not_found("Package")
        return 200, {"Content-Disposition": f'attachment; filename="{file}"'}, files[-1]["data"]

    def _mr(self, project: dict[str, Any], iid: str) -> int:
        if int(iid) not in project["mrs"]:
            raise _not_found("Merge Request")
        return int(iid)

    def get_mr(self, req: Request, entry: dict[str, Any], pid: str, iid: str) -> Any:
        project = self._project(pid, self._auth(req, entry, READ))
        i = self._mr(project, iid)
        return 200, {}, {"id": project["id"] * 1000 + i, "iid": i, "project_id": project["id"],
                         "title": f"MR !{i}", "state": "opened", "web_url":
                         f"{self.url}/{project['path_with_namespace']}/-/merge_requests/{i}"}

    def list_mr_notes(self, req: Request, entry: dict[str, Any], pid: str, iid: str) -> Any:
        project = self._project(pid, self._auth(req, entry, READ))
        i = self._mr(project, iid)
        notes = list(self.notes.get(f"{project['id']}!{i}", []))
        order = req.query.get("order_by", "created_at")
        if order not in ("created_at", "updated_at"):
            raise HTTPError(400, {"error": "order_by does not have a valid value"})
        notes.sort(key=lambda n: (n[order], n["id"]), reverse=req.query.get("sort", "desc") == "desc")
        return self._paginate(req, notes)

    def create_mr_note(self, req: Request, entry: dict[str, Any], pid: str, iid: str) -> Any:
        project = self._project(pid, self._auth(req, entry, WRITE))
        i = self._mr(project, iid)
        body = req.json().get("body")
        if not body:
            raise HTTPError(400, {"error": "body is missing"})
        note = self._note(project, body, "MergeRequest", project["id"] * 1000 + i, i)
        self.notes.setdefault(f"{project['id']}!{i}", []).append(note)
        return 201, {}, note

    def _find_mr_note(self, project: dict[str, Any], iid: str, nid: str) -> dict[str, Any]:
        i = self._mr(project, iid)
        note = next((n for n in self.notes.get(f"{project['id']}!{i}", []) if n["id"] == int(nid)), None)
        if not note:
            raise _not_found("Note")
        return note

    def get_mr_note(self, req: Request, entry: dict[str, Any], pid: str, iid: str, nid: str) -> Any:
        project = self._project(pid, self._auth(req, entry, READ))
        return 200, {}, self._find_mr_note(project, iid, nid)

    def update_mr_note(self, req: Request, entry: dict[str, Any], pid: str, iid: str, nid: str) -> Any:
        project = self._project(pid, self._auth(req, entry, WRITE))
        note = self._find_mr_note(project, iid, nid)
        body = req.json().get("body")
        if not body:
            raise HTTPError(400, {"error": "body is missing"})
        note["body"], note["updated_at"] = body, _now()
        return 200, {}, note

    def _commit(self, project: dict[str, Any], sha: str) -> str:
        match = [c for c in project["commits"] if c.startswith(sha.lower())]
        if not match:
            raise _not_found("Commit")
        return match[0]

    def list_commit_discussions(self, req: Request, entry: dict[str, Any], pid: str, sha: str) -> Any:
        project = self._project(pid, self._auth(req, entry, READ))
        full = self._commit(project, sha)
        return self._paginate(req, self.discussions.get(f"{project['id']}@{full}", []))

    def create_commit_discussion(self, req: Request, entry: dict[str, Any], pid: str, sha: str) -> Any:
        project = self._project(pid, self._auth(req, entry, WRITE))
        full = self._commit(project, sha)
        body = req.json().get("body")
        if not body:
            raise HTTPError(400, {"error": "body is missing"})
        note = self._note(project, body, "Commit", None, None)
        disc = {"id": secrets.token_hex(20), "individual_note": False, "notes": [note]}
        self.discussions.setdefault(f"{project['id']}@{full}", []).append(disc)
        return 201, {}, disc

    def update_commit_note(self, req: Request, entry: dict[str, Any], pid: str, sha: str, did: str,
                           nid: str) -> Any:
        project = self._project(pid, self._auth(req, entry, WRITE))
        full = self._commit(project, sha)
        disc = next((d for d in self.discussions.get(f"{project['id']}@{full}", []) if d["id"] == did), None)
        note = next((n for n in (disc or {}).get("notes", []) if n["id"] == int(nid)), None)
        if not note:
            raise _not_found("Note")
        body = req.json().get("body")
        if not body:
            raise HTTPError(400, {"error": "body is missing"})
        note["body"], note["updated_at"] = body, _now()
        return 200, {}, note

    def create_upload(self, req: Request, entry: dict[str, Any], pid: str) -> Any:
        project = self._project(pid, self._auth(req, entry, WRITE))
        parts = req.multipart()
        if "file" not in parts or not parts["file"][0]:
            raise HTTPError(400, {"error": "file is missing"})
        filename, data = parts["file"]
        filename = os.path.basename(filename)
        secret = secrets.token_hex(16)
        alt = filename.rsplit(".", 1)[0]
        upload = {"id": next(self._ids), "alt": alt, "url": f"/uploads/{secret}/{filename}",
                  "full_path": f"/-/project/{project['id']}/uploads/{secret}/{filename}",
                  "markdown": f"![{alt}](/uploads/{secret}/{filename})"}
        self.uploads.append(dict(upload, size=len(data), sha256=hashlib.sha256(data).hexdigest(),
                                 project_id=project["id"]))
        entry["bytes"] = len(data)
        return 201, {}, upload

    # ---- state ------------------------------------------------------------------------------------
    def dump(self) -> dict[str, Any]:
        with self.lock:
            return {
                "requests": [dict(r) for r in self.requests],
                "packages": [{k: v for k, v in p.items() if k != "files"} | {"files": [
                    {"file_name": f["file_name"], "size": len(f["data"]), "sha256": f["sha256"]}
                    for f in p["files"]]} for p in self.packages],
                "notes": self.notes,
                "discussions": self.discussions,
                "uploads": self.uploads,
            }

    def _write_state(self) -> None:
        assert self.state_file
        directory = os.path.dirname(os.path.abspath(self.state_file))
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".fake-state.")
        with os.fdopen(fd, "w") as fh:
            json.dump(self.dump(), fh, indent=1, default=str)
        os.replace(tmp, self.state_file)

    # ---- assertions helpers -----------------------------------------------------------------------
    def calls(self, method: str | None = None, route: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.requests if (method is None or r["method"] == method)
                    and (route is None or r["route"] == route)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="fake GitLab API for modelci pipeline tests")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--token", action="append", default=[], help="personal/project token with api scope")
    ap.add_argument("--read-token", action="append", default=[], help="token with read_api scope only")
    ap.add_argument("--job-token", action="append", default=[], help="CI job token")
    ap.add_argument("--project", action="append", default=[], help="ID:group/path (default 42:group/project)")
    ap.add_argument("--mr", action="append", type=int, default=[], help="merge request iid (all projects)")
    ap.add_argument("--commit", action="append", default=[], help="known commit sha (all projects)")
    ap.add_argument("--state", help="write the state as JSON to this file after every request")
    args = ap.parse_args(argv)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        ap.error("the fake only listens on loopback")
    projects = {}
    for spec in args.project or ["42:group/project"]:
        pid, _, path = spec.partition(":")
        projects[int(pid)] = {"path": path or f"group/p{pid}", "mrs": args.mr, "commits": args.commit}
    tokens: dict[str, dict[str, Any]] = {}
    for t in args.token:
        tokens[t] = {"kind": "private", "scopes": ["api"], "role": "maintainer"}
    for t in args.read_token:
        tokens[t] = {"kind": "private", "scopes": ["read_api"], "role": "maintainer"}
    for t in args.job_token:
        tokens[t] = {"kind": "job", "scopes": ["api"], "role": "developer"}
    fake = FakeGitLab(tokens=tokens, projects=projects, state_file=args.state)
    url = fake.start(args.host, args.port)
    if args.state:
        fake._write_state()
    print(json.dumps({"url": url, "api_url": fake.api_url, "port": fake.server.server_address[1]}), flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    fake.stop()
    return 0


# ---- pytest fixture (import it into a test module: `from gitlab_fake import fake_gitlab`) ----------
try:
    import pytest

    @pytest.fixture
    def fake_gitlab(monkeypatch: Any) -> Any:
        """A running fake with project 42 (group/project), MR !7, one commit, and tokens:
        glpat-test-api-token (api), glpat-read-only (read_api), glpat-pkg (write_package_registry),
        job token job-token-123. The env points modelci at it with the api token."""
        fake = FakeGitLab(projects={42: {"path": "group/project", "mrs": [7], "commits": ["c0ffee" * 6 + "abcd"]}})
        fake.add_token("glpat-read-only", scopes=["read_api"])
        fake.add_token("glpat-pkg", scopes=["write_package_registry", "read_package_registry"])
        fake.add_token("glpat-reporter", scopes=["api"], role="reporter")
        fake.add_token("glpat-other-project", scopes=["api"], projects=[999])
        fake.add_token("job-token-123", kind="job", role="developer")
        fake.start()
        for var in ("MODELCI_GITLAB_URL", "MODELCI_GITLAB_PROJECT", "MODELCI_GITLAB_TOKEN", "GITLAB_TOKEN",
                    "CI_JOB_TOKEN", "CI_SERVER_URL", "CI_MERGE_REQUEST_IID", "CI_COMMIT_SHA"):
            monkeypatch.delenv(var, raising=False)
        monkeypatch.setenv("CI_API_V4_URL", fake.api_url)
        monkeypatch.setenv("CI_PROJECT_ID", "42")
        monkeypatch.setenv("MODELCI_GITLAB_TOKEN", "glpat-test-api-token")
        monkeypatch.setenv("MODELCI_GITLAB_BACKOFF", "0.01")
        monkeypatch.setenv("MODELCI_GITLAB_MAX_WAIT", "0.05")
        yield fake
        fake.stop()
except ImportError:  # pragma: no cover - standalone use without pytest
    pass


if __name__ == "__main__":
    sys.exit(main())
