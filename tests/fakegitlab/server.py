"""The fake's core: HTTP server, routing, auth, failure injection, pagination, state dump.

API areas (fakegitlab/areas.py) add the routes; this module knows none of them.
"""
from __future__ import annotations

import itertools
import json
import os
import re
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar
from urllib.parse import unquote, urlencode

from .areas import AREAS
from .base import Area
from .http import API, ROLES, WRITE, HTTPError, Request, not_found

A = TypeVar("A", bound=Area)


class FakeGitLab:
    """State + routing. Thread-safe (one lock around each request)."""

    def __init__(self, *, tokens: dict[str, dict[str, Any]] | None = None,
                 projects: dict[int, dict[str, Any]] | None = None, state_file: str | None = None,
                 areas: list[type[Area]] | None = None):
        self.lock = threading.RLock()
        self.tokens = tokens if tokens is not None else {
            "glpat-test-api-token": {"kind": "private", "scopes": ["api"], "role": "maintainer"},
        }
        self._ids = itertools.count(1000)
        self.areas = [cls(self) for cls in (AREAS if areas is None else areas)]
        self._state = {name: area for area in self.areas for name in area.STATE}
        self.projects: dict[int, dict[str, Any]] = {}
        for pid, spec in (projects or {42: {"path": "group/project", "mrs": [7], "commits": []}}).items():
            self.add_project(pid, spec.get("path", f"group/p{pid}"), mrs=spec.get("mrs", []),
                             commits=spec.get("commits", []), tier=spec.get("tier", "premium"))
        self.state_file = state_file
        self.requests: list[dict[str, Any]] = []
        self.failures: list[dict[str, Any]] = []
        self.server: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None
        self.routes: list[tuple[re.Pattern[str], dict[str, Callable[..., Any]], str]] = []
        for area in self.areas:
            for pattern, methods, name in area.routes():
                self._route(pattern, methods, name, area.PREFIX)

    def __getattr__(self, name: str) -> Any:
        """An area's state as an attribute of the fake (`fake.notes`, `fake.packages`)."""
        areas = self.__dict__.get("_state", {})
        if name in areas:
            return getattr(areas[name], name)
        raise AttributeError(name)

    def area(self, cls: type[A]) -> A:
        return next(a for a in self.areas if isinstance(a, cls))

    def next_id(self) -> int:
        return next(self._ids)

    # ---- set-up helpers ---------------------------------------------------------------------------
    def add_project(self, pid: int, path: str, *, mrs: list[int] = (), commits: list[str] = (),
                    tier: str = "premium") -> None:
        """tier "free" = GitLab CE/Free: the protected environments API does not exist there (404)."""
        project = {"id": int(pid), "path_with_namespace": path, "mrs": {int(i) for i in mrs},
                   "commits": set(commits), "tier": tier, "default_branch": "main", "branches": {"main"}}
        for area in self.areas:
            project.update(area.project_state())
        self.projects[int(pid)] = project

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

    def _route(self, pattern: str, methods: dict[str, Callable[..., Any]], name: str, prefix: str = API) -> None:
        self.routes.append((re.compile(f"^{prefix}{pattern}$"), methods, name))

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
            from .deployments import Deployments

            spec = req.json()
            dep = self.area(Deployments).add_deployment(int(spec["project"]), spec["environment"], spec["sha"],
                                                        status=spec.get("status", "success"),
                                                        external_url=spec.get("external_url"))
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

    # ---- helpers the areas share: auth, project lookup, pagination, shapes --------------------------

    def auth(self, req: Request, entry: dict[str, Any], scopes: set[str], *, job_ok: bool = False,
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

    def find_project(self, pid: str, auth: dict[str, Any]) -> dict[str, Any]:
        project = None
        if pid.isdigit():
            project = self.projects.get(int(pid))
        else:
            project = next((p for p in self.projects.values() if p["path_with_namespace"] == pid), None)
        allowed = auth.get("projects")
        if project is None or (allowed is not None and project["id"] not in allowed):
            raise not_found("Project")
        if not auth["role_ok"]:
            raise HTTPError(403, {"message": "403 Forbidden"})
        return project

    def admin(self, req: Request, entry: dict[str, Any], pid: str, scopes: set[str] = WRITE,
               role: str = "maintainer") -> dict[str, Any]:
        return self.find_project(pid, self.auth(req, entry, scopes, min_role=role))

    def paginate(self, req: Request, items: list[Any]) -> tuple[int, dict[str, str], list[Any]]:
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

    def author(self) -> dict[str, Any]:
        return {"id": 1, "username": "modelci-bot", "name": "modelci bot", "state": "active",
                "avatar_url": None, "web_url": self.url + "/modelci-bot"}

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

    # ---- state ------------------------------------------------------------------------------------

    def dump(self) -> dict[str, Any]:
        with self.lock:
            out: dict[str, Any] = {"requests": [dict(r) for r in self.requests]}
            for area in self.areas:
                out.update(area.dump())
            projects: dict[str, Any] = {}
            for pid, p in self.projects.items():
                projects[str(pid)] = {}
                for area in self.areas:
                    projects[str(pid)].update(area.dump_project(p))
            out["projects"] = projects
            return out

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
