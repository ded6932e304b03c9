"""The drift issue (modelci.drift_issue) and the retrain trigger against the strict fake GitLab:
one issue per model and environment, opened, updated, closed; pipeline variables refused below the
project's minimum role, a variable-free retrain pipeline accepted."""
from __future__ import annotations

import pytest
import requests

from modelci import drift_issue, gitlab_api
from modelci import monitor as mon
from modelci.errors import ModelCIError

pytest_plugins = ["gitlab_fake"]  # the fake_gitlab fixture


def _report(status: str, model: str = "fruit") -> dict:
    drift = status == "drift"
    feature = {"feature": "size", "kind": "numeric", "method": "psi", "threshold": 0.2,
               "statistic": 1.7 if drift else 0.01, "drift": drift, "status": status, "live_rows": 600,
               "bins": [{"bin": "(1, 2]", "training": 0.5, "live": 0.1 if drift else 0.5},
                        {"bin": "> 2", "training": 0.5, "live": 0.9 if drift else 0.5}]}
    if status == "insufficient-data":
        feature.update(statistic=None, status="insufficient-data")
    return {"status": status, "drift": drift, "drifted_features": ["size"] if drift else [],
            "generated_at": "2026-11-30T10:00:00Z", "production_url": "http://127.0.0.1:1",
            "model": {"name": model, "version": "1.2.0", "sha256": "a" * 64},
            "training_stats": {"source": "model m", "sha256": "a" * 64}, "method": "psi", "threshold": 0.2,
            "min_rows": 100, "features": [feature], "trigger": None, "issue": None}


def _sync(report: dict, environment: str = "production") -> dict:
    client = gitlab_api.from_env()
    return drift_issue.sync(client, report, environment=environment,
                            links={"Environment": "http://gitlab/env"}, body=mon.markdown(report))


def _issues(fake):
    return fake.projects[42]["issues"]


def test_drift_opens_then_updates_then_a_clean_check_closes_one_issue(fake_gitlab):
    first = _sync(_report("drift"))
    assert first["action"] == "opened"
    (issue,) = _issues(fake_gitlab)
    assert issue["labels"] == [drift_issue.LABEL] and issue["state"] == "opened"
    assert issue["title"] == "Input drift: fruit in production"
    assert drift_issue.marker("fruit", "production") in issue["description"]
    assert "| `size` | numeric |" in issue["description"] and "**drift**" in issue["description"]
    assert "- Environment: http://gitlab/env" in issue["description"]
    assert first["iid"] == issue["iid"] and first["web_url"].endswith(f"/-/issues/{issue['iid']}")

    second_report = _report("drift")
    second_report["generated_at"] = "2026-11-30T11:00:00Z"
    second = _sync(second_report)
    assert second["action"] == "updated" and second["iid"] == first["iid"]
    assert len(_issues(fake_gitlab)) == 1
    (note,) = fake_gitlab.issue_notes[f"42#{issue['iid']}"]
    assert "still drifting in size" in note["body"] and "11:00" in note["body"]

    fake_gitlab.requests.clear()
    closed = _sync(_report("ok"))
    assert closed["action"] == "closed" and closed["iid"] == first["iid"]
    assert issue["state"] == "closed" and issue["closed_at"]
    assert "clean" in fake_gitlab.issue_notes[f"42#{issue['iid']}"][-1]["body"]
    assert [(r["method"], r["route"]) for r in fake_gitlab.requests] == \
        [("GET", "issues"), ("POST", "issue_notes"), ("PUT", "issue")]

    # a clean check with nothing open does nothing but look; a new drift opens a new issue
    assert _sync(_report("ok"))["action"] == "none"
    assert _sync(_report("drift"))["action"] == "opened"
    assert [i["state"] for i in _issues(fake_gitlab)] == ["closed", "opened"]


def test_insufficient_data_makes_no_api_call(fake_gitlab):
    _sync(_report("drift"))
    fake_gitlab.requests.clear()
    assert _sync(_report("insufficient-data")) == {"action": "none", "iid": None, "web_url": None}
    assert fake_gitlab.requests == []
    assert _issues(fake_gitlab)[0]["state"] == "opened"


def test_one_issue_per_model_and_environment_found_across_pages(fake_gitlab):
    for i in range(25):  # other models' drift issues fill the first page
        _sync(_report("drift", model=f"other{i}"))
    opened = _sync(_report("drift"), environment="staging")
    assert _sync(_report("drift"), environment="production")["action"] == "opened"
    assert _sync(_report("drift"), environment="staging") == dict(opened, action="updated")
    pages = [r["query"].get("page") for r in fake_gitlab.requests if r["route"] == "issues" and r["method"] == "GET"]
    assert "2" in pages  # python-gitlab followed the Link header
    assert len(_issues(fake_gitlab)) == 27
    # renaming the issue by hand does not open a second one: the marker line finds it
    staging = next(i for i in _issues(fake_gitlab) if i["iid"] == opened["iid"])
    staging["title"] = "renamed"
    assert _sync(_report("drift"), environment="staging")["action"] == "updated"


