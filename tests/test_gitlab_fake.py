"""The fake GitLab itself: strict about auth, routes, methods and pagination (checked through
plain HTTP and through python-gitlab), and usable from another process."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import gitlab
import pytest
import requests

pytest_plugins = ["gitlab_fake"]  # the fake_gitlab fixture

TOKEN = {"PRIVATE-TOKEN": "glpat-test-api-token"}


def test_401_without_or_with_bad_token(fake_gitlab):
    url = fake_gitlab.api_url + "/projects/42/merge_requests/7/notes"
    r = requests.get(url)
    assert r.status_code == 401 and r.json() == {"message": "401 Unauthorized"}
    assert requests.get(url, headers={"PRIVATE-TOKEN": "nope"}).status_code == 401
    assert requests.get(url, headers={"Authorization": "Bearer nope"}).status_code == 401
    assert requests.get(url, headers=TOKEN).status_code == 200


def test_404_unknown_route_project_mr(fake_gitlab):
    api = fake_gitlab.api_url
    assert requests.get(api + "/projects/42/nothing-here", headers=TOKEN).status_code == 404
    assert requests.get(fake_gitlab.url + "/api/v3/projects/42", headers=TOKEN).status_code == 404
    r = requests.get(api + "/projects/41/merge_requests/7/notes", headers=TOKEN)
    assert r.status_code == 404 and r.json()["message"] == "404 Project Not Found"
    r = requests.get(api + "/projects/42/merge_requests/8/notes", headers=TOKEN)
    assert r.json()["message"] == "404 Merge Request Not Found"
    # the project path works URL-encoded, as GitLab documents
    assert requests.get(api + "/projects/group%2Fproject", headers=TOKEN).json()["id"] == 42
    # a token of a user who is not a member sees 404, not 403
    r = requests.get(api + "/projects/42", headers={"PRIVATE-TOKEN": "glpat-other-project"})
    assert r.status_code == 404


def test_405_wrong_method(fake_gitlab):
    r = requests.delete(fake_gitlab.api_url + "/projects/42/merge_requests/7/notes", headers=TOKEN)
    assert r.status_code == 405 and r.headers["Allow"] == "GET, POST"
    r = requests.post(fake_gitlab.api_url + "/projects/42/packages/generic/m/1.0.0/f.txt", headers=TOKEN)
    assert r.status_code == 405


def test_scopes_and_job_token(fake_gitlab):
    api = fake_gitlab.api_url
    r = requests.post(api + "/projects/42/merge_requests/7/notes", json={"body": "x"},
                      headers={"PRIVATE-TOKEN": "glpat-read-only"})
    assert r.status_code == 403 and r.json()["error"] == "insufficient_scope"
    assert "insufficient_scope" in r.headers["WWW-Authenticate"]
    job = {"JOB-TOKEN": "job-token-123"}
    put = requests.put(api + "/projects/42/packages/generic/m/1.0.0/f.txt", data=b"abc", headers=job)
    assert put.status_code == 201 and put.json() == {"message": "201 Created"}
    assert requests.get(api + "/projects/42/packages/generic/m/1.0.0/f.txt", headers=job).content == b"abc"
    # CI_JOB_TOKEN cannot write notes; a job token in PRIVATE-TOKEN is not a private token either
    assert requests.post(api + "/projects/42/merge_requests/7/notes", json={"body": "x"},
                         headers=job).status_code == 401
    assert requests.get(api + "/projects/42", headers={"PRIVATE-TOKEN": "job-token-123"}).status_code == 401
    r = requests.put(api + "/projects/42/packages/generic/m/1.0.0/g.txt", data=b"x",
                     headers={"PRIVATE-TOKEN": "glpat-reporter"})
    assert r.status_code == 403 and r.json()["message"] == "403 Forbidden"
    assert [e["auth"] for e in fake_gitlab.requests[:2]] == ["private", "job"]


def test_pagination_headers(fake_gitlab):
    api = fake_gitlab.api_url + "/projects/42/merge_requests/7/notes"
    for i in range(5):
        assert requests.post(api, json={"body": f"note {i}"}, headers=TOKEN).status_code == 201
    r = requests.get(api, params={"per_page": 2, "page": 2, "sort": "asc"}, headers=TOKEN)
    assert [n["body"] for n in r.json()] == ["note 2", "note 3"]
    h = r.headers
    assert (h["X-Page"], h["X-Per-Page"], h["X-Total"], h["X-Total-Pages"], h["X-Next-Page"],
            h["X-Prev-Page"]) == ("2", "2", "5", "3", "3", "1")
    assert set(r.links) == {"next", "prev", "first", "last"}
    last = requests.get(r.links["last"]["url"], headers=TOKEN)
    assert [n["body"] for n in last.json()] == ["note 4"] and last.headers["X-Next-Page"] == ""
    assert "next" not in last.links


def test_pagination_followed_to_the_end_by_python_gitlab(fake_gitlab):
    gl = gitlab.Gitlab(fake_gitlab.url, private_token="glpat-test-api-token")
    mr = gl.projects.get(42, lazy=True).mergerequests.get(7, lazy=True)
    for i in range(5):
        mr.notes.create({"body": f"note {i}"})
    before = len(fake_gitlab.requests)
    bodies = [n.body for n in mr.notes.list(iterator=True, per_page=2, sort="asc")]
    assert bodies == [f"note {i}" for i in range(5)]
    gets = fake_gitlab.requests[before:]
    assert [(g["method"], g["status"]) for g in gets] == [("GET", 200)] * 3
    assert [g["query"].get("page", "1") for g in gets] == ["1", "2", "3"]
    assert len(mr.notes.list(get_all=True, per_page=2)) == 5


def test_note_shape_and_update(fake_gitlab):
    gl = gitlab.Gitlab(fake_gitlab.url, private_token="glpat-test-api-token")
    mr = gl.projects.get(42, lazy=True).mergerequests.get(7, lazy=True)
    note = mr.notes.create({"body": "hello"})
    for key in ("id", "body", "author", "created_at", "updated_at", "system", "noteable_type",
                "noteable_iid", "project_id"):
        assert key in note.attributes
    assert note.noteable_type == "MergeRequest" and note.noteable_iid == 7
    mr.notes.update(note.id, {"body": "changed"})
    assert mr.notes.get(note.id).body == "changed"
    assert [(c["method"], c["route"]) for c in fake_gitlab.requests] == [
        ("POST", "mr_notes"), ("PUT", "mr_note"), ("GET", "mr_note")]


def test_failure_injection(fake_gitlab):
    fake_gitlab.fail_next(2, status=503)
    fake_gitlab.fail_next(1, status=429, retry_after=7)
    url = fake_gitlab.api_url + "/projects/42"
    codes = [requests.get(url, headers=TOKEN) for _ in range(4)]
    assert [r.status_code for r in codes] == [503, 503, 429, 200]
    assert codes[2].headers["Retry-After"] == "7"
    fake_gitlab.fail_next(1, mode="reset")
    with pytest.raises(requests.ConnectionError):
        requests.get(url, headers=TOKEN)


def test_standalone_process_with_state_file(tmp_path):
    state = tmp_path / "state.json"
    script = Path(__file__).with_name("gitlab_fake.py")
    proc = subprocess.Popen([sys.executable, str(script), "--port", "0", "--token", "glpat-abc123",
                             "--project", "42:group/project", "--mr", "3", "--commit", "ab" * 20,
                             "--state", str(state)], stdout=subprocess.PIPE, text=True)
    try:
        info = json.loads(proc.stdout.readline())
        assert info["api_url"].startswith("http://127.0.0.1:")
        r = requests.post(info["api_url"] + "/projects/42/merge_requests/3/notes", json={"body": "hi"},
                          headers={"PRIVATE-TOKEN": "glpat-abc123"})
        assert r.status_code == 201
        requests.post(info["url"] + "/__fake__/fail", json={"count": 1, "status": 502})
        assert requests.get(info["api_url"] + "/projects/42",
                            headers={"PRIVATE-TOKEN": "glpat-abc123"}).status_code == 502
        deadline = time.time() + 5
        while time.time() < deadline:
            dumped = json.loads(state.read_text())
            if len(dumped["requests"]) == 2:
                break
            time.sleep(0.05)
        assert [r["status"] for r in dumped["requests"]] == [201, 502]
        assert dumped["notes"]["42!3"][0]["body"] == "hi"
        assert "glpat-abc123" not in state.read_text()  # tokens never land in the state file
    finally:
        proc.terminate()
        proc.wait(timeout=5)


def test_fake_only_binds_loopback():
    from gitlab_fake import FakeGitLab  # imported here: the module is registered as a pytest plugin

    fake = FakeGitLab()
    url = fake.start()
    try:
        assert url.startswith("http://127.0.0.1:")
    finally:
        fake.stop()
