"""The evidence a reviewer sees: ONE note per model on the merge request (or on the commit).

The note starts with a hidden marker `<!-- modelci-report:<model name> -->`. Each pipeline looks for
a note carrying the marker (all pages of the MR's notes) and updates it in place; only the first
pipeline creates it. Without a merge request the note goes on the commit (CI_COMMIT_SHA) as a commit
thread (discussions API): GitLab's older commit-comments API cannot edit a comment, the discussions
API can, and both show on the commit page.

The gate plot is uploaded through the project uploads API and embedded with the markdown GitLab
returns. Needs a token with the `api` scope (CI_JOB_TOKEN cannot write notes).
"""
from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

from . import artifact, gate, log, settings
from .errors import ModelCIError
from .gitlab_api import SCOPE_API, GitLabClient

MARKER_PREFIX = "<!-- modelci-report:"


def marker(model_name: str) -> str:
    return f"{MARKER_PREFIX}{model_name} -->"


def note_body(verdict: dict[str, Any], image_markdown: str | None = None) -> str:
    name = (verdict.get("model") or {}).get("name") or "model"
    ctx = verdict.get("pipeline") or {}
    lines = [marker(name), gate.summary_markdown(verdict, image_markdown)]
    footer = []
    pipeline = settings.env("CI_PIPELINE_URL") or ctx.get("CI_PIPELINE_URL")
    commit = settings.env("CI_COMMIT_SHA") or ctx.get("CI_COMMIT_SHA")
    if pipeline:
        footer.append(f"[pipeline]({pipeline})")
    if commit:
        footer.append(f"commit {commit[:8]}")
    footer.append(f"updated {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}")
    lines.append("<sub>" + " · ".join(footer) + " · this note is updated in place by modelci</sub>")
    return "\n".join(lines) + "\n"


def upload_image(client: GitLabClient, path: str | os.PathLike[str]) -> str:
    """Upload a file through POST /projects/:id/uploads; returns the markdown to embed it."""
    path = Path(path)
    # POST /projects/:id/uploads, with the id URL-encoded (python-gitlab's Project.upload does not
    # encode a group/project path id)
    url = f"/projects/{quote(str(client.project_id), safe='')}/uploads"
    with client.errors(f"uploading {path.name} to the project", SCOPE_API):
        result = client.gl.http_post(url, files={"file": (path.name, path.read_bytes())})
    markdown = result.get("markdown") if isinstance(result, dict) else None
    if not markdown:
        raise ModelCIError(f"GitLab {client.url}: the uploads API returned no markdown for {path.name}")
    return markdown


def upsert_mr_note(client: GitLabClient, mr_iid: int | str, body: str, mark: str) -> dict[str, Any]:
    mr = client.project.mergerequests.get(int(mr_iid), lazy=True)
    with client.errors(f"reading the notes of merge request !{mr_iid}", SCOPE_API):
        existing = None
        for note in mr.notes.list(iterator=True, per_page=100, sort="asc", order_by="created_at"):
            if mark in (note.attributes.get("body") or "") and not note.attributes.get("system"):
                existing = note.attributes["id"]
                break
    if existing is None:
        with client.errors(f"creating a note on merge request !{mr_iid}", SCOPE_API):
            note = mr.notes.create({"body": body})
        return {"target": "merge_request", "iid": int(mr_iid), "action": "created",
                "note_id": note.attributes["id"]}
    with client.errors(f"updating note {existing} on merge request !{mr_iid}", SCOPE_API):
        mr.notes.update(existing, {"body": body})
    return {"target": "merge_request", "iid": int(mr_iid), "action": "updated", "note_id": existing}


def upsert_commit_note(client: GitLabClient, sha: str, body: str, mark: str) -> dict[str, Any]:
    commit = client.project.commits.get(sha, lazy=True)
    with client.errors(f"reading the threads of commit {sha[:8]}", SCOPE_API):
        found = None
        for disc in commit.discussions.list(iterator=True, per_page=100):
            notes = disc.attributes.get("notes") or []
            if notes and mark in (notes[0].get("body") or ""):
                found = (disc, notes[0]["id"])
                break
    if found is None:
        with client.errors(f"creating a thread on commit {sha[:8]}", SCOPE_API):
            disc = commit.discussions.create({"body": body})
        return {"target": "commit", "sha": sha, "action": "created",
                "note_id": (disc.attributes.get("notes") or [{}])[0].get("id"),
                "discussion_id": disc.attributes.get("id")}
    disc, note_id = found
    with client.errors(f"updating the modelci thread on commit {sha[:8]}", SCOPE_API):
        disc.notes.update(note_id, {"body": body})
    return {"target": "commit", "sha": sha, "action": "updated", "note_id": note_id,
            "discussion_id": disc.attributes.get("id")}


def post_report(client: GitLabClient, gate_dir: str | os.PathLike[str], *, mr_iid: str | None = None,
                commit_sha: str | None = None, plot: bool = True) -> dict[str, Any]:
    gate_dir = Path(gate_dir)
    verdict = artifact.read_json(gate_dir / "verdict.json", "gate verdict (verdict.json)")
    if not isinstance(verdict, dict) or verdict.get("schema") != gate.VERDICT_SCHEMA:
        raise ModelCIError(f"{gate_dir}/verdict.json: not a modelci gate verdict; run `modelci gate` first")
    if not mr_iid and not commit_sha:
        raise ModelCIError("report: neither CI_MERGE_REQUEST_IID nor CI_COMMIT_SHA is set; pass --mr or "
                           "--commit")
    if mr_iid is not None and not str(mr_iid).isdigit():
        raise ModelCIError(f"report: merge request iid {mr_iid!r} is not a number")
    image = None
    png = gate_dir / "gate.png"
    if plot and png.exists():
        image = upload_image(client, png)
    elif plot:
        log.warn(f"report: {png} not found; the note has no plot")
    name = (verdict.get("model") or {}).get("name") or "model"
    body = note_body(verdict, image)
    mark = marker(name)
    if mr_iid:
        result = upsert_mr_note(client, mr_iid, body, mark)
    else:
        result = upsert_commit_note(client, str(commit_sha), body, mark)
    result.update({"verdict": verdict.get("verdict"), "image": image})
    return result
