"""Pipelines API: create a pipeline (with variables), as the drift monitor does.

Pipeline variables obey the project's `ci_pipeline_variables_minimum_override_role` (developer,
maintainer, owner or no_one_allowed; a project setting, see projects.py): a
token below it that sends variables gets GitLab's 400 "Insufficient permissions to set pipeline
variables" (a pipeline-creation validation error, rendered like the others); without variables the
pipeline is created."""
from __future__ import annotations

import hashlib
from typing import Any

from .base import Area, Route
from .http import ROLES, WRITE, HTTPError, Request
from .http import now as _now


class Pipelines(Area):
    """POST /projects/:id/pipeline."""

    def routes(self) -> list[Route]:
        pid = r"/projects/(?P<pid>[^/]+)"
        return [
            (pid + r"/pipeline", {"POST": self.create_pipeline}, "pipeline_create"),
        ]

    def project_state(self) -> dict[str, Any]:
        return {"pipelines": []}

    def dump_project(self, project: dict[str, Any]) -> dict[str, Any]:
        return {"pipelines": project["pipelines"]}

    def create_pipeline(self, req: Request, entry: dict[str, Any], pid: str) -> Any:
        auth = self.fake.auth(req, entry, WRITE, min_role="developer")
        project = self.fake.find_project(pid, auth)
        body = req.json()
        ref = body.get("ref")
        if not ref:
            raise HTTPError(400, {"error": "ref is missing"})
        if str(ref).removeprefix("refs/heads/") not in project["branches"]:
            raise HTTPError(400, {"message": {"base": ["Reference not found"]}})
        variables = body.get("variables") or []
        if not isinstance(variables, list) or not all(isinstance(v, dict) and v.get("key") for v in variables):
            raise HTTPError(400, {"error": "variables is invalid"})
        minimum = project["settings"]["ci_pipeline_variables_minimum_override_role"]
        if variables and (minimum == "no_one_allowed" or
                          ROLES.get(auth.get("role", "maintainer"), 0) < ROLES[minimum]):
            raise HTTPError(400, {"message": {"base": ["Insufficient permissions to set pipeline variables"]}})
        now = _now()
        pid_ = self.fake.next_id()
        pipeline = {"id": pid_, "iid": len(project["pipelines"]) + 1, "project_id": project["id"],
                    "sha": hashlib.sha1(f"{ref}".encode()).hexdigest(), "ref": ref, "status": "created",
                    "source": "api", "created_at": now, "updated_at": now, "tag": False, "yaml_errors": None,
                    "before_sha": "0" * 40, "user": self.fake.author(), "started_at": None, "finished_at": None,
                    "committed_at": None, "duration": None, "queued_duration": None, "coverage": None,
                    "detailed_status": {"text": "created", "label": "created", "group": "created"},
                    "web_url": f"{self.fake.url}/{project['path_with_namespace']}/-/pipelines/{pid_}"}
        project["pipelines"].append(dict(pipeline, variables=[
            {"key": v["key"], "value": str(v.get("value", "")), "variable_type": v.get("variable_type", "env_var")}
            for v in variables]))
        return 201, {}, pipeline
