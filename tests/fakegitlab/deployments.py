"""Deployments API: GET /projects/:id/deployments (environment, status, order_by, sort, pagination;
CI_JOB_TOKEN accepted, as on GitLab 17.x), and how GitLab records a deployment when a deploy job with
`environment:` finishes (`add_deployment`, also reachable through POST /__fake__/deployment). The
champion and production's release checks are read from here (docs/design.md)."""
from __future__ import annotations

import json
import os
from typing import Any, ClassVar

from .base import Area, Route
from .http import READ, HTTPError, Request
from .http import now as _now

ORDER_BY = ("id", "iid", "created_at", "updated_at", "finished_at", "ref")
STATUSES = ("created", "running", "success", "failed", "canceled", "skipped", "blocked")


class Deployments(Area):
    STATE: ClassVar[tuple[str, ...]] = ("deployments_file", "add_deployment")  # fake.add_deployment(...)

    def __init__(self, fake: Any):
        super().__init__(fake)
        self.deployments_file: str | None = None  # kept across fake processes of one scenario

    def routes(self) -> list[Route]:
        return [(r"/projects/(?P<pid>[^/]+)/deployments", {"GET": self.list_deployments}, "deployments")]

    def project_state(self) -> dict[str, Any]:
        return {"deployments": []}

    def dump_project(self, project: dict[str, Any]) -> dict[str, Any]:
        return {"deployments": project["deployments"]}

    def load(self, path: str | None) -> None:
        """Keep deployments in `path` (JSON) and load those recorded by earlier fakes."""
        self.deployments_file = path
        if path and os.path.exists(path):
            with open(path) as fh:
                for dep in json.load(fh):
                    self.add_deployment(dep["project"], dep["environment"], dep["sha"], status=dep["status"],
                                        external_url=dep.get("external_url"), persist=False)

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
        fake = self.fake
        with fake.lock:
            project = fake.projects[int(pid)]
            env = next((e for e in project["environments"] if e["name"] == environment), None)
            now = _now()
            if env is None:
                env = {"id": fake.next_id(), "name": environment, "slug": environment[:24],
                       "external_url": external_url, "state": "available",
                       "tier": "production" if environment.startswith("prod") else "other",
                       "created_at": now, "updated_at": now}
                project["environments"].append(env)
            elif external_url:
                env["external_url"] = external_url
            dep = {"id": fake.next_id(), "iid": len(project["deployments"]) + 1, "ref": "main", "sha": sha,
                   "status": status, "created_at": now, "updated_at": now,
                   "finished_at": now if status == "success" else None, "user": fake.author(),
                   "environment": dict(env),
                   "deployable": {"id": fake.next_id(), "status": status, "name": f"modelci:{environment}",
                                  "ref": "main", "tag": False,
                                  "pipeline": {"id": fake.next_id(), "sha": sha, "ref": "main", "status": status}}}
            project["deployments"].append(dep)
            return dep

    def list_deployments(self, req: Request, entry: dict[str, Any], pid: str) -> Any:
        project = self.fake.find_project(pid, self.fake.auth(req, entry, READ, job_ok=True, min_role="reporter"))
        q = req.query
        order_by, sort = q.get("order_by", "id"), q.get("sort", "asc")
        if order_by not in ORDER_BY:
            raise HTTPError(400, {"error": "order_by does not have a valid value"})
        if sort not in ("asc", "desc"):
            raise HTTPError(400, {"error": "sort does not have a valid value"})
        if order_by == "finished_at" and q.get("status") != "success":
            raise HTTPError(400, {"message": "`finished_at` order is only supported with `status=success`"})
        if q.get("status") and q["status"] not in STATUSES:
            raise HTTPError(400, {"error": "status does not have a valid value"})
        items = [d for d in project["deployments"]
                 if (not q.get("environment") or d["environment"]["name"] == q["environment"])
                 and (not q.get("status") or d["status"] == q["status"])]
        key = "iid" if order_by in ("id", "iid") else order_by
        items.sort(key=lambda d: (d.get(key) or "", d["iid"]), reverse=sort == "desc")
        return self.fake.paginate(req, items)
