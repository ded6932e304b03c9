"""What every API area of the fake shares: the request wrapper, the error type, GitLab's shapes of
scopes and roles, and small validators."""
from __future__ import annotations

import email.parser
import email.policy
import json
import re
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

API = "/api/v4"
READ = {"api", "read_api"}
WRITE = {"api"}
PKG_READ = {"api", "read_api", "read_package_registry"}
PKG_WRITE = {"api", "write_package_registry"}
ROLES = {"guest": 10, "reporter": 20, "developer": 30, "maintainer": 40, "owner": 50}
KEY_RE = re.compile(r"^[A-Za-z0-9_]{1,255}$")  # CI/CD variable keys (project and schedule variables)


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class HTTPError(Exception):
    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None):
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers or {}


def not_found(what: str) -> HTTPError:
    return HTTPError(404, {"message": f"404 {what} Not Found"})


def require_key_value(body: dict[str, Any]) -> None:
    """A CI/CD variable's `key` and `value` (project and schedule variables): both required, the key
    letters, digits and '_' only (400 otherwise, in GitLab's words)."""
    for field in ("key", "value"):
        if body.get(field) is None:
            raise HTTPError(400, {"error": f"{field} is missing"})
    if not KEY_RE.match(str(body["key"])):
        raise HTTPError(400, {"message": {"key": ["can contain only letters, digits and '_'."]}})


def parse_bool(value: Any, field: str) -> bool:
    """GitLab's boolean parameters: true/false/1/0 (400 otherwise)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
        return value.lower() in ("true", "1")
    raise HTTPError(400, {"error": f"{field} is invalid"})


class Request:
    def __init__(self, handler: BaseHTTPRequestHandler, method: str):
        self.handler = handler
        self.method = method
        split = urlsplit(handler.path)
        self.raw_path = split.path
        self.path = unquote(split.path)
        self.query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        self.headers = handler.headers
        length = int(handler.headers.get("Content-Length") or 0)
        self.body = handler.rfile.read(length) if length else b""

    def json(self) -> dict[str, Any]:
        ctype = self.headers.get("Content-Type", "")
        if not self.body:
            return {}
        if "application/json" in ctype:
            try:
                data = json.loads(self.body)
            except ValueError:
                raise HTTPError(400, {"error": "body is not valid JSON"}) from None
            return data if isinstance(data, dict) else {}
        if "application/x-www-form-urlencoded" in ctype:
            return {k: v[-1] for k, v in parse_qs(self.body.decode()).items()}
        return {}

    def multipart(self) -> dict[str, tuple[str | None, bytes]]:
        ctype = self.headers.get("Content-Type", "")
        if not ctype.startswith("multipart/form-data"):
            raise HTTPError(400, {"error": "file is missing"})
        msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {ctype}\r\n\r\n".encode() + self.body)
        parts: dict[str, tuple[str | None, bytes]] = {}
        for part in msg.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if name:
                parts[name] = (part.get_filename(), part.get_payload(decode=True) or b"")
        return parts
