"""The interface of one API area of the fake (see fakegitlab/__init__.py for how to add one)."""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from .http import API

if TYPE_CHECKING:
    from .server import FakeGitLab

Route = tuple[str, dict[str, Callable[..., Any]], str]  # (path pattern under /api/v4, {method: handler}, name)


class Area:
    """One API area: its routes, its state, and its part of the state dump.

    - `routes()` lists (pattern, {METHOD: handler}, route name); a handler is called as
      `handler(req, entry, **path_groups)` and returns (status, headers, JSON-able payload or bytes),
      or raises HTTPError.
    - `STATE` names attributes of the area that tests read on the fake itself (`fake.notes`).
    - `project_state()` adds keys to every project dict (`project["variables"]`).
    - `dump()` / `dump_project(project)` contribute to `fake.dump()` (the /__fake__/state document).
    The fake serialises requests (one lock), so handlers need no locking of their own.
    """

    STATE: ClassVar[tuple[str, ...]] = ()
    PREFIX: ClassVar[str] = API  # the routes' path prefix ("" for GitLab's endpoints outside the API)

    def __init__(self, fake: FakeGitLab):
        self.fake = fake

    def routes(self) -> list[Route]:
        return []

    def project_state(self) -> dict[str, Any]:
        return {}

    def dump(self) -> dict[str, Any]:
        return {}

    def dump_project(self, project: dict[str, Any]) -> dict[str, Any]:
        return {}
