"""The fake GitLab's extension point: a new API area is one Area subclass added to the list, and gets
the core's strictness (auth, 405, request log, state dump) for free."""
from __future__ import annotations

from typing import Any

import requests

from fakegitlab import FakeGitLab
from fakegitlab.areas import AREAS
from fakegitlab.base import Area
from fakegitlab.http import WRITE


class Echo(Area):
    STATE = ("echoes",)

    def __init__(self, fake: Any):
        super().__init__(fake)
        self.echoes: list[dict[str, Any]] = []

    def routes(self):
        return [(r"/projects/(?P<pid>[^/]+)/echo", {"POST": self.echo}, "echo")]

    def echo(self, req, entry, pid):
        project = self.fake.find_project(pid, self.fake.auth(req, entry, WRITE))
        self.echoes.append({"project": project["id"], **req.json()})
        return 201, {}, {"ok": True}

    def dump(self):
        return {"echoes": self.echoes}


def test_a_new_area_is_one_class_in_the_list():
    fake = FakeGitLab(areas=[*AREAS, Echo])
    fake.start()
    try:
        url = fake.api_url + "/projects/42/echo"
        assert requests.post(url, json={"x": 1}, headers={"PRIVATE-TOKEN": "glpat-test-api-token"}).status_code == 201
        assert requests.post(url, json={"x": 2}).status_code == 401
        assert requests.get(url, headers={"PRIVATE-TOKEN": "glpat-test-api-token"}).status_code == 405
        assert requests.post(fake.api_url + "/projects/99/echo", json={},
                             headers={"PRIVATE-TOKEN": "glpat-test-api-token"}).status_code == 404
        assert fake.echoes == [{"project": 42, "x": 1}]
        assert fake.dump()["echoes"] == [{"project": 42, "x": 1}]
        assert [c["status"] for c in fake.calls(route="echo")] == [201, 401, 405, 404]
    finally:
        fake.stop()


def test_every_area_route_is_reachable_and_named_once():
    fake = FakeGitLab()
    names = [name for _, _, name in fake.routes]
    assert len(names) == len(set(names))
    assert {type(a).__name__ for a in fake.areas} == {cls.__name__ for cls in AREAS}
