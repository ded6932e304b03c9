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
  PUT  /projects/:id                                            (projects API edit: CI/CD settings)
  GET  POST /projects/:id/environments, GET /projects/:id/environments/:environment_id
  GET  POST /projects/:id/protected_environments                (Premium+; 404 on a "free" project)
  GET  PUT DELETE /projects/:id/protected_environments/:name    (deploy_access_levels, approval_rules)
  GET  POST /projects/:id/variables, GET PUT DELETE /projects/:id/variables/:key
  GET  POST /projects/:id/pipeline_schedules, GET PUT DELETE /projects/:id/pipeline_schedules/:id
  POST /projects/:id/pipeline_schedules/:id/variables, PUT DELETE .../variables/:key
  POST /projects/:id/pipeline                                   (create a pipeline, with variables)
  GET  /projects/:id/deployments                                (deployments API: environment, status,
                                                                 order_by, sort, pagination; job token ok)

Strictness: 401 for a missing or unknown token (PRIVATE-TOKEN, JOB-TOKEN or Authorization: Bearer);
a job token only works on the package endpoints (as on GitLab); 403 insufficient_scope when the
token's scopes do not cover the endpoint; 403 for a role too low to write packages (and for the
project settings, protected environments and CI/CD variables, below Maintainer; environments,
schedules and pipelines, below Developer); 404 for an
unknown route, project, merge request, commit, package or note (and for a project the token's user
cannot see); 405 for a known route with the wrong method.

