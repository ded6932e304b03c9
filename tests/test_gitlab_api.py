"""gitlab_api: configuration from the CI environment, retries, and one clear error per failure class."""
from __future__ import annotations

import time

import pytest

pytest_plugins = ["gitlab_fake"]  # the fake_gitlab fixture
from modelci import gitlab_api, log
from modelci.errors import ModelCIError


def notes(client):
    with client.errors("reading notes", gitlab_api.SCOPE_API):
        return [n.body for n in client.project.mergerequests.get(7, lazy=True).notes.list(iterator=True)]


def post_note(client, body="x"):
    with client.errors("posting a note", gitlab_api.SCOPE_API):
        return client.project.mergerequests.get(7, lazy=True).notes.create({"body": body})


# ---- configuration --------------------------------------------------------------------------------
def test_from_env_reads_ci_variables(fake_gitlab):
    client = gitlab_api.from_env()
    assert client.url == fake_gitlab.url and client.api_url == fake_gitlab.api_url
    assert client.project_id == "42" and client.token_kind == "private"
    assert client.token_source == "MODELCI_GITLAB_TOKEN"
    assert log.mask("token glpat-test-api-token here") == "token [MASKED] here"
    post_note(client)
    assert fake_gitlab.requests[-1]["auth"] == "private"


def test_token_precedence_and_job_token_header(fake_gitlab, monkeypatch):
    monkeypatch.delenv("MODELCI_GITLAB_TOKEN")
    monkeypatch.setenv("GITLAB_TOKEN", "glpat-test-api-token")
    monkeypatch.setenv("CI_JOB_TOKEN", "job-token-123")
    assert gitlab_api.from_env().token_source == "GITLAB_TOKEN"
    monkeypatch.delenv("GITLAB_TOKEN")
    client = gitlab_api.from_env()
    assert client.token_kind == "job"
    with client.errors("uploading", gitlab_api.SCOPE_PACKAGES_WRITE):
        client.project.generic_packages.upload("m", "1.0.0", "f.txt", data=b"x")
    assert fake_gitlab.requests[-1]["auth"] == "job"  # sent as JOB-TOKEN
    assert log.mask("job-token-123") == "[MASKED]"


def test_oauth_token_uses_bearer(fake_gitlab, monkeypatch):
    monkeypatch.setenv("MODELCI_GITLAB_TOKEN_TYPE", "oauth")
    post_note(gitlab_api.from_env())
    assert fake_gitlab.requests[-1]["auth"] == "bearer"


def test_server_url_variants(monkeypatch):
    for var in ("MODELCI_GITLAB_URL", "CI_API_V4_URL", "CI_SERVER_URL"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ModelCIError, match="CI_API_V4_URL"):
        gitlab_api.server_url_from_env()
    monkeypatch.setenv("CI_SERVER_URL", "https://gitlab.example.com/")
    assert gitlab_api.server_url_from_env() == "https://gitlab.example.com"
    monkeypatch.setenv("CI_API_V4_URL", "https://gl.example.com/sub/api/v4")
    assert gitlab_api.server_url_from_env() == "https://gl.example.com/sub"
    monkeypatch.setenv("MODELCI_GITLAB_URL", "ftp://x")
    with pytest.raises(ModelCIError, match="not http"):
        gitlab_api.server_url_from_env()


def test_missing_project_or_token(fake_gitlab, monkeypatch):
    monkeypatch.delenv("CI_PROJECT_ID")
    with pytest.raises(ModelCIError, match="CI_PROJECT_ID"):
        gitlab_api.from_env()
    monkeypatch.setenv("CI_PROJECT_ID", "42")
    monkeypatch.delenv("MODELCI_GITLAB_TOKEN")
    with pytest.raises(ModelCIError, match="MODELCI_GITLAB_TOKEN.*`write_package_registry`"):
        gitlab_api.from_env(scope=gitlab_api.SCOPE_PACKAGES_WRITE)


# ---- error classes --------------------------------------------------------------------------------
def test_401_names_token_and_scope(fake_gitlab, monkeypatch):
    monkeypatch.setenv("MODELCI_GITLAB_TOKEN", "glpat-revoked-0000000")
    with pytest.raises(ModelCIError) as err:
        notes(gitlab_api.from_env())
    msg = str(err.value)
    assert "401" in msg and "MODELCI_GITLAB_TOKEN" in msg and "`api`" in msg
    assert "glpat-revoked" not in msg.replace("glpat-[MASKED]", "")
    assert "\n" not in msg
    assert len(fake_gitlab.requests) == 1  # not retried


def test_401_with_job_token_explains_it_cannot_be_used(fake_gitlab, monkeypatch):
    monkeypatch.delenv("MODELCI_GITLAB_TOKEN")
    monkeypatch.setenv("CI_JOB_TOKEN", "job-token-123")
    with pytest.raises(ModelCIError, match="CI_JOB_TOKEN cannot be used for this endpoint"):
        post_note(gitlab_api.from_env())