def test_plot_shows_the_drifted_features(tmp_path):
    assert drift_issue.plot_png(_report("ok"), tmp_path / "none.png") is None
    path = drift_issue.plot_png(_report("drift"), tmp_path / "drift.png")
    assert path and (tmp_path / "drift.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_read_only_token_gets_a_one_line_error(fake_gitlab, monkeypatch):
    monkeypatch.setenv("MODELCI_GITLAB_TOKEN", "glpat-read-only")
    with pytest.raises(ModelCIError, match="insufficient_scope while writing the drift issue.*`api` scope"):
        _sync(_report("drift"))
    assert _issues(fake_gitlab) == []


# ---- the fake's issues area and pipeline-variable role, checked directly ---------------------------
def _api(fake, method, path, token="glpat-test-api-token", **kw):
    return requests.request(method, fake.api_url + path, headers={"PRIVATE-TOKEN": token}, timeout=10, **kw)


def test_fake_issues_filters_and_state_events(fake_gitlab):
    a = _api(fake_gitlab, "POST", "/projects/42/issues", json={"title": "a", "labels": "x,modelci::drift"}).json()
    _api(fake_gitlab, "POST", "/projects/42/issues", json={"title": "b", "labels": ["x"]})
    assert _api(fake_gitlab, "POST", "/projects/42/issues", json={}).status_code == 400
    got = _api(fake_gitlab, "GET", "/projects/42/issues", params={"labels": "modelci::drift,x", "state": "opened"})
    assert [i["title"] for i in got.json()] == ["a"] and got.headers["X-Total"] == "1"
    assert _api(fake_gitlab, "GET", "/projects/42/issues", params={"state": "shut"}).status_code == 400
    assert _api(fake_gitlab, "PUT", f"/projects/42/issues/{a['iid']}", json={"state_event": "nap"}).status_code == 400
    assert _api(fake_gitlab, "PUT", f"/projects/42/issues/{a['iid']}", json={}).status_code == 400
    closed = _api(fake_gitlab, "PUT", f"/projects/42/issues/{a['iid']}", json={"state_event": "close"}).json()
    assert closed["state"] == "closed" and closed["closed_at"]
    assert [i["title"] for i in _api(fake_gitlab, "GET", "/projects/42/issues",
                                     params={"state": "closed"}).json()] == ["a"]
    reopened = _api(fake_gitlab, "PUT", f"/projects/42/issues/{a['iid']}", json={"state_event": "reopen"}).json()
    assert reopened["state"] == "opened" and reopened["closed_at"] is None
    assert _api(fake_gitlab, "GET", "/projects/42/issues/99").status_code == 404
    assert _api(fake_gitlab, "DELETE", "/projects/42/issues").status_code == 405
    note = _api(fake_gitlab, "POST", f"/projects/42/issues/{a['iid']}/notes", json={"body": "hi"})
    assert note.status_code == 201 and note.json()["noteable_type"] == "Issue"
    assert [n["body"] for n in _api(fake_gitlab, "GET", f"/projects/42/issues/{a['iid']}/notes").json()] == ["hi"]
    fake_gitlab.add_token("glpat-guest", scopes=["api"], role="guest")
    assert _api(fake_gitlab, "PUT", f"/projects/42/issues/{a['iid']}", token="glpat-guest",
                json={"state_event": "close"}).status_code == 403


def test_pipeline_variables_need_the_projects_minimum_role(fake_gitlab):
    fake_gitlab.add_token("glpat-dev", scopes=["api"], role="developer")
    project = fake_gitlab.projects[42]
    project["settings"]["ci_pipeline_variables_minimum_override_role"] = "maintainer"  # as `modelci setup` sets it
    refused = _api(fake_gitlab, "POST", "/projects/42/pipeline", token="glpat-dev",
                   json={"ref": "main", "variables": [{"key": "FORCE_RETRAIN", "value": "true"}]})
    assert refused.status_code == 400
    assert refused.json() == {"message": {"base": ["Insufficient permissions to set pipeline variables"]}}
    assert project["pipelines"] == []
    ok = _api(fake_gitlab, "POST", "/projects/42/pipeline", token="glpat-dev", json={"ref": "main"})
    assert ok.status_code == 201 and ok.json()["source"] == "api"
    assert _api(fake_gitlab, "POST", "/projects/42/pipeline", json={"ref": "main", "variables": [
        {"key": "A", "value": "1"}]}).status_code == 201  # the maintainer's token may
    project["settings"]["ci_pipeline_variables_minimum_override_role"] = "no_one_allowed"
    assert _api(fake_gitlab, "POST", "/projects/42/pipeline", json={"ref": "main", "variables": [
        {"key": "A", "value": "1"}]}).status_code == 400


def test_the_monitor_retrain_works_for_a_developer_where_variables_are_blocked(fake_gitlab, monkeypatch):
    fake_gitlab.add_token("glpat-dev", scopes=["api"], role="developer")
    monkeypatch.setenv("MODELCI_GITLAB_TOKEN", "glpat-dev")
    trig = mon.trigger_retrain(gitlab_api.from_env(), None)
    (pipeline,) = fake_gitlab.projects[42]["pipelines"]
    assert trig["id"] == pipeline["id"] and pipeline["ref"] == "main" and pipeline["variables"] == []


def test_the_old_trigger_variable_is_deprecated_and_false_means_report_only(monkeypatch, capsys):
    from modelci import cli
    from modelci.settings.monitor import MonitorSettings

    monkeypatch.setenv("MODELCI_MONITOR_TRIGGER", "false")
    s = MonitorSettings.from_args(cli.build_parser().parse_args(["monitor"]))
    assert s.trigger is False
    assert "MODELCI_MONITOR_TRIGGER is deprecated" in capsys.readouterr().err
    monkeypatch.delenv("MODELCI_MONITOR_TRIGGER")
    s = MonitorSettings.from_args(cli.build_parser().parse_args(["monitor", "--environment", "eu-prod"]))
    assert s.trigger is True and s.environment == "eu-prod"
    assert MonitorSettings.from_args(cli.build_parser().parse_args(["monitor", "--no-trigger"])).trigger is False
