"""Projects API: GET a project, PUT its CI/CD settings."""
from __future__ import annotations

from typing import Any

from .base import Area, Route
from .http import READ, WRITE, HTTPError, Request, parse_bool


class Projects(Area):
    """GET /projects/:id, PUT /projects/:id (projects API edit: CI/CD settings)."""

    def routes(self) -> list[Route]:
        pid = r"/projects/(?P<pid>[^/]+)"
        return [
            (pid + r"", {"GET": self.get_project, "PUT": self.edit_project}, "project"),
        ]

    def project_state(self) -> dict[str, Any]:
        return {"settings": {"ci_forward_deployment_enabled": False,
                             "ci_forward_deployment_rollback_allowed": False,
                             "restrict_user_defined_variables": False,
                             "ci_pipeline_variables_minimum_override_role": "developer"}}

    def dump_project(self, project: dict[str, Any]) -> dict[str, Any]:
        return {"settings": dict(project["settings"])}

    def get_project(self, req: Request, entry: dict[str, Any], pid: str) -> Any:
        auth = self.fake.auth(req, entry, READ)
        project = self.fake.find_project(pid, auth)
        return 200, {}, self.fake._project_json(project, auth)

    def edit_project(self, req: Request, entry: dict[str, Any], pid: str) -> Any:
        auth = self.fake.auth(req, entry, WRITE, min_role="maintainer")
        project = self.fake.find_project(pid, auth)
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
                project["settings"][key] = parse_bool(given[key], key)
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
        return 200, {}, self.fake._project_json(project, auth)
