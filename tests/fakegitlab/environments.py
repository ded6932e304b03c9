"""Environments API."""
from __future__ import annotations

import re
from typing import Any

from .base import Area, Route
from .http import READ, HTTPError, Request, not_found
from .http import now as _now


class Environments(Area):
    """GET POST /projects/:id/environments, GET /projects/:id/environments/:environment_id."""

    def routes(self) -> list[Route]:
        pid = r"/projects/(?P<pid>[^/]+)"
        return [
            (pid + r"/environments", {"GET": self.list_environments, "POST": self.create_environment}, "environments"),
            (pid + r"/environments/(?P<eid>\d+)", {"GET": self.get_environment}, "environment"),
        ]

    def project_state(self) -> dict[str, Any]:
        return {"environments": []}

    def dump_project(self, project: dict[str, Any]) -> dict[str, Any]:
        return {"environments": project["environments"]}

    def _env_json(self, env: dict[str, Any]) -> dict[str, Any]:
        return dict(env)

    def list_environments(self, req: Request, entry: dict[str, Any], pid: str) -> Any:
        project = self.fake.find_project(pid, self.fake.auth(req, entry, READ, min_role="reporter"))
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
        status, headers, chunk = self.fake.paginate(req, items)
        return status, headers, [self._env_json(e) for e in chunk]

    def get_environment(self, req: Request, entry: dict[str, Any], pid: str, eid: str) -> Any:
        project = self.fake.find_project(pid, self.fake.auth(req, entry, READ, min_role="reporter"))
        env = next((e for e in project["environments"] if e["id"] == int(eid)), None)
        if not env:
            raise not_found("Environment")
        return 200, {}, self._env_json(env)

    def create_environment(self, req: Request, entry: dict[str, Any], pid: str) -> Any:
        project = self.fake.admin(req, entry, pid, role="developer")
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
        env = {"id": self.fake.next_id(), "name": name, "slug": re.sub(r"[^a-z0-9-]", "-", name.lower())[:24],
               "external_url": body.get("external_url"), "state": "available", "tier": tier,
               "created_at": now, "updated_at": now, "enable_advanced_logs_querying": False, "logs_api_path": None,
               "auto_stop_at": None, "description": body.get("description")}
        project["environments"].append(env)
        return 201, {}, self._env_json(env)
