"""Project-level CI/CD variables API."""
from __future__ import annotations

import re
from typing import Any

from .base import Area, Route
from .http import READ, HTTPError, Request, not_found, parse_bool, require_key_value


class Variables(Area):
    """GET POST /projects/:id/variables, GET PUT DELETE /projects/:id/variables/:key."""

    MASKABLE_RE = re.compile(r"^[\x21-\x7e]{8,}$")  # one line, no spaces, ASCII, 8+ characters

    def routes(self) -> list[Route]:
        pid = r"/projects/(?P<pid>[^/]+)"
        return [
            (pid + r"/variables", {"GET": self.list_variables, "POST": self.create_variable}, "variables"),
            (pid + r"/variables/(?P<key>[^/]+)", {"GET": self.get_variable, "PUT": self.update_variable, "DELETE": self.delete_variable}, "variable"),
        ]

    def project_state(self) -> dict[str, Any]:
        return {"variables": []}

    def dump_project(self, project: dict[str, Any]) -> dict[str, Any]:
        return {"variables": [dict(v, value="[hidden]") for v in project["variables"]]}

    def _var_json(self, var: dict[str, Any]) -> dict[str, Any]:
        out = dict(var)
        if var.get("hidden"):
            out["value"] = None
        return out

    def _find_var(self, project: dict[str, Any], key: str, scope: str | None) -> dict[str, Any]:
        found = [v for v in project["variables"] if v["key"] == key
                 and (scope is None or v["environment_scope"] == scope)]
        if not found:
            raise not_found("Variable")
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
        project = self.fake.admin(req, entry, pid, scopes=READ)
        status, headers, chunk = self.fake.paginate(req, project["variables"])
        return status, headers, [self._var_json(v) for v in chunk]

    def get_variable(self, req: Request, entry: dict[str, Any], pid: str, key: str) -> Any:
        project = self.fake.admin(req, entry, pid, scopes=READ)
        return 200, {}, self._var_json(self._find_var(project, key, req.query.get("filter[environment_scope]")))

    def create_variable(self, req: Request, entry: dict[str, Any], pid: str) -> Any:
        project = self.fake.admin(req, entry, pid)
        body = req.json()
        require_key_value(body)
        hidden = parse_bool(body.get("masked_and_hidden", False), "masked_and_hidden")
        var = {"variable_type": body.get("variable_type", "env_var"), "key": body["key"], "value": str(body["value"]),
               "protected": parse_bool(body.get("protected", False), "protected"),
               "masked": hidden or parse_bool(body.get("masked", False), "masked"), "hidden": hidden,
               "raw": parse_bool(body.get("raw", False), "raw"),
               "environment_scope": body.get("environment_scope") or "*", "description": body.get("description")}
        self._check_var(var)
        if any(v["key"] == var["key"] and v["environment_scope"] == var["environment_scope"]
               for v in project["variables"]):
            raise HTTPError(400, {"message": {"key": [f"({var['key']}) has already been taken"]}})
        project["variables"].append(var)
        return 201, {}, self._var_json(var)

    def update_variable(self, req: Request, entry: dict[str, Any], pid: str, key: str) -> Any:
        project = self.fake.admin(req, entry, pid)
        var = self._find_var(project, key, req.json().get("filter", {}).get("environment_scope")
                             if isinstance(req.json().get("filter"), dict) else None)
        body = req.json()
        new = dict(var)
        if "value" in body:
            new["value"] = str(body["value"])
        for field in ("protected", "masked", "raw"):
            if field in body:
                new[field] = parse_bool(body[field], field)
        for field in ("variable_type", "environment_scope", "description"):
            if field in body:
                new[field] = body[field]
        if var["hidden"] and not new["masked"]:
            raise HTTPError(400, {"message": {"masked": ["cannot be changed for a hidden variable"]}})
        self._check_var(new)
        var.update(new)
        return 200, {}, self._var_json(var)

    def delete_variable(self, req: Request, entry: dict[str, Any], pid: str, key: str) -> Any:
        project = self.fake.admin(req, entry, pid)
        project["variables"].remove(self._find_var(project, key, req.query.get("filter[environment_scope]")))
        return 204, {}, b""
