"""Prepare a GitLab project for modelci, idempotently (`modelci setup`).

Items, in order (each reported as created / updated / unchanged / unsupported, or would-create /
would-update in a dry run):
  project settings      "prevent outdated deployment jobs", "allow job retries for rollback deployments"
                        and pipeline variables limited to Maintainer or stricter (they outrank job variables)
  environment           the production environment exists (environments API)
  protected environment who may deploy to it (protected environments API, Premium+)
  approval rules        deployment approvals (Premium+; skipped with a message where unsupported)
  variables             project CI/CD variables (values never printed); MODELCI_GITLAB_TOKEN scoped to TOKEN_SCOPES
  schedule              the monitoring pipeline schedule (no schedule variable: the monitor job runs in
                        every schedule, and pipeline variables may be blocked)

Each item is read first and written only when it differs; a dry run only reads. A write token found
under another environment scope is reported ("exposed"), never deleted. Running it twice
changes nothing the second time. The token must belong to a Maintainer (the settings, protected environments and
variables APIs need it).
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from . import gitlab_api, log
from .errors import ModelCIError

ACCESS_LEVELS = {"developer": 30, "developers": 30, "maintainer": 40, "maintainers": 40, "admin": 60,
                 "admins": 60}
LEVEL_NAMES = {30: "developers", 40: "maintainers", 60: "admins"}
KEY_RE = re.compile(r"^[A-Za-z0-9_]{1,255}$")
MASKABLE_RE = re.compile(r"^[\x21-\x7e]{8,}$")
SCHEDULE_DESCRIPTION = "modelci: drift monitor"
MAINTAINER = 40
# Minimum role to run a pipeline with variables, loosest first (GitLab's projects API).
OVERRIDE_ROLES = ("developer", "maintainer", "owner", "no_one_allowed")
MIN_OVERRIDE_ROLE = "maintainer"
# MODELCI_GITLAB_TOKEN reaches only the publish job and the scheduled monitor, which load no model
# (docs/design.md#evaluation-set-and-champion).
TOKEN_KEY = "MODELCI_GITLAB_TOKEN"
TOKEN_SCOPES = ("modelci/publish", "modelci/monitor")


@dataclass(frozen=True)
class Who:
    """An allowed deployer or approver: exactly one of access_level, user_id, group_id."""
    access_level: int | None = None
    user_id: int | None = None
    group_id: int | None = None

    def api(self) -> dict[str, int]:
        return {k: v for k, v in (("access_level", self.access_level), ("user_id", self.user_id),
                                  ("group_id", self.group_id)) if v is not None}

    def __str__(self) -> str:
        if self.access_level is not None:
            return LEVEL_NAMES.get(self.access_level, f"access level {self.access_level}")
        return f"user {self.user_id}" if self.user_id is not None else f"group {self.group_id}"


def parse_who(text: str, flag: str) -> Who:
    """maintainer | developer | admin | access:40 | user:ID | group:ID"""
    t = text.strip().lower()
    if t in ACCESS_LEVELS:
        return Who(access_level=ACCESS_LEVELS[t])
    kind, _, value = t.partition(":")
    if kind in ("access", "user", "group") and value.isdigit():
        n = int(value)
        if kind == "access":
            if n not in LEVEL_NAMES:
                raise ModelCIError(f"{flag} {text!r}: access level must be 30, 40 or 60")
            return Who(access_level=n)
        return Who(user_id=n) if kind == "user" else Who(group_id=n)
    raise ModelCIError(f"{flag} {text!r}: expected maintainer, developer, admin, access:LEVEL, user:ID or "
                       f"group:ID (numeric ids, as in GitLab's protected environments API)")


@dataclass
class Variable:
    key: str
    value: str = field(repr=False)
    masked: bool = True
    protected: bool = True
    scope: str = "*"


def parse_variable(spec: str, environ: dict[str, str], *, masked: bool, protected: bool, scope: str) -> Variable:
    """KEY=VALUE, or KEY alone to take the value from the environment variable KEY (keeps it off the
    command line). The value is registered as a secret at once."""
    key, eq, value = spec.partition("=")
    key = key.strip()
    if not KEY_RE.match(key):
        raise ModelCIError(f"--variable {key!r}: a variable name has only letters, digits and '_' "
                           f"(1-255 characters); fix the name")
    if not eq:
        if key not in environ:
            raise ModelCIError(f"--variable {key}: no '=VALUE' and no environment variable {key} to take the "
                               f"value from; pass KEY=VALUE or export {key}")
        value = environ[key]
    log.add_secret(value)
    if masked and not MASKABLE_RE.match(value):
        raise ModelCIError(f"--variable {key}: GitLab can only mask a value of 8 or more printable ASCII "
                           f"characters without spaces; change the value or pass --no-mask")
    return Variable(key, value, masked, protected, scope)


@dataclass
class Plan:
    environment: str = "production"
    external_url: str | None = None
    deployers: list[Who] = field(default_factory=lambda: [Who(access_level=MAINTAINER)])
    approvals: int = 0
    approvers: list[Who] = field(default_factory=lambda: [Who(access_level=MAINTAINER)])
    variables: list[Variable] = field(default_factory=list)
    schedule: bool = True
    cron: str = "0 6 * * *"
    cron_timezone: str = "UTC"
    schedule_ref: str | None = None  # default: the project's default branch
    schedule_description: str = SCHEDULE_DESCRIPTION


class Setup:
    def __init__(self, client: gitlab_api.GitLabClient, plan: Plan, dry_run: bool = False):
        self.client = client
        self.plan = plan
        self.dry_run = dry_run
        self.items: list[dict[str, Any]] = []
        self.project_id = client.project_id
        self.project: Any = None

    # ---- plumbing ---------------------------------------------------------------------------------
    @contextmanager
    def api(self, action: str) -> Iterator[None]:
        import gitlab.exceptions as gexc

        with self.client.errors(action):
            try:
                yield
            except gexc.GitlabError as exc:
                if getattr(exc, "response_code", None) == 403 and "scope" not in str(
                        getattr(exc, "error_message", "")).lower():
                    raise ModelCIError(self._forbidden(action)) from None
                raise

    def _forbidden(self, action: str) -> str:
        return (f"GitLab {self.client.url}: 403 Forbidden while {action} in project {self.project_id}: the "
                f"token in {self.client.token_source} belongs to a user or bot without the Maintainer role "
                f"(project settings, protected environments and CI/CD variables need Maintainer); grant "
                f"the role or use a Maintainer's token with the `api` scope")

    def _record(self, item: str, action: str, **detail: Any) -> dict[str, Any]:
        if self.dry_run and action in ("created", "updated"):
            action = "would-" + action[:-1]
        entry = {"item": item, "action": action, **detail}
        self.items.append(entry)
        log.info(f"setup: {item}: {action}" + (f" ({detail['message']})" if detail.get("message") else ""))
        return entry

    def _write(self) -> bool:
        return not self.dry_run

    # ---- steps ------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        gl = self.client.gl
        with self.api("reading the project"):
            self.project = gl.projects.get(self.project_id)
        self._check_role()
        self.settings()
        self.environment()
        self.protect()
        self.variables()
        self.token_exposure()
        if self.plan.schedule:
            self.schedule()
        changed = [i["item"] for i in self.items if i["action"] in ("created", "updated", "would-create",
                                                                     "would-update")]
        return {"dry_run": self.dry_run, "project": self.project.attributes.get("path_with_namespace"),
                "project_id": self.project.attributes.get("id"), "changed": bool(changed),
                "summary": ("dry run: " if self.dry_run else "") + (
                    f"{len(changed)} item(s) " + ("to change" if self.dry_run else "changed")
                    if changed else "nothing to change, the project is already set up"),
                "items": self.items}

    def _check_role(self) -> None:
        perms = self.project.attributes.get("permissions") or {}
        levels = [((perms.get(k) or {}).get("access_level") or 0) for k in ("project_access", "group_access")]
        if perms and max(levels) < MAINTAINER:
            role = {10: "Guest", 20: "Reporter", 30: "Developer"}.get(max(levels), f"level {max(levels)}")
            raise ModelCIError(
                f"GitLab {self.client.url}: project {self.project_id}: the token in {self.client.token_source} "
                f"has the {role} role; `modelci setup` changes project settings, protected environments and "
                f"CI/CD variables, which need Maintainer; use a Maintainer's token with the `api` scope")

    def settings(self) -> None:
        attrs = self.project.attributes
        want: dict[str, Any] = {"ci_forward_deployment_enabled": True, "ci_forward_deployment_rollback_allowed": True}
        have = {k: attrs.get(k) for k in want}
        diff = {k: v for k, v in want.items() if have[k] is not v}
        # Pipeline variables: at least Maintainer (never loosen a stricter setting).
        if "restrict_user_defined_variables" in attrs:
            want["restrict_user_defined_variables"] = True
            if attrs["restrict_user_defined_variables"] is not True:
                diff["restrict_user_defined_variables"] = True
        role = attrs.get("ci_pipeline_variables_minimum_override_role")
        if role in OVERRIDE_ROLES:
            keep = OVERRIDE_ROLES.index(role) >= OVERRIDE_ROLES.index(MIN_OVERRIDE_ROLE)
            want["ci_pipeline_variables_minimum_override_role"] = role if keep else MIN_OVERRIDE_ROLE
            if not keep:
                diff["ci_pipeline_variables_minimum_override_role"] = MIN_OVERRIDE_ROLE
        minimum = want.get("ci_pipeline_variables_minimum_override_role") or (
            "maintainer" if want.get("restrict_user_defined_variables") else "unknown")
        if not diff:
            self._record("project settings", "unchanged", settings=want, pipeline_variables_minimum_role=minimum)
            return
        if self._write():
            with self.api("updating the project's CI/CD settings"):
                self.client.gl.projects.update(self.project.id, diff)
        self._record("project settings", "updated", settings=want, changed=sorted(diff),
                     pipeline_variables_minimum_role=minimum,
                     message=f"pipeline variables need the {minimum} role now")

    def environment(self) -> None:
        name = self.plan.environment
        proj = self.client.gl.projects.get(self.project.id, lazy=True)
        with self.api(f"looking up environment {name!r}"):
            found = [e for e in proj.environments.list(name=name, get_all=True) if e.name == name]
        if found:
            self._record(f"environment {name}", "unchanged", id=found[0].id)
            return
        data: dict[str, Any] = {"name": name}
        if self.plan.external_url:
            data["external_url"] = self.plan.external_url
        if name == "production":
            data["tier"] = "production"
        env_id = None
        if self._write():
            with self.api(f"creating environment {name!r}"):
                env_id = proj.environments.create(data).id
        self._record(f"environment {name}", "created", id=env_id)

    def _pe_path(self, name: str | None = None) -> str:
        from urllib.parse import quote

        base = f"/projects/{self.project.id}/protected_environments"
        return base if name is None else f"{base}/{quote(name, safe='')}"

    def protect(self) -> None:
        import gitlab.exceptions as gexc

        name = self.plan.environment
        item, aitem = f"protected environment {name}", f"deployment approvals {name}"
        gl = self.client.gl
        try:
            with self.client.errors("listing protected environments"):
                try:
                    current = gl.http_list(self._pe_path(), get_all=True)
                except gexc.GitlabError as exc:
                    if getattr(exc, "response_code", None) in (403, 404):
                        raise _Unsupported() from None
                    raise
        except _Unsupported:
            msg = ("this GitLab tier does not support protected environments or deployment approvals "
                   "(Premium or Ultimate); skipped: protect the production job another way (manual job, "
                   "protected branch)")
            log.warn(f"setup: {msg}")
            self._record(item, "unsupported", message=msg)
            if self.plan.approvals:
                self._record(aitem, "unsupported", message=msg)
            return
        pe = next((p for p in current if p.get("name") == name), None)
        want = set(self.plan.deployers)
        deployers = [str(w) for w in self.plan.deployers]
        if pe is None:
            if self._write():
                with self.api(f"protecting environment {name!r}"):
                    pe = gl.http_post(self._pe_path(), post_data={
                        "name": name, "deploy_access_levels": [w.api() for w in self.plan.deployers]})
            self._record(item, "created", deployers=deployers)
        else:
            have = {_who(r): r for r in pe.get("deploy_access_levels") or []}
            changes = [w.api() for w in want - set(have)] + \
                      [{"id": r["id"], "_destroy": True} for w, r in have.items() if w not in want]
            if not changes:
                self._record(item, "unchanged", deployers=deployers)
            else:
                if self._write():
                    with self.api(f"updating who may deploy to {name!r}"):
                        pe = gl.http_put(self._pe_path(name), post_data={"deploy_access_levels": changes})
                self._record(item, "updated", deployers=deployers)
        self.approvals(pe, aitem)

    def approvals(self, pe: dict[str, Any] | None, item: str) -> None:
        import gitlab.exceptions as gexc

        n = self.plan.approvals
        rules = list((pe or {}).get("approval_rules") or [])
        have = {_who(r): r for r in rules}
        want = {w: n for w in self.plan.approvers} if n > 0 else {}
        changes: list[dict[str, Any]] = []
        for w, count in want.items():
            r = have.get(w)
            if r is None:
                changes.append(dict(w.api(), required_approvals=count))
            elif int(r.get("required_approvals") or 0) != count:
                changes.append({"id": r["id"], "required_approvals": count})
        changes += [{"id": r["id"], "_destroy": True} for w, r in have.items() if w not in want]
        detail = {"required_approvals": n, "approvers": [str(w) for w in self.plan.approvers] if n else []}
        if not changes:
            if n or rules:
                self._record(item, "unchanged", **detail)
            return
        action = "created" if not rules else "updated"
        if self._write() and pe is not None:
            try:
                with self.client.errors(f"setting deployment approval rules on {self.plan.environment!r}"):
                    try:
                        self.client.gl.http_put(self._pe_path(self.plan.environment),
                                                post_data={"approval_rules": changes})
                    except gexc.GitlabError as exc:
                        if getattr(exc, "response_code", None) in (403, 404):
                            raise _Unsupported() from None
                        raise
            except _Unsupported:
                msg = ("this GitLab tier or version does not support deployment approval rules (Premium or "
                       "Ultimate, GitLab 15.4+); skipped, the environment stays protected without approvals")
                log.warn(f"setup: {msg}")
                self._record(item, "unsupported", message=msg)
                return
        self._record(item, action, **detail)

    def variables(self) -> None:
        import gitlab.exceptions as gexc

        proj = self.client.gl.projects.get(self.project.id, lazy=True)
        for var in scoped_variables(self.plan.variables):
            item = f"variable {var.key}" + (f" ({var.scope})" if var.scope != "*" else "")
            flags = {"masked": var.masked, "protected": var.protected, "environment_scope": var.scope}
            with self.api(f"reading CI/CD variable {var.key}"):
                try:
                    cur = proj.variables.get(var.key, filter={"environment_scope": var.scope}).attributes
                except gexc.GitlabGetError as exc:
                    if exc.response_code != 404:
                        raise
                    cur = None
            if cur is None:
                if self._write():
                    with self.api(f"creating CI/CD variable {var.key}"):
                        proj.variables.create({"key": var.key, "value": var.value, "masked": var.masked,
                                               "protected": var.protected, "environment_scope": var.scope,
                                               "variable_type": "env_var", "raw": True})
                self._record(item, "created", **flags)
                continue
            hidden = cur.get("value") is None
            diff = [k for k in ("masked", "protected") if bool(cur.get(k)) != getattr(var, k)]
            if not hidden and cur.get("value") != var.value:
                diff.append("value")
            if not diff:
                self._record(item, "unchanged", **flags,
                             **({"message": "hidden variable: its value cannot be read or compared"}
                                if hidden else {}))
                continue
            if self._write():
                with self.api(f"updating CI/CD variable {var.key}"):
                    proj.variables.update(var.key, {"value": var.value, "masked": var.masked,
                                                    "protected": var.protected,
                                                    "filter": {"environment_scope": var.scope}})
            self._record(item, "updated", changed=sorted(diff), **flags)

    def token_exposure(self) -> None:
        """Report MODELCI_GITLAB_TOKEN defined for any other scope (e.g. '*'): every job there sees it."""
        proj = self.client.gl.projects.get(self.project.id, lazy=True)
        with self.api("listing CI/CD variables"):
            found = [v.attributes for v in proj.variables.list(get_all=True)]
        for var in found:
            scope = var.get("environment_scope", "*")
            if var.get("key") == TOKEN_KEY and scope not in TOKEN_SCOPES:
                msg = (f"{TOKEN_KEY} is also defined for environment scope {scope!r}: jobs that load models "
                       f"can read it there; delete that one (Settings > CI/CD > Variables), keep the "
                       f"{', '.join(TOKEN_SCOPES)} ones")
                log.warn(f"setup: {msg}")
                self._record(f"variable {TOKEN_KEY} ({scope})", "exposed", message=msg)

    def schedule(self) -> None:
        p = self.plan
        proj = self.client.gl.projects.get(self.project.id, lazy=True)
        ref = p.schedule_ref or self.project.attributes.get("default_branch") or "main"
        want = {"description": p.schedule_description, "ref": ref, "cron": p.cron,
                "cron_timezone": p.cron_timezone, "active": True}
        item = "schedule monitor"
        detail = {"cron": p.cron, "cron_timezone": p.cron_timezone, "ref": ref}
        with self.api("listing pipeline schedules"):
            found = [s for s in proj.pipelineschedules.list(get_all=True)
                     if s.description == p.schedule_description]
        if not found:
            sid = None
            if self._write():
                with self.api("creating the monitoring pipeline schedule"):
                    sid = proj.pipelineschedules.create(want).id
            self._record(item, "created", id=sid, **detail)
            return
        if len(found) > 1:
            log.warn(f"setup: {len(found)} schedules are named {p.schedule_description!r}; using the first")
        with self.api("reading the monitoring pipeline schedule"):
            sched = proj.pipelineschedules.get(found[0].id)
        attrs = sched.attributes
        diff = {k: v for k, v in want.items()
                if (attrs.get(k).removeprefix("refs/heads/") if k == "ref" and isinstance(attrs.get(k), str)
                    else attrs.get(k)) != v}
        changed = sorted(diff)
        if not changed:
            self._record(item, "unchanged", id=sched.id, **detail)
            return
        if self._write():
            with self.api("updating the monitoring pipeline schedule"):
                proj.pipelineschedules.update(sched.id, diff)
        self._record(item, "updated", id=sched.id, changed=changed, **detail)


def scoped_variables(variables: list[Variable]) -> list[Variable]:
    """MODELCI_GITLAB_TOKEN becomes one variable per TOKEN_SCOPES entry, whatever scope was asked."""
    out: list[Variable] = []
    for var in variables:
        if var.key != TOKEN_KEY:
            out.append(var)
            continue
        if var.scope not in ("*", *TOKEN_SCOPES):
            log.warn(f"setup: {TOKEN_KEY} is always scoped to {', '.join(TOKEN_SCOPES)}, not {var.scope!r}")
        out.extend(Variable(var.key, var.value, var.masked, var.protected, scope) for scope in TOKEN_SCOPES)
    return out


class _Unsupported(Exception):
    pass


def _who(rule: dict[str, Any]) -> Who:
    return Who(access_level=rule.get("access_level") if rule.get("user_id") is None and
               rule.get("group_id") is None else None,
               user_id=rule.get("user_id"), group_id=rule.get("group_id"))


def run_setup(client: gitlab_api.GitLabClient, plan: Plan, dry_run: bool = False) -> dict[str, Any]:
    return Setup(client, plan, dry_run).run()
