"""Pipeline schedules API and schedule variables."""
from __future__ import annotations

import re
from typing import Any

from .base import Area, Route
from .http import READ, HTTPError, Request, not_found, parse_bool, require_key_value
from .http import now as _now


class Schedules(Area):
    """GET POST /projects/:id/pipeline_schedules, GET PUT DELETE .../pipeline_schedules/:id,
    POST .../pipeline_schedules/:id/variables, PUT DELETE .../variables/:key."""

    CRON_RE = re.compile(r"^\s*(\S+\s+){4}\S+\s*$")

    def routes(self) -> list[Route]:
        pid = r"/projects/(?P<pid>[^/]+)"
        return [
            (pid + r"/pipeline_schedules", {"GET": self.list_schedules, "POST": self.create_schedule}, "pipeline_schedules"),
            (pid + r"/pipeline_schedules/(?P<sid>\d+)", {"GET": self.get_schedule, "PUT": self.update_schedule, "DELETE": self.delete_schedule}, "pipeline_schedule"),
            (pid + r"/pipeline_schedules/(?P<sid>\d+)/variables", {"POST": self.create_schedule_var}, "pipeline_schedule_variables"),
            (pid + r"/pipeline_schedules/(?P<sid>\d+)/variables/(?P<key>[^/]+)", {"PUT": self.update_schedule_var, "DELETE": self.delete_schedule_var}, "pipeline_schedule_variable"),
        ]

    def project_state(self) -> dict[str, Any]:
        return {"schedules": []}

    def dump_project(self, project: dict[str, Any]) -> dict[str, Any]:
        return {"schedules": project["schedules"]}

    def _schedule_json(self, sched: dict[str, Any], with_vars: bool) -> dict[str, Any]:
        out = {k: v for k, v in sched.items() if k != "variables"}
        if with_vars:
            out["variables"] = [dict(v) for v in sched["variables"]]
        return out

    def _find_schedule(self, project: dict[str, Any], sid: str) -> dict[str, Any]:
        sched = next((s for s in project["schedules"] if s["id"] == int(sid)), None)
        if not sched:
            raise not_found("Pipeline Schedule")
        return sched

    def _check_schedule(self, project: dict[str, Any], sched: dict[str, Any]) -> None:
        if not self.CRON_RE.match(str(sched["cron"])):
            raise HTTPError(400, {"message": {"cron": ["syntax is invalid"]}})
        if str(sched["ref"]).removeprefix("refs/heads/") not in project["branches"]:
            raise HTTPError(400, {"message": {"ref": ["is invalid"]}})

    def list_schedules(self, req: Request, entry: dict[str, Any], pid: str) -> Any:
        project = self.fake.find_project(pid, self.fake.auth(req, entry, READ, min_role="reporter"))
        items = project["schedules"]
        scope = req.query.get("scope")
        if scope not in (None, "active", "inactive"):
            raise HTTPError(400, {"error": "scope does not have a valid value"})
        if scope:
            items = [s for s in items if s["active"] == (scope == "active")]
        status, headers, chunk = self.fake.paginate(req, items)
        return status, headers, [self._schedule_json(s, False) for s in chunk]

    def get_schedule(self, req: Request, entry: dict[str, Any], pid: str, sid: str) -> Any:
        project = self.fake.find_project(pid, self.fake.auth(req, entry, READ, min_role="reporter"))
        return 200, {}, self._schedule_json(self._find_schedule(project, sid), True)

    def create_schedule(self, req: Request, entry: dict[str, Any], pid: str) -> Any:
        project = self.fake.admin(req, entry, pid, role="developer")
        body = req.json()
        for field in ("description", "ref", "cron"):
            if not body.get(field):
                raise HTTPError(400, {"error": f"{field} is missing"})
        now = _now()
        sched = {"id": self.fake.next_id(), "description": body["description"], "ref": body["ref"],
                 "cron": body["cron"], "cron_timezone": body.get("cron_timezone") or "UTC",
                 "next_run_at": now, "active": parse_bool(body.get("active", True), "active"),
                 "created_at": now, "updated_at": now, "owner": self.fake.author(), "last_pipeline": None,
                 "variables": []}
        self._check_schedule(project, sched)
        project["schedules"].append(sched)
        return 201, {}, self._schedule_json(sched, True)

    def update_schedule(self, req: Request, entry: dict[str, Any], pid: str, sid: str) -> Any:
        project = self.fake.admin(req, entry, pid, role="developer")
        sched = self._find_schedule(project, sid)
        body = req.json()
        new = dict(sched)
        for field in ("description", "ref", "cron", "cron_timezone"):
            if field in body:
                new[field] = body[field]
        if "active" in body:
            new["active"] = parse_bool(body["active"], "active")
        self._check_schedule(project, new)
        new["updated_at"] = _now()
        sched.update(new)
        return 200, {}, self._schedule_json(sched, True)

    def delete_schedule(self, req: Request, entry: dict[str, Any], pid: str, sid: str) -> Any:
        project = self.fake.admin(req, entry, pid, role="maintainer")
        sched = self._find_schedule(project, sid)
        project["schedules"].remove(sched)
        return 202, {}, self._schedule_json(sched, True)  # GitLab answers 202 with the schedule

    def create_schedule_var(self, req: Request, entry: dict[str, Any], pid: str, sid: str) -> Any:
        project = self.fake.admin(req, entry, pid, role="developer")
        sched = self._find_schedule(project, sid)
        body = req.json()
        require_key_value(body)
        if any(v["key"] == body["key"] for v in sched["variables"]):
            raise HTTPError(400, {"message": {"key": [f"({body['key']}) has already been taken"]}})
        var = {"key": body["key"], "variable_type": body.get("variable_type", "env_var"),
               "value": str(body["value"]), "raw": False}
        sched["variables"].append(var)
        return 201, {}, var

    def update_schedule_var(self, req: Request, entry: dict[str, Any], pid: str, sid: str, key: str) -> Any:
        project = self.fake.admin(req, entry, pid, role="developer")
        sched = self._find_schedule(project, sid)
        var = next((v for v in sched["variables"] if v["key"] == key), None)
        if not var:
            raise not_found("Variable")
        body = req.json()
        if "value" in body:
            var["value"] = str(body["value"])
        if "variable_type" in body:
            var["variable_type"] = body["variable_type"]
        return 200, {}, var

    def delete_schedule_var(self, req: Request, entry: dict[str, Any], pid: str, sid: str, key: str) -> Any:
        project = self.fake.admin(req, entry, pid, role="developer")
        sched = self._find_schedule(project, sid)
        var = next((v for v in sched["variables"] if v["key"] == key), None)
        if not var:
            raise not_found("Variable")
        sched["variables"].remove(var)
        return 202, {}, var