Test controls: `fail_next(count, status=503, retry_after=None, path_contains=None, mode="status")`
makes the next matching requests fail (mode "reset" drops the connection, "delay" sleeps `delay`
seconds first); `requests` is the request log; `dump()` is the whole state (also written as JSON to
`state_file` after every request). Other processes can use the control routes (no auth):
GET /__fake__/state, POST /__fake__/fail {count, status, retry_after, path_contains, mode, delay},
POST /__fake__/reset-log, POST /__fake__/deployment {project, environment, sha, status, external_url}
(records a deployment as GitLab would after a deploy job).

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
from typing import Any, ClassVar
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
                             commits=spec.get("commits", []), tier=spec.get("tier", "premium"))
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
        self._route(r"/projects/(?P<pid>[^/]+)", {"GET": self.get_project, "PUT": self.edit_project}, "project")
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
        self._setup_routes()

    # ---- set-up helpers ---------------------------------------------------------------------------
    def add_project(self, pid: int, path: str, *, mrs: list[int] = (), commits: list[str] = (),
                    tier: str = "premium") -> None:
        """tier "free" = GitLab CE/Free: the protected environments API does not exist there (404)."""
        self.projects[int(pid)] = {"id": int(pid), "path_with_namespace": path,
                                   "mrs": {int(i) for i in mrs}, "commits": set(commits), "tier": tier,
                                   "default_branch": "main", "branches": {"main"},
                                   "settings": {"ci_forward_deployment_enabled": False,
                                                "ci_forward_deployment_rollback_allowed": False,
                                                "restrict_user_defined_variables": False,
                                                "ci_pipeline_variables_minimum_override_role": "developer"},
                                   "deployments": [],
                                   "environments": [], "protected_environments": [], "variables": [],
                                   "schedules": [], "pipelines": []}

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
        if req.path == "/__fake__/deployment" and req.method == "POST":
            spec = req.json()
            dep = self.add_deployment(int(spec["project"]), spec["environment"], spec["sha"],
                                      status=spec.get("status", "success"), external_url=spec.get("external_url"))
            return 200, {"Content-Type": "application/json"}, json.dumps(dep).encode()
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
        auth = self._auth(req, entry, READ)
        project = self._project(pid, auth)
        return 200, {}, self._project_json(project, auth)

    def _project_json(self, project: dict[str, Any], auth: dict[str, Any]) -> dict[str, Any]:
        path = project["path_with_namespace"]
        level = ROLES.get(auth.get("role", "maintainer"), 0)
        out = {"id": project["id"], "name": path.rsplit("/", 1)[-1],
               "path": path.rsplit("/", 1)[-1], "path_with_namespace": path,
               "name_with_namespace": path.replace("/", " / "), "default_branch": project["default_branch"],
               "web_url": f"{self.url}/{path}", "visibility": "private",
               "permissions": {"project_access": {"access_level": level, "notification_level": 3},
                               "group_access": None}}
        if level >= ROLES["maintainer"]:  # GitLab exposes CI/CD settings to those who can admin the project
            out.update(project["settings"])
        return out

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


    # ---- project settings, environments, protected environments, variables, schedules, pipelines ---
    def _setup_routes(self) -> None:
        pid = r"/projects/(?P<pid>[^/]+)"
        self._route(pid + r"/environments", {"GET": self.list_environments, "POST": self.create_environment},
                    "environments")
        self._route(pid + r"/environments/(?P<eid>\d+)", {"GET": self.get_environment}, "environment")
        self._route(pid + r"/protected_environments/?",
                    {"GET": self.list_protected_envs, "POST": self.protect_env}, "protected_environments")
        self._route(pid + r"/protected_environments/(?P<name>[^/]+)",
                    {"GET": self.get_protected_env, "PUT": self.update_protected_env,
                     "DELETE": self.unprotect_env}, "protected_environment")
        self._route(pid + r"/variables", {"GET": self.list_variables, "POST": self.create_variable}, "variables")
        self._route(pid + r"/variables/(?P<key>[^/]+)",
                    {"GET": self.get_variable, "PUT": self.update_variable, "DELETE": self.delete_variable},
                    "variable")
        self._route(pid + r"/pipeline_schedules", {"GET": self.list_schedules, "POST": self.create_schedule},
                    "pipeline_schedules")
        self._route(pid + r"/pipeline_schedules/(?P<sid>\d+)",
                    {"GET": self.get_schedule, "PUT": self.update_schedule, "DELETE": self.delete_schedule},
                    "pipeline_schedule")
        self._route(pid + r"/pipeline_schedules/(?P<sid>\d+)/variables", {"POST": self.create_schedule_var},
                    "pipeline_schedule_variables")
        self._route(pid + r"/pipeline_schedules/(?P<sid>\d+)/variables/(?P<key>[^/]+)",
                    {"PUT": self.update_schedule_var, "DELETE": self.delete_schedule_var},
                    "pipeline_schedule_variable")
        self._route(pid + r"/pipeline", {"POST": self.create_pipeline}, "pipeline_create")
        self._route(pid + r"/deployments", {"GET": self.list_deployments}, "deployments")

    # deployments API (GET /projects/:id/deployments; CI_JOB_TOKEN allowed, as on GitLab 17.x)
    deployments_file: str | None = None

    def add_deployment(self, pid: int, environment: str, sha: str, *, status: str = "success",
                       external_url: str | None = None, persist: bool = True) -> dict[str, Any]:
        """Record a deployment as GitLab does when a deploy job with `environment:` finishes."""
        if persist and self.deployments_file:
            saved = []
            if os.path.exists(self.deployments_file):
                with open(self.deployments_file) as fh:
                    saved = json.load(fh)
            saved.append({"project": int(pid), "environment": environment, "sha": sha, "status": status,
                          "external_url": external_url})
            with open(self.deployments_file, "w") as fh:
                json.dump(saved, fh)
        with self.lock:
            project = self.projects[int(pid)]
            env = next((e for e in project["environments"] if e["name"] == environment), None)
            now = _now()
            if env is None:
                env = {"id": next(self._ids), "name": environment, "slug": environment[:24],
                       "external_url": external_url, "state": "available",
                       "tier": "production" if environment.startswith("prod") else "other",
                       "created_at": now, "updated_at": now}
                project["environments"].append(env)
            elif external_url:
                env["external_url"] = external_url
            iid = len(project["deployments"]) + 1
            dep = {"id": next(self._ids), "iid": iid, "ref": "main", "sha": sha, "status": status,
                   "created_at": now, "updated_at": now, "finished_at": now if status == "success" else None,
                   "user": self._author(), "environment": dict(env),
                   "deployable": {"id": next(self._ids), "status": status, "name": f"modelci:{environment}",
                                  "ref": "main", "tag": False, "pipeline": {"id": next(self._ids), "sha": sha,
                                                                         "ref": "main", "status": status}}}
            project["deployments"].append(dep)
            return dep

    def list_deployments(self, req: Request, entry: dict[str, Any], pid: str) -> Any:
        project = self._project(pid, self._auth(req, entry, READ, job_ok=True, min_role="reporter"))
        q = req.query
        order_by, sort = q.get("order_by", "id"), q.get("sort", "asc")
        if order_by not in ("id", "iid", "created_at", "updated_at", "finished_at", "ref"):
            raise HTTPError(400, {"error": "order_by does not have a valid value"})
        if sort not in ("asc", "desc"):
            raise HTTPError(400, {"error": "sort does not have a valid value"})
        if order_by == "finished_at" and q.get("status") != "success":
            raise HTTPError(400, {"message": "`finished_at` order is only supported with `status=success`"})
        if q.get("status") and q["status"] not in ("created", "running", "success", "failed", "canceled",
                                                     "skipped", "blocked"):
            raise HTTPError(400, {"error": "status does not have a valid value"})
        with self.lock:
            items = [d for d in project["deployments"]
                     if (not q.get("environment") or d["environment"]["name"] == q["environment"])
                     and (not q.get("status") or d["status"] == q["status"])]
        key = "iid" if order_by in ("id", "iid") else order_by
        items.sort(key=lambda d: (d.get(key) or "", d["iid"]), reverse=sort == "desc")
        return self._paginate(req, items)

    @staticmethod
    def _bool(value: Any, field: str) -> bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
            return value.lower() in ("true", "1")
        raise HTTPError(400, {"error": f"{field} is invalid"})

    def _admin(self, req: Request, entry: dict[str, Any], pid: str, scopes: set[str] = WRITE,
               role: str = "maintainer") -> dict[str, Any]:
        return self._project(pid, self._auth(req, entry, scopes, min_role=role))

    def edit_project(self, req: Request, entry: dict[str, Any], pid: str) -> Any:
        auth = self._auth(req, entry, WRITE, min_role="maintainer")
        project = self._project(pid, auth)
        body = req.json()
        known = {"ci_forward_deployment_enabled", "ci_forward_deployment_rollback_allowed", "description",
                 "default_branch", "visibility", "name", "restrict_user_defined_variables",
                 "ci_pipeline_variables_minimum_override_role"}
        given = {k: v for k, v in body.items() if k in known}
        if not given:
            raise HTTPError(400, {"error": ", ".join(sorted(known)) + " are missing, at least one parameter "
                                                                       "must be provided"})
        for key in ("ci_forward_deployment_enabled", "ci_forward_deployment_rollback_allowed",
                    "restrict_user_defined_variables"):
            if key in given:
                project["settings"][key] = self._bool(given[key], key)
        role = given.get("ci_pipeline_variables_minimum_override_role")
        if role is not None:
            if role not in ("no_one_allowed", "developer", "maintainer", "owner"):
                raise HTTPError(400, {"error": "ci_pipeline_variables_minimum_override_role does not have a "
                                               "valid value"})
            project["settings"]["ci_pipeline_variables_minimum_override_role"] = role
        if "default_branch" in given:
            if given["default_branch"] not in project["branches"]:
                raise HTTPError(400, {"message": {"default_branch": ["is invalid"]}})
            project["default_branch"] = given["default_branch"]
        return 200, {}, self._project_json(project, auth)

    # environments API
    def _env_json(self, env: dict[str, Any]) -> dict[str, Any]:
        return dict(env)

    def list_environments(self, req: Request, entry: dict[str, Any], pid: str) -> Any:
        project = self._project(pid, self._auth(req, entry, READ, min_role="reporter"))
        items = list(project["environments"])
        q = req.query
        if q.get("name") and q.get("search"):
            raise HTTPError(400, {"error": "name, search are mutually exclusive"})
        if q.get("name"):
            items = [e for e in items if e["name"] == q["name"]]
        if q.get("search"):
            items = [e for e in items if q["search"] in e["name"]]
        if q.get("states"):
            if q["states"] not in ("available", "stopping", "stopped"):
                raise HTTPError(400, {"error": "states does not have a valid value"})
            items = [e for e in items if e["state"] == q["states"]]
        status, headers, chunk = self._paginate(req, items)
        return status, headers, [self._env_json(e) for e in chunk]

    def get_environment(self, req: Request, entry: dict[str, Any], pid: str, eid: str) -> Any:
        project = self._project(pid, self._auth(req, entry, READ, min_role="reporter"))
        env = next((e for e in project["environments"] if e["id"] == int(eid)), None)
        if not env:
            raise _not_found("Environment")
        return 200, {}, self._env_json(env)

    def create_environment(self, req: Request, entry: dict[str, Any], pid: str) -> Any:
        project = self._admin(req, entry, pid, role="developer")
        body = req.json()
        name = body.get("name")
        if not name:
            raise HTTPError(400, {"error": "name is missing"})
        if any(e["name"] == name for e in project["environments"]):
            raise HTTPError(400, {"message": {"name": ["has already been taken"]}})
        tier = body.get("tier") or ("production" if name.startswith("prod") else
                                    "staging" if name.startswith("stag") else "other")
        if tier not in ("production", "staging", "testing", "development", "other"):
            raise HTTPError(400, {"error": "tier does not have a valid value"})
        now = _now()
        env = {"id": next(self._ids), "name": name, "slug": re.sub(r"[^a-z0-9-]", "-", name.lower())[:24],
               "external_url": body.get("external_url"), "state": "available", "tier": tier,
               "created_at": now, "updated_at": now, "enable_advanced_logs_querying": False, "logs_api_path": None,
               "auto_stop_at": None, "description": body.get("description")}
        project["environments"].append(env)
        return 201, {}, self._env_json(env)

    # protected environments API (Premium+)
    LEVELS: ClassVar[dict[int, str]] = {30: "Developers + Maintainers", 40: "Maintainers", 60: "Admins"}

    def _pe_project(self, req: Request, entry: dict[str, Any], pid: str) -> dict[str, Any]:
        auth = self._auth(req, entry, WRITE)
        project = self._project(pid, dict(auth, role_ok=True))
        if project["tier"] == "free":  # CE/Free: the route does not exist
            raise HTTPError(404, {"error": "404 Not Found"})
        if ROLES.get(auth.get("role", "maintainer"), 0) < ROLES["maintainer"]:  # authorize_admin_project
            raise HTTPError(403, {"message": "403 Forbidden"})
        return project

    def _rule(self, spec: Any, approval: bool) -> dict[str, Any]:
        if not isinstance(spec, dict):
            raise HTTPError(400, {"error": "deploy_access_levels is invalid"})
        who = [k for k in ("access_level", "user_id", "group_id") if spec.get(k) is not None]
        if len(who) != 1:
            raise HTTPError(400, {"error": "access_level, user_id, group_id are mutually exclusive, "
                                           "exactly one parameter must be provided"})
        rule = {"id": next(self._ids), "access_level": None, "user_id": None, "group_id": None,
                "group_inheritance_type": int(spec.get("group_inheritance_type") or 0)}
        try:
            rule[who[0]] = int(spec[who[0]])
        except (TypeError, ValueError):
            raise HTTPError(400, {"error": f"{who[0]} is invalid"}) from None
        if rule["access_level"] is not None and rule["access_level"] not in self.LEVELS:
            raise HTTPError(400, {"error": "access_level does not have a valid value"})
        rule["access_level_description"] = (self.LEVELS.get(rule["access_level"]) if rule["access_level"]
                                            else f"user {rule['user_id']}" if rule["user_id"]
                                            else f"group {rule['group_id']}")
        if approval:
            try:
                rule["required_approvals"] = int(spec.get("required_approvals", 1))
            except (TypeError, ValueError):
                raise HTTPError(400, {"error": "required_approvals is invalid"}) from None
            if rule["required_approvals"] < 1:
                raise HTTPError(400, {"message": {"required_approvals": ["must be greater than 0"]}})
        return rule

    def _apply_rules(self, current: list[dict[str, Any]], specs: Any, approval: bool) -> list[dict[str, Any]]:
        if not isinstance(specs, list):
            raise HTTPError(400, {"error": "approval_rules is invalid" if approval else
                                           "deploy_access_levels is invalid"})
        out = [dict(r) for r in current]
        for spec in specs:
            if isinstance(spec, dict) and spec.get("id") is not None:
                found = next((r for r in out if r["id"] == int(spec["id"])), None)
                if found is None:
                    raise _not_found("Rule")
                if self._bool(spec.get("_destroy", False), "_destroy"):
                    out.remove(found)
                elif approval and "required_approvals" in spec:
                    found["required_approvals"] = int(spec["required_approvals"])
            else:
                out.append(self._rule(spec, approval))
        return out

    def list_protected_envs(self, req: Request, entry: dict[str, Any], pid: str) -> Any:
        project = self._pe_project(req, entry, pid)
        return self._paginate(req, project["protected_environments"])

    def _find_pe(self, project: dict[str, Any], name: str) -> dict[str, Any]:
        pe = next((p for p in project["protected_environments"] if p["name"] == name), None)
        if not pe:
            raise _not_found("Protected environment")
        return pe

    def get_protected_env(self, req: Request, entry: dict[str, Any], pid: str, name: str) -> Any:
        return 200, {}, self._find_pe(self._pe_project(req, entry, pid), name)

    def protect_env(self, req: Request, entry: dict[str, Any], pid: str) -> Any:
        project = self._pe_project(req, entry, pid)
        body = req.json()
        if not body.get("name"):
            raise HTTPError(400, {"error": "name is missing"})
        if not body.get("deploy_access_levels"):
            raise HTTPError(400, {"error": "deploy_access_levels is missing"})
        if any(p["name"] == body["name"] for p in project["protected_environments"]):
            raise HTTPError(409, {"message": "Protected environment already exists"})
        pe = {"name": body["name"],
              "deploy_access_levels": self._apply_rules([], body["deploy_access_levels"], False),
              "required_approval_count": int(body.get("required_approval_count") or 0),
              "approval_rules": self._apply_rules([], body.get("approval_rules") or [], True)}
        project["protected_environments"].append(pe)
        return 201, {}, pe

    def update_protected_env(self, req: Request, entry: dict[str, Any], pid: str, name: str) -> Any:
        project = self._pe_project(req, entry, pid)
        pe = self._find_pe(project, name)
        body = req.json()
        new = dict(pe)
        if "deploy_access_levels" in body:
            new["deploy_access_levels"] = self._apply_rules(pe["deploy_access_levels"],
                                                            body["deploy_access_levels"], False)
            if not new["deploy_access_levels"]:
                raise HTTPError(400, {"message": {"deploy_access_levels": ["can't be blank"]}})
        if "approval_rules" in body:
            new["approval_rules"] = self._apply_rules(pe["approval_rules"], body["approval_rules"], True)
        if "required_approval_count" in body:
            new["required_approval_count"] = int(body["required_approval_count"] or 0)
        pe.update(new)
        return 200, {}, pe

    def unprotect_env(self, req: Request, entry: dict[str, Any], pid: str, name: str) -> Any:
        project = self._pe_project(req, entry, pid)
        project["protected_environments"].remove(self._find_pe(project, name))
        return 204, {}, b""

    # project-level CI/CD variables API
    KEY_RE = re.compile(r"^[A-Za-z0-9_]{1,255}$")
    MASKABLE_RE = re.compile(r"^[\x21-\x7e]{8,}$")  # one line, no spaces, ASCII, 8+ characters

    def _var_json(self, var: dict[str, Any]) -> dict[str, Any]:
        out = dict(var)
        if var.get("hidden"):
            out["value"] = None
        return out

    def _find_var(self, project: dict[str, Any], key: str, scope: str | None) -> dict[str, Any]:
        found = [v for v in project["variables"] if v["key"] == key
                 and (scope is None or v["environment_scope"] == scope)]
        if not found:
            raise _not_found("Variable")
        if len(found) > 1:
            raise HTTPError(409, {"message": "There are multiple variables with provided parameters. "
                                             "Please use 'filter[environment_scope]'"})
        return found[0]

    def _check_var(self, var: dict[str, Any]) -> None:
        if var["variable_type"] not in ("env_var", "file"):
            raise HTTPError(400, {"error": "variable_type does not have a valid value"})
        if var["masked"] and not self.MASKABLE_RE.match(str(var["value"])):
            raise HTTPError(400, {"message": {"value": ["is invalid"]}})

    def list_variables(self, req: Request, entry: dict[str, Any], pid: str) -> Any:
        project = self._admin(req, entry, pid, scopes=READ)
        status, headers, chunk = self._paginate(req, project["variables"])
        return status, headers, [self._var_json(v) for v in chunk]

    def get_variable(self, req: Request, entry: dict[str, Any], pid: str, key: str) -> Any:
        project = self._admin(req, entry, pid, scopes=READ)
        return 200, {}, self._var_json(self._find_var(project, key, req.query.get("filter[environment_scope]")))

    def create_variable(self, req: Request, entry: dict[str, Any], pid: str) -> Any:
        project = self._admin(req, entry, pid)
        body = req.json()
        for field in ("key", "value"):
            if body.get(field) is None:
                raise HTTPError(400, {"error": f"{field} is missing"})
        if not self.KEY_RE.match(str(body["key"])):
            raise HTTPError(400, {"message": {"key": ["can contain only letters, digits and '_'."]}})
        hidden = self._bool(body.get("masked_and_hidden", False), "masked_and_hidden")
        var = {"variable_type": body.get("variable_type", "env_var"), "key": body["key"], "value": str(body["value"]),
               "protected": self._bool(body.get("protected", False), "protected"),
               "masked": hidden or self._bool(body.get("masked", False), "masked"), "hidden": hidden,
               "raw": self._bool(body.get("raw", False), "raw"),
               "environment_scope": body.get("environment_scope") or "*", "description": body.get("description")}
        self._check_var(var)
        if any(v["key"] == var["key"] and v["environment_scope"] == var["environment_scope"]
               for v in project["variables"]):
            raise HTTPError(400, {"message": {"key": [f"({var['key']}) has already been taken"]}})
        project["variables"].append(var)
        return 201, {}, self._var_json(var)

    def update_variable(self, req: Request, entry: dict[str, Any], pid: str, key: str) -> Any:
        project = self._admin(req, entry, pid)
        var = self._find_var(project, key, req.json().get("filter", {}).get("environment_scope")
                             if isinstance(req.json().get("filter"), dict) else None)
        body = req.json()
        new = dict(var)
        if "value" in body:
            new["value"] = str(body["value"])
        for field in ("protected", "masked", "raw"):
            if field in body:
                new[field] = self._bool(body[field], field)
        for field in ("variable_type", "environment_scope", "description"):
            if field in body:
                new[field] = body[field]
        if var["hidden"] and not new["masked"]:
            raise HTTPError(400, {"message": {"masked": ["cannot be changed for a hidden variable"]}})
        self._check_var(new)
        var.update(new)
        return 200, {}, self._var_json(var)

    def delete_variable(self, req: Request, entry: dict[str, Any], pid: str, key: str) -> Any:
        project = self._admin(req, entry, pid)
        project["variables"].remove(self._find_var(project, key, req.query.get("filter[environment_scope]")))
        return 204, {}, b""

    # pipeline schedules API
    CRON_RE = re.compile(r"^\s*(\S+\s+){4}\S+\s*$")

    def _schedule_json(self, sched: dict[str, Any], with_vars: bool) -> dict[str, Any]:
        out = {k: v for k, v in sched.items() if k != "variables"}
        if with_vars:
            out["variables"] = [dict(v) for v in sched["variables"]]
        return out

    def _find_schedule(self, project: dict[str, Any], sid: str) -> dict[str, Any]:
        sched = next((s for s in project["schedules"] if s["id"] == int(sid)), None)
        if not sched:
            raise _not_found("Pipeline Schedule")
        return sched

    def _check_schedule(self, project: dict[str, Any], sched: dict[str, Any]) -> None:
        if not self.CRON_RE.match(str(sched["cron"])):
            raise HTTPError(400, {"message": {"cron": ["syntax is invalid"]}})
        if str(sched["ref"]).removeprefix("refs/heads/") not in project["branches"]:
            raise HTTPError(400, {"message": {"ref": ["is invalid"]}})

    def list_schedules(self, req: Request, entry: dict[str, Any], pid: str) -> Any:
        project = self._project(pid, self._auth(req, entry, READ, min_role="reporter"))
        items = project["schedules"]
        scope = req.query.get("scope")
        if scope not in (None, "active", "inactive"):
            raise HTTPError(400, {"error": "scope does not have a valid value"})
        if scope:
            items = [s for s in items if s["active"] == (scope == "active")]
        status, headers, chunk = self._paginate(req, items)
        return status, headers, [self._schedule_json(s, False) for s in chunk]

    def get_schedule(self, req: Request, entry: dict[str, Any], pid: str, sid: str) -> Any:
        project = self._project(pid, self._auth(req, entry, READ, min_role="reporter"))
        return 200, {}, self._schedule_json(self._find_schedule(project, sid), True)

    def create_schedule(self, req: Request, entry: dict[str, Any], pid: str) -> Any:
        project = self._admin(req, entry, pid, role="developer")
        body = req.json()
        for field in ("description", "ref", "cron"):
            if not body.get(field):
                raise HTTPError(400, {"error": f"{field} is missing"})
        now = _now()
        sched = {"id": next(self._ids), "description": body["description"], "ref": body["ref"],
                 "cron": body["cron"], "cron_timezone": body.get("cron_timezone") or "UTC",
                 "next_run_at": now, "active": self._bool(body.get("active", True), "active"),
                 "created_at": now, "updated_at": now, "owner": self._author(), "last_pipeline": None,
                 "variables": []}
        self._check_schedule(project, sched)
        project["schedules"].append(sched)
        return 201, {}, self._schedule_json(sched, True)

    def update_schedule(self, req: Request, entry: dict[str, Any], pid: str, sid: str) -> Any:
        project = self._admin(req, entry, pid, role="developer")
        sched = self._find_schedule(project, sid)
        body = req.json()
        new = dict(sched)
        for field in ("description", "ref", "cron", "cron_timezone"):
            if field in body:
                new[field] = body[field]
        if "active" in body:
            new["active"] = self._bool(body["active"], "active")
        self._check_schedule(project, new)
        new["updated_at"] = _now()
        sched.update(new)
        return 200, {}, self._schedule_json(sched, True)

    def delete_schedule(self, req: Request, entry: dict[str, Any], pid: str, sid: str) -> Any:
        project = self._admin(req, entry, pid, role="maintainer")
        sched = self._find_schedule(project, sid)
        project["schedules"].remove(sched)
        return 202, {}, self._schedule_json(sched, True)  # GitLab answers 202 with the schedule

    def create_schedule_var(self, req: Request, entry: dict[str, Any], pid: str, sid: str) -> Any:
        project = self._admin(req, entry, pid, role="developer")
        sched = self._find_schedule(project, sid)
        body = req.json()
        for field in ("key", "value"):
            if body.get(field) is None:
                raise HTTPError(400, {"error": f"{field} is missing"})
        if not self.KEY_RE.match(str(body["key"])):
            raise HTTPError(400, {"message": {"key": ["can contain only letters, digits and '_'."]}})
        if any(v["key"] == body["key"] for v in sched["variables"]):
            raise HTTPError(400, {"message": {"key": [f"({body['key']}) has already been taken"]}})
        var = {"key": body["key"], "variable_type": body.get("variable_type", "env_var"),
               "value": str(body["value"]), "raw": False}
        sched["variables"].append(var)
        return 201, {}, var

    def update_schedule_var(self, req: Request, entry: dict[str, Any], pid: str, sid: str, key: str) -> Any:
        project = self._admin(req, entry, pid, role="developer")
        sched = self._find_schedule(project, sid)
        var = next((v for v in sched["variables"] if v["key"] == key), None)
        if not var:
            raise _not_found("Variable")
        body = req.json()
        if "value" in body:
            var["value"] = str(body["value"])
        if "variable_type" in body:
            var["variable_type"] = body["variable_type"]
        return 200, {}, var

    def delete_schedule_var(self, req: Request, entry: dict[str, Any], pid: str, sid: str, key: str) -> Any:
        project = self._admin(req, entry, pid, role="developer")
        sched = self._find_schedule(project, sid)
        var = next((v for v in sched["variables"] if v["key"] == key), None)
        if not var:
            raise _not_found("Variable")
        sched["variables"].remove(var)
        return 202, {}, var

    # pipelines API: create a new pipeline
    def create_pipeline(self, req: Request, entry: dict[str, Any], pid: str) -> Any:
        project = self._admin(req, entry, pid, role="developer")
        body = req.json()
        ref = body.get("ref")
        if not ref:
            raise HTTPError(400, {"error": "ref is missing"})
        if str(ref).removeprefix("refs/heads/") not in project["branches"]:
            raise HTTPError(400, {"message": {"base": ["Reference not found"]}})
        variables = body.get("variables") or []
        if not isinstance(variables, list) or not all(isinstance(v, dict) and v.get("key") for v in variables):
            raise HTTPError(400, {"error": "variables is invalid"})
        now = _now()
        pid_ = next(self._ids)
        pipeline = {"id": pid_, "iid": len(project["pipelines"]) + 1, "project_id": project["id"],
                    "sha": hashlib.sha1(f"{ref}".encode()).hexdigest(), "ref": ref, "status": "created",
                    "source": "api", "created_at": now, "updated_at": now, "tag": False, "yaml_errors": None,
                    "before_sha": "0" * 40, "user": self._author(), "started_at": None, "finished_at": None,
                    "committed_at": None, "duration": None, "queued_duration": None, "coverage": None,
                    "detailed_status": {"text": "created", "label": "created", "group": "created"},
                    "web_url": f"{self.url}/{project['path_with_namespace']}/-/pipelines/{pid_}"}
        project["pipelines"].append(dict(pipeline, variables=[
            {"key": v["key"], "value": str(v.get("value", "")), "variable_type": v.get("variable_type", "env_var")}
            for v in variables]))
        return 201, {}, pipeline

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
                "projects": {str(pid): {"settings": dict(p["settings"]), "environments": p["environments"],
                                        "protected_environments": p["protected_environments"],
                                        "variables": [dict(v, value="[hidden]") for v in p["variables"]],
                                        "schedules": p["schedules"], "pipelines": p["pipelines"]}
                             for pid, p in self.projects.items()},
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
    ap.add_argument("--deployments", help="JSON file of deployments kept across runs (loaded at start, "
                                          "rewritten on each new deployment)")
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
    fake.deployments_file = args.deployments
    if args.deployments and os.path.exists(args.deployments):
        with open(args.deployments) as fh:
            for dep in json.load(fh):
                fake.add_deployment(dep["project"], dep["environment"], dep["sha"], status=dep["status"],
                                    external_url=dep.get("external_url"), persist=False)
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
