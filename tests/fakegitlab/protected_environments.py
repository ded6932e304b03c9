"""Protected environments API (Premium+; 404 on a "free" project)."""
from __future__ import annotations

from typing import Any, ClassVar

from .base import Area, Route
from .http import ROLES, WRITE, HTTPError, Request, not_found, parse_bool


class ProtectedEnvironments(Area):
    """GET POST /projects/:id/protected_environments, GET PUT DELETE .../protected_environments/:name
    (deploy_access_levels, approval_rules)."""

    LEVELS: ClassVar[dict[int, str]] = {30: "Developers + Maintainers", 40: "Maintainers", 60: "Admins"}

    def routes(self) -> list[Route]:
        pid = r"/projects/(?P<pid>[^/]+)"
        return [
            (pid + r"/protected_environments/?", {"GET": self.list_protected_envs, "POST": self.protect_env}, "protected_environments"),
            (pid + r"/protected_environments/(?P<name>[^/]+)", {"GET": self.get_protected_env, "PUT": self.update_protected_env, "DELETE": self.unprotect_env}, "protected_environment"),
        ]

    def project_state(self) -> dict[str, Any]:
        return {"protected_environments": []}

    def dump_project(self, project: dict[str, Any]) -> dict[str, Any]:
        return {"protected_environments": project["protected_environments"]}

    def _pe_project(self, req: Request, entry: dict[str, Any], pid: str) -> dict[str, Any]:
        auth = self.fake.auth(req, entry, WRITE)
        project = self.fake.find_project(pid, dict(auth, role_ok=True))
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
        rule = {"id": self.fake.next_id(), "access_level": None, "user_id": None, "group_id": None,
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
                    raise not_found("Rule")
                if parse_bool(spec.get("_destroy", False), "_destroy"):
                    out.remove(found)
                elif approval and "required_approvals" in spec:
                    found["required_approvals"] = int(spec["required_approvals"])
            else:
                out.append(self._rule(spec, approval))
        return out

    def list_protected_envs(self, req: Request, entry: dict[str, Any], pid: str) -> Any:
        project = self._pe_project(req, entry, pid)
        return self.fake.paginate(req, project["protected_environments"])

    def _find_pe(self, project: dict[str, Any], name: str) -> dict[str, Any]:
        pe = next((p for p in project["protected_environments"] if p["name"] == name), None)
        if not pe:
            raise not_found("Protected environment")
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
