"""Packages API and the generic package registry."""
from __future__ import annotations

import hashlib
import re
from typing import Any, ClassVar

from .base import Area, Route
from .http import PKG_READ, PKG_WRITE, READ, ROLES, WRITE, HTTPError, Request, not_found
from .http import now as _now

NAME_RE = re.compile(r"^[A-Za-z0-9._-]+$")
VERSION_RE = re.compile(r"^(\.?[\w+-]+\.?)+$")
FILE_RE = re.compile(r"^[A-Za-z0-9._~-]+$")


class Packages(Area):
    """GET /projects/:id/packages (filters + pagination), DELETE /projects/:id/packages/:package_id,
    GET .../packages/:package_id/package_files, PUT/GET .../packages/generic/:name/:version/:file_name."""

    STATE: ClassVar[tuple[str, ...]] = ('packages',)

    def __init__(self, fake: Any):
        super().__init__(fake)
        self.packages: list[dict[str, Any]] = []

    def routes(self) -> list[Route]:
        pid = r"/projects/(?P<pid>[^/]+)"
        return [
            (pid + r"/packages", {"GET": self.list_packages}, "packages"),
            (pid + r"/packages/(?P<pkg>\d+)", {"DELETE": self.delete_package}, "package"),
            (pid + r"/packages/(?P<pkg>\d+)/package_files", {"GET": self.list_package_files}, "package_files"),
            (pid + r"/packages/generic/(?P<name>[^/]+)/(?P<version>[^/]+)/(?P<file>[^/]+)", {"PUT": self.put_generic, "GET": self.get_generic}, "generic"),
        ]

    def dump(self) -> dict[str, Any]:
        return {"packages": [{k: v for k, v in p.items() if k != "files"} | {"files": [
            {"file_name": f["file_name"], "size": len(f["data"]), "sha256": f["sha256"]}
            for f in p["files"]]} for p in self.packages]}

    def _package_json(self, pkg: dict[str, Any], project: dict[str, Any]) -> dict[str, Any]:
        return {"id": pkg["id"], "name": pkg["name"], "version": pkg["version"], "package_type": "generic",
                "status": "default", "created_at": pkg["created_at"], "last_downloaded_at": None,
                "tags": [], "pipeline": None, "pipelines": [],
                "_links": {"web_path": f"/{project['path_with_namespace']}/-/packages/{pkg['id']}",
                           "delete_api_path": f"{self.fake.api_url}/projects/{project['id']}/packages/{pkg['id']}"}}

    def list_packages(self, req: Request, entry: dict[str, Any], pid: str) -> Any:
        project = self.fake.find_project(pid, self.fake.auth(req, entry, READ, job_ok=True))
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
        status, headers, chunk = self.fake.paginate(req, items)
        return status, headers, [self._package_json(p, project) for p in chunk]

    def list_package_files(self, req: Request, entry: dict[str, Any], pid: str, pkg: str) -> Any:
        project = self.fake.find_project(pid, self.fake.auth(req, entry, READ, job_ok=True))
        found = next((p for p in self.packages if p["project_id"] == project["id"] and p["id"] == int(pkg)),
                     None)
        if not found:
            raise not_found("Package")
        files = [{"id": f["id"], "package_id": found["id"], "created_at": f["created_at"],
                  "file_name": f["file_name"], "size": len(f["data"]), "file_md5": None, "file_sha1": None,
                  "file_sha256": f["sha256"], "pipelines": []} for f in found["files"]]
        return self.fake.paginate(req, files)

    def delete_package(self, req: Request, entry: dict[str, Any], pid: str, pkg: str) -> Any:
        auth = self.fake.auth(req, entry, WRITE, job_ok=True)
        project = self.fake.find_project(pid, auth)
        found = next((p for p in self.packages if p["project_id"] == project["id"] and p["id"] == int(pkg)),
                     None)
        if not found:
            raise not_found("Package")
        if ROLES.get(auth.get("role", "maintainer"), 0) < ROLES["maintainer"]:
            raise HTTPError(403, {"message": "403 Forbidden"})
        self.packages.remove(found)
        return 204, {}, b""

    def put_generic(self, req: Request, entry: dict[str, Any], pid: str, name: str, version: str,
                    file: str) -> Any:
        auth = self.fake.auth(req, entry, PKG_WRITE, job_ok=True)
        if ROLES.get(auth.get("role", "maintainer"), 0) < ROLES["developer"]:
            self.fake.find_project(pid, auth)
            raise HTTPError(403, {"message": "403 Forbidden"})
        project = self.fake.find_project(pid, auth)
        if not NAME_RE.match(name):
            raise HTTPError(400, {"error": "package_name is invalid"})
        if not VERSION_RE.match(version):
            raise HTTPError(400, {"error": "package_version is invalid"})
        if not FILE_RE.match(file) or file[0] in "~@":
            raise HTTPError(400, {"error": "file_name is invalid"})
        pkg = next((p for p in self.packages if p["project_id"] == project["id"] and p["name"] == name
                    and p["version"] == version), None)
        if pkg is None:
            pkg = {"id": self.fake.next_id(), "seq": len(self.packages), "project_id": project["id"],
                   "name": name, "version": version, "created_at": _now(), "files": []}
            self.packages.append(pkg)
        record = {"id": self.fake.next_id(), "file_name": file, "data": req.body,
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
        project = self.fake.find_project(pid, self.fake.auth(req, entry, PKG_READ, job_ok=True))
        pkg = next((p for p in self.packages if p["project_id"] == project["id"] and p["name"] == name
                    and p["version"] == version), None)
        files = [f for f in (pkg or {}).get("files", []) if f["file_name"] == file]
        if not files:
            raise not_found("Package")
        return 200, {"Content-Disposition": f'attachment; filename="{file}"'}, files[-1]["data"]
