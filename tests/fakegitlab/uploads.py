"""Project uploads (markdown attachments such as the gate plot)."""
from __future__ import annotations

import hashlib
import os
import secrets
from typing import Any, ClassVar

from .base import Area, Route
from .http import WRITE, HTTPError, Request


class Uploads(Area):
    """POST /projects/:id/uploads (multipart `file`)."""

    STATE: ClassVar[tuple[str, ...]] = ('uploads',)

    def __init__(self, fake: Any):
        super().__init__(fake)
        self.uploads: list[dict[str, Any]] = []

    def routes(self) -> list[Route]:
        pid = r"/projects/(?P<pid>[^/]+)"
        return [
            (pid + r"/uploads", {"POST": self.create_upload}, "uploads"),
        ]

    def dump(self) -> dict[str, Any]:
        return {"uploads": self.uploads}

    def create_upload(self, req: Request, entry: dict[str, Any], pid: str) -> Any:
        project = self.fake.find_project(pid, self.fake.auth(req, entry, WRITE))
        parts = req.multipart()
        if "file" not in parts or not parts["file"][0]:
            raise HTTPError(400, {"error": "file is missing"})
        filename, data = parts["file"]
        filename = os.path.basename(filename)
        secret = secrets.token_hex(16)
        alt = filename.rsplit(".", 1)[0]
        upload = {"id": self.fake.next_id(), "alt": alt, "url": f"/uploads/{secret}/{filename}",
                  "full_path": f"/-/project/{project['id']}/uploads/{secret}/{filename}",
                  "markdown": f"![{alt}](/uploads/{secret}/{filename})"}
        self.uploads.append(dict(upload, size=len(data), sha256=hashlib.sha256(data).hexdigest(),
                                 project_id=project["id"]))
        entry["bytes"] = len(data)
        return 201, {}, upload