def test_403_insufficient_scope_names_the_scope(fake_gitlab, monkeypatch):
    monkeypatch.setenv("MODELCI_GITLAB_TOKEN", "glpat-read-only")
    with pytest.raises(ModelCIError, match="403 insufficient_scope.*lacks the `api` scope"):
        post_note(gitlab_api.from_env())
    monkeypatch.setenv("MODELCI_GITLAB_TOKEN", "glpat-read-only")
    client = gitlab_api.from_env()
    with pytest.raises(ModelCIError, match="lacks the `write_package_registry` scope"), \
            client.errors("uploading", gitlab_api.SCOPE_PACKAGES_WRITE):
        client.project.generic_packages.upload("m", "1.0.0", "f.txt", data=b"x")
    assert len(fake_gitlab.requests) == 2


def test_403_role(fake_gitlab, monkeypatch):
    monkeypatch.setenv("MODELCI_GITLAB_TOKEN", "glpat-reporter")
    client = gitlab_api.from_env()
    with pytest.raises(ModelCIError, match="403 Forbidden.*project 42.*Developer role"), \
            client.errors("uploading", gitlab_api.SCOPE_PACKAGES_WRITE):
        client.project.generic_packages.upload("m", "1.0.0", "f.txt", data=b"x")


def test_404_names_the_project(fake_gitlab, monkeypatch):
    monkeypatch.setenv("CI_PROJECT_ID", "4242")
    with pytest.raises(ModelCIError, match="project '4242' does not exist or is not visible.*CI_PROJECT_ID"):
        notes(gitlab_api.from_env())
    monkeypatch.setenv("CI_PROJECT_ID", "42")
    monkeypatch.setenv("MODELCI_GITLAB_TOKEN", "glpat-other-project")
    with pytest.raises(ModelCIError, match="not visible to the token in MODELCI_GITLAB_TOKEN"):
        notes(gitlab_api.from_env())


def test_404_names_other_resources(fake_gitlab):
    client = gitlab_api.from_env()
    with pytest.raises(ModelCIError, match="404 Merge Request Not Found"), client.errors("reading notes"):
        client.project.mergerequests.get(99, lazy=True).notes.list(get_all=True)


# ---- retries --------------------------------------------------------------------------------------
@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_retried_then_success(fake_gitlab, status):
    fake_gitlab.fail_next(2, status=status)
    post_note(gitlab_api.from_env(), "after retries")
    assert [r["status"] for r in fake_gitlab.requests] == [status, status, 201]
    assert [n["body"] for n in fake_gitlab.notes["42!7"]] == ["after retries"]  # created exactly once


def test_429_honours_retry_after_capped(fake_gitlab, monkeypatch):
    monkeypatch.setenv("MODELCI_GITLAB_MAX_WAIT", "0.3")
    fake_gitlab.fail_next(1, status=429, retry_after=3600)
    start = time.monotonic()
    assert notes(gitlab_api.from_env()) == []
    assert 0.25 <= time.monotonic() - start < 2
    assert [r["status"] for r in fake_gitlab.requests] == [429, 200]


def test_retry_after_is_used_when_small():
    policy = gitlab_api.RetryPolicy(attempts=5, backoff=1.0, max_wait=30)
    assert policy.wait(1, "2") == 2
    assert policy.wait(3) == 4
    assert policy.wait(10) == 30  # bounded
    assert policy.wait(1, "garbage") == 1


def test_persistent_5xx_is_a_clear_error(fake_gitlab, monkeypatch):
    monkeypatch.setenv("MODELCI_GITLAB_RETRIES", "3")
    fake_gitlab.fail_next(10, status=503)
    with pytest.raises(ModelCIError, match="still answering 503.*after 3 attempts.*retry the job later"):
        notes(gitlab_api.from_env())
    assert len(fake_gitlab.requests) == 3


def test_dropped_connection_retried(fake_gitlab):
    fake_gitlab.fail_next(1, mode="reset")
    assert notes(gitlab_api.from_env()) == []
    assert [r["status"] for r in fake_gitlab.requests] == ["reset", 200]


def test_timeout_retried(fake_gitlab, monkeypatch):
    monkeypatch.setenv("MODELCI_GITLAB_TIMEOUT", "0.2")
    fake_gitlab.fail_next(1, mode="delay", delay=0.6)
    start = time.monotonic()
    assert notes(gitlab_api.from_env()) == []
    assert time.monotonic() - start < 0.55  # did not wait for the slow answer
    deadline = time.monotonic() + 2
    while len(fake_gitlab.requests) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)  # the slow request is logged when the fake finally answers it
    assert len(fake_gitlab.requests) == 2


def test_unreachable_server_is_a_clear_error(fake_gitlab, monkeypatch):
    monkeypatch.setenv("MODELCI_GITLAB_RETRIES", "2")
    client = gitlab_api.from_env()
    fake_gitlab.stop()
    with pytest.raises(ModelCIError, match="cannot reach it while reading notes after 2 attempts"):
        notes(client)


def test_multipart_upload_is_resent_whole_on_retry(fake_gitlab):
    fake_gitlab.fail_next(1, status=502, path_contains="/uploads")
    client = gitlab_api.from_env()
    with client.errors("uploading"):
        result = client.project.upload("plot.png", filedata=b"\x89PNG-bytes")
    assert result["markdown"].startswith("![plot](/uploads/")
    assert fake_gitlab.uploads[0]["size"] == len(b"\x89PNG-bytes")
