"""Merge requests and their notes; commit discussions (notes on a commit)."""
from __future__ import annotations

import secrets
from typing import Any, ClassVar

from .base import Area, Route
from .http import READ, WRITE, HTTPError, Request, not_found
from .http import now as _now


class Notes(Area):
    """GET /projects/:id/merge_requests/:iid, GET POST .../notes (sort/order_by, pagination), GET PUT
    .../notes/:note_id; GET POST /projects/:id/repository/commits/:sha/discussions, PUT
    .../discussions/:discussion_id/notes/:note_id."""

    STATE: ClassVar[tuple[str, ...]] = ('notes', 'discussions')

    def __init__(self, fake: Any):
        super().__init__(fake)
        self.notes: dict[str, list[dict[str, Any]]] = {}
        self.discussions: dict[str, list[dict[str, Any]]] = {}

    def routes(self) -> list[Route]:
        pid = r"/projects/(?P<pid>[^/]+)"
        return [
            (pid + r"/merge_requests/(?P<iid>\d+)", {"GET": self.get_mr}, "mr"),
            (pid + r"/merge_requests/(?P<iid>\d+)/notes", {"GET": self.list_mr_notes, "POST": self.create_mr_note}, "mr_notes"),
            (pid + r"/merge_requests/(?P<iid>\d+)/notes/(?P<nid>\d+)", {"GET": self.get_mr_note, "PUT": self.update_mr_note}, "mr_note"),
            (pid + r"/repository/commits/(?P<sha>[0-9a-fA-F]{7,64})/discussions", {"GET": self.list_commit_discussions, "POST": self.create_commit_discussion}, "commit_discussions"),
            (pid + r"/repository/commits/(?P<sha>[0-9a-fA-F]{7,64})/discussions/(?P<did>[0-9a-f]+)/notes/(?P<nid>\d+)", {"PUT": self.update_commit_note}, "commit_discussion_note"),
        ]

    def dump(self) -> dict[str, Any]:
        return {"notes": self.notes, "discussions": self.discussions}

    def _note(self, project: dict[str, Any], body: str, noteable_type: str, noteable_id: Any,
              noteable_iid: Any) -> dict[str, Any]:
        now = _now()
        return {"id": self.fake.next_id(), "type": None if noteable_type == "MergeRequest" else "DiscussionNote",
                "body": body, "attachment": None, "author": self.fake.author(), "created_at": now,
                "updated_at": now, "system": False, "noteable_id": noteable_id,
                "noteable_type": noteable_type, "project_id": project["id"], "resolvable": False,
                "confidential": False, "internal": False, "noteable_iid": noteable_iid,
                "commands_changes": {}}

    def _mr(self, project: dict[str, Any], iid: str) -> int:
        if int(iid) not in project["mrs"]:
            raise not_found("Merge Request")
        return int(iid)

    def get_mr(self, req: Request, entry: dict[str, Any], pid: str, iid: str) -> Any:
        project = self.fake.find_project(pid, self.fake.auth(req, entry, READ))
        i = self._mr(project, iid)
        return 200, {}, {"id": project["id"] * 1000 + i, "iid": i, "project_id": project["id"],
                         "title": f"MR !{i}", "state": "opened", "web_url":
                         f"{self.fake.url}/{project['path_with_namespace']}/-/merge_requests/{i}"}

    def list_mr_notes(self, req: Request, entry: dict[str, Any], pid: str, iid: str) -> Any:
        project = self.fake.find_project(pid, self.fake.auth(req, entry, READ))
        i = self._mr(project, iid)
        notes = list(self.notes.get(f"{project['id']}!{i}", []))
        order = req.query.get("order_by", "created_at")
        if order not in ("created_at", "updated_at"):
            raise HTTPError(400, {"error": "order_by does not have a valid value"})
        notes.sort(key=lambda n: (n[order], n["id"]), reverse=req.query.get("sort", "desc") == "desc")
        return self.fake.paginate(req, notes)

    def create_mr_note(self, req: Request, entry: dict[str, Any], pid: str, iid: str) -> Any:
        project = self.fake.find_project(pid, self.fake.auth(req, entry, WRITE))
        i = self._mr(project, iid)
        body = req.json().get("body")
        if not body:
            raise HTTPError(400, {"error": "body is missing"})
        note = self._note(project, body, "MergeRequest", project["id"] * 1000 + i, i)
        self.notes.setdefault(f"{project['id']}!{i}", []).append(note)
        return 201, {}, note

    def _find_mr_note(self, project: dict[str, Any], iid: str, nid: str) -> dict[str, Any]:
        i = self._mr(project, iid)
        note = next((n for n in self.notes.get(f"{project['id']}!{i}", []) if n["id"] == int(nid)), None)
        if not note:
            raise not_found("Note")
        return note

    def get_mr_note(self, req: Request, entry: dict[str, Any], pid: str, iid: str, nid: str) -> Any:
        project = self.fake.find_project(pid, self.fake.auth(req, entry, READ))
        return 200, {}, self._find_mr_note(project, iid, nid)

    def update_mr_note(self, req: Request, entry: dict[str, Any], pid: str, iid: str, nid: str) -> Any:
        project = self.fake.find_project(pid, self.fake.auth(req, entry, WRITE))
        note = self._find_mr_note(project, iid, nid)
        body = req.json().get("body")
        if not body:
            raise HTTPError(400, {"error": "body is missing"})
        note["body"], note["updated_at"] = body, _now()
        return 200, {}, note

    def _commit(self, project: dict[str, Any], sha: str) -> str:
        match = [c for c in project["commits"] if c.startswith(sha.lower())]
        if not match:
            raise not_found("Commit")
        return match[0]

    def list_commit_discussions(self, req: Request, entry: dict[str, Any], pid: str, sha: str) -> Any:
        project = self.fake.find_project(pid, self.fake.auth(req, entry, READ))
        full = self._commit(project, sha)
        return self.fake.paginate(req, self.discussions.get(f"{project['id']}@{full}", []))

    def create_commit_discussion(self, req: Request, entry: dict[str, Any], pid: str, sha: str) -> Any:
        project = self.fake.find_project(pid, self.fake.auth(req, entry, WRITE))
        full = self._commit(project, sha)
        body = req.json().get("body")
        if not body:
            raise HTTPError(400, {"error": "body is missing"})
        note = self._note(project, body, "Commit", None, None)
        disc = {"id": secrets.token_hex(20), "individual_note": False, "notes": [note]}
        self.discussions.setdefault(f"{project['id']}@{full}", []).append(disc)
        return 201, {}, disc

    def update_commit_note(self, req: Request, entry: dict[str, Any], pid: str, sha: str, did: str,
                           nid: str) -> Any:
        project = self.fake.find_project(pid, self.fake.auth(req, entry, WRITE))
        full = self._commit(project, sha)
        disc = next((d for d in self.discussions.get(f"{project['id']}@{full}", []) if d["id"] == did), None)
        note = next((n for n in (disc or {}).get("notes", []) if n["id"] == int(nid)), None)
        if not note:
            raise not_found("Note")
        body = req.json().get("body")
        if not body:
            raise HTTPError(400, {"error": "body is missing"})
        note["body"], note["updated_at"] = body, _now()
        return 200, {}, note
