"""Issues API (project issues and their notes), as the drift monitor uses it."""
from __future__ import annotations

from typing import Any, ClassVar

from .base import Area, Route
from .http import READ, WRITE, HTTPError, Request, not_found
from .http import now as _now

STATES = ("opened", "closed", "all")


def _labels(value: Any) -> list[str]:
    """GitLab takes labels as a comma-separated string or an array."""
    items = value if isinstance(value, list) else str(value or "").split(",")
    out: list[str] = []
    for item in items:
        label = str(item).strip()
        if label and label not in out:
            out.append(label)
    return out


class Issues(Area):
    """GET POST /projects/:id/issues (state/labels filters, order_by/sort, pagination),
    GET PUT /projects/:id/issues/:issue_iid (title, description, labels, add_labels, remove_labels,
    state_event close|reopen), GET POST /projects/:id/issues/:issue_iid/notes."""

    STATE: ClassVar[tuple[str, ...]] = ("issue_notes",)

    def __init__(self, fake: Any):
        super().__init__(fake)
        self.issue_notes: dict[str, list[dict[str, Any]]] = {}

    def routes(self) -> list[Route]:
        pid = r"/projects/(?P<pid>[^/]+)"
        return [
            (pid + r"/issues", {"GET": self.list_issues, "POST": self.create_issue}, "issues"),
            (pid + r"/issues/(?P<iid>\d+)", {"GET": self.get_issue, "PUT": self.update_issue}, "issue"),
            (pid + r"/issues/(?P<iid>\d+)/notes", {"GET": self.list_notes, "POST": self.create_note}, "issue_notes"),
        ]

    def project_state(self) -> dict[str, Any]:
        return {"issues": []}

    def dump(self) -> dict[str, Any]:
        return {"issue_notes": self.issue_notes}

    def dump_project(self, project: dict[str, Any]) -> dict[str, Any]:
        return {"issues": project["issues"]}

    def _find(self, project: dict[str, Any], iid: str) -> dict[str, Any]:
        issue = next((i for i in project["issues"] if i["iid"] == int(iid)), None)
        if issue is None:
            raise not_found("Issue")
        return issue

    def list_issues(self, req: Request, entry: dict[str, Any], pid: str) -> Any:
        project = self.fake.find_project(pid, self.fake.auth(req, entry, READ))
        state = req.query.get("state", "all")
        if state not in STATES:
            raise HTTPError(400, {"error": "state does not have a valid value"})
        items = [i for i in project["issues"] if state == "all" or i["state"] == state]
        wanted = _labels(req.query.get("labels"))
        if wanted:
            items = [i for i in items if all(label in i["labels"] for label in wanted)]
        order = req.query.get("order_by", "created_at")
        if order not in ("created_at", "updated_at", "title"):
            raise HTTPError(400, {"error": "order_by does not have a valid value"})
        sort = req.query.get("sort", "desc")
        if sort not in ("asc", "desc"):
            raise HTTPError(400, {"error": "sort does not have a valid value"})
        items = sorted(items, key=lambda i: (i[order], i["id"]), reverse=sort == "desc")
        return self.fake.paginate(req, items)

    def get_issue(self, req: Request, entry: dict[str, Any], pid: str, iid: str) -> Any:
        project = self.fake.find_project(pid, self.fake.auth(req, entry, READ))
        return 200, {}, self._find(project, iid)

    def create_issue(self, req: Request, entry: dict[str, Any], pid: str) -> Any:
        project = self.fake.find_project(pid, self.fake.auth(req, entry, WRITE))
        body = req.json()
        if not body.get("title"):
            raise HTTPError(400, {"error": "title is missing"})
        now, iid = _now(), len(project["issues"]) + 1
        issue = {"id": self.fake.next_id(), "iid": iid, "project_id": project["id"], "title": body["title"],
                 "description": body.get("description") or None, "state": "opened", "created_at": now,
                 "updated_at": now, "closed_at": None, "closed_by": None, "labels": _labels(body.get("labels")),
                 "milestone": None, "assignees": [], "author": self.fake.author(), "type": "ISSUE",
                 "user_notes_count": 0, "confidential": False,
                 "web_url": f"{self.fake.url}/{project['path_with_namespace']}/-/issues/{iid}",
                 "references": {"short": f"#{iid}", "full": f"{project['path_with_namespace']}#{iid}"}}
        project["issues"].append(issue)
        return 201, {}, issue

    def update_issue(self, req: Request, entry: dict[str, Any], pid: str, iid: str) -> Any:
        project = self.fake.find_project(pid, self.fake.auth(req, entry, WRITE, min_role="reporter"))
        issue = self._find(project, iid)
        body = req.json()
        known = ("title", "description", "labels", "add_labels", "remove_labels", "state_event")
        if not any(k in body for k in known):
            raise HTTPError(400, {"error": ", ".join(known) + " are missing, at least one parameter must be "
                                                              "provided"})
        event = body.get("state_event")
        if event is not None and event not in ("close", "reopen"):
            raise HTTPError(400, {"error": "state_event does not have a valid value"})
        if "title" in body and not body["title"]:
            raise HTTPError(400, {"message": {"title": ["can't be blank"]}})
        for key in ("title", "description"):
            if key in body:
                issue[key] = body[key]
        if "labels" in body:
            issue["labels"] = _labels(body["labels"])
        issue["labels"] += [x for x in _labels(body.get("add_labels")) if x not in issue["labels"]]
        issue["labels"] = [x for x in issue["labels"] if x not in _labels(body.get("remove_labels"))]
        now = _now()
        if event == "close" and issue["state"] == "opened":
            issue.update(state="closed", closed_at=now, closed_by=self.fake.author())
        elif event == "reopen" and issue["state"] == "closed":
            issue.update(state="opened", closed_at=None, closed_by=None)
        issue["updated_at"] = now
        return 200, {}, issue

    def list_notes(self, req: Request, entry: dict[str, Any], pid: str, iid: str) -> Any:
        project = self.fake.find_project(pid, self.fake.auth(req, entry, READ))
        issue = self._find(project, iid)
        notes = sorted(self.issue_notes.get(f"{project['id']}#{issue['iid']}", []),
                       key=lambda n: (n["created_at"], n["id"]), reverse=req.query.get("sort", "desc") == "desc")
        return self.fake.paginate(req, notes)

    def create_note(self, req: Request, entry: dict[str, Any], pid: str, iid: str) -> Any:
        project = self.fake.find_project(pid, self.fake.auth(req, entry, WRITE))
        issue = self._find(project, iid)
        body = req.json().get("body")
        if not body:
            raise HTTPError(400, {"error": "body is missing"})
        now = _now()
        note = {"id": self.fake.next_id(), "type": None, "body": body, "attachment": None,
                "author": self.fake.author(), "created_at": now, "updated_at": now, "system": False,
                "noteable_id": issue["id"], "noteable_type": "Issue", "noteable_iid": issue["iid"],
                "project_id": project["id"], "resolvable": False, "confidential": False, "internal": False}
        self.issue_notes.setdefault(f"{project['id']}#{issue['iid']}", []).append(note)
        issue["user_notes_count"] += 1
        return 201, {}, note
