"""`modelci setup` against the strict fake GitLab: dry run, real run, idempotent second run,
a tier without protected environments, and a token without the Maintainer role."""
from __future__ import annotations

import json

import pytest

from modelci.cli import main

pytest_plugins = ["gitlab_fake"]  # the fake_gitlab fixture

SECRET = "s3cr3t-Value-42"
WRITES = ("POST", "PUT", "DELETE", "PATCH")


def _run(capsys, *argv):
    code = main(["setup", *argv])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip() else None), err


def _writes(fake):
    return [(r["method"], r["route"]) for r in fake.requests if r["method"] in WRITES]


def _actions(result):
    return {i["item"]: i["action"] for i in result["items"]}


ARGS = ("--variable", f"MODEL_API_KEY={SECRET}", "--variable", "PLAIN_SETTING", "--approvals", "1",
        "--cron", "30 5 * * *")


@pytest.fixture
def env(monkeypatch):
    monkeypatch.setenv("PLAIN_SETTING", "another-secret-value")


def test_dry_run_writes_nothing(fake_gitlab, capsys, env):
    code, result, err = _run(capsys, "--dry-run", *ARGS)
    assert code == 0, err
    assert result["dry_run"] is True and result["changed"] is True
    assert _writes(fake_gitlab) == []
    actions = _actions(result)
    assert actions == {"project settings": "would-update", "environment production": "would-create",
                       "protected environment production": "would-create",
                       "deployment approvals production": "would-create",
                       "variable MODEL_API_KEY": "would-create", "variable PLAIN_SETTING": "would-create",
                       "schedule monitor": "would-create"}
    assert SECRET not in json.dumps(result) + err and "another-secret-value" not in err


def test_real_run_then_idempotent(fake_gitlab, capsys, env):
    code, result, err = _run(capsys, *ARGS)
    assert code == 0, err
    assert set(_actions(result).values()) <= {"created", "updated"}
    assert SECRET not in json.dumps(result) + err
    project = fake_gitlab.projects[42]
    assert project["settings"] == {"ci_forward_deployment_enabled": True,
                                   "ci_forward_deployment_rollback_allowed": True,
                                   "restrict_user_defined_variables": True,
                                   "ci_pipeline_variables_minimum_override_role": "maintainer"}
    assert [e["name"] for e in project["environments"]] == ["production"]
    assert project["environments"][0]["tier"] == "production"
    (pe,) = project["protected_environments"]
    assert [r["access_level"] for r in pe["deploy_access_levels"]] == [40]
    assert [(r["access_level"], r["required_approvals"]) for r in pe["approval_rules"]] == [(40, 1)]
    variables = {v["key"]: v for v in project["variables"]}
    assert variables["MODEL_API_KEY"]["value"] == SECRET and variables["MODEL_API_KEY"]["masked"]
    assert variables["MODEL_API_KEY"]["protected"] and variables["PLAIN_SETTING"]["value"] == "another-secret-value"
    (sched,) = project["schedules"]
    assert sched["cron"] == "30 5 * * *" and sched["ref"] == "main" and sched["active"]
    # no schedule variable: the monitor job runs in every schedule (pipeline variables may be blocked)
    assert sched["variables"] == []

    fake_gitlab.requests.clear()
    code, result, err = _run(capsys, *ARGS)
    assert code == 0, err
    assert _writes(fake_gitlab) == []
    assert set(_actions(result).values()) == {"unchanged"} and result["changed"] is False
    assert "nothing to change" in result["summary"]


def test_changed_inputs_are_updated(fake_gitlab, capsys, env):
    assert _run(capsys, *ARGS)[0] == 0
    fake_gitlab.requests.clear()
    code, result, err = _run(capsys, "--variable", "MODEL_API_KEY=rotated-value-99", "--deployer", "developer",
                             "--deployer", "group:77", "--cron", "0 3 * * 1")
    assert code == 0, err
    actions = _actions(result)
    assert actions["variable MODEL_API_KEY"] == "updated"
    assert actions["protected environment production"] == "updated"
    assert actions["deployment approvals production"] == "updated"  # --approvals 0 removes the rule
    assert actions["schedule monitor"] == "updated"
    project = fake_gitlab.projects[42]
    (pe,) = project["protected_environments"]
    assert sorted(str((r["access_level"], r["group_id"])) for r in pe["deploy_access_levels"]) == \
        ["(30, None)", "(None, 77)"]
    assert pe["approval_rules"] == []
    assert project["schedules"][0]["cron"] == "0 3 * * 1"
    assert "rotated-value-99" not in err + json.dumps(result)


def test_free_tier_skips_protection_with_a_message(fake_gitlab, capsys, env):
    fake_gitlab.projects[42]["tier"] = "free"
    code, result, err = _run(capsys, *ARGS)
    assert code == 0, err
    actions = _actions(result)
    assert actions["protected environment production"] == "unsupported"
    assert actions["deployment approvals production"] == "unsupported"
    assert "does not support" in err and "Premium" in err
    assert actions["schedule monitor"] == "created" and actions["variable MODEL_API_KEY"] == "created"


def test_reporter_token_gets_a_clear_error(fake_gitlab, capsys, monkeypatch):
    monkeypatch.setenv("MODELCI_GITLAB_TOKEN", "glpat-reporter")
    code, result, err = _run(capsys, "--variable", f"K={SECRET}")
    assert code == 1 and result is None
    (line,) = [l for l in err.splitlines() if "error:" in l]
    assert line.startswith("modelci setup: error: ") and "Reporter" in line and "Maintainer" in line
    assert _writes(fake_gitlab) == []


def test_forbidden_write_names_the_maintainer_role(fake_gitlab, capsys, monkeypatch):
    """Where GitLab does not report the role (no `permissions`), a 403 still explains itself."""
    fake_gitlab.add_token("glpat-developer", role="developer")
    monkeypatch.setenv("MODELCI_GITLAB_TOKEN", "glpat-developer")
    original = fake_gitlab._project_json
    monkeypatch.setattr(fake_gitlab, "_project_json",
                        lambda project, auth: {k: v for k, v in original(project, auth).items()
                                               if k != "permissions"})
    code, _, err = _run(capsys)
    assert code == 1
    assert "403 Forbidden" in err and "Maintainer" in err and "updating the project's CI/CD settings" in err


def test_bad_flags_are_one_line_errors(fake_gitlab, capsys):
    for argv, needle in ((["--variable", "bad-key=x"], "letters, digits"),
                         (["--variable", "SHORT=abc"], "--no-mask"),
                         (["--deployer", "everyone"], "maintainer, developer"),
                         (["--cron", "daily"], "5 fields")):
        code, _, err = _run(capsys, *argv)
        assert code == 1 and needle in err, err
    assert fake_gitlab.requests == []


def test_help(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["setup", "--help"])
    assert exc.value.code == 0 and "--dry-run" in capsys.readouterr().out


# ---- issue 12: pipeline variables closed to Developers; the write token scoped to publish/monitor ---
@pytest.mark.parametrize("before,after,action", [
    ("developer", "maintainer", "updated"),
    ("maintainer", "maintainer", "unchanged"),
    ("owner", "owner", "unchanged"),
    ("no_one_allowed", "no_one_allowed", "unchanged"),  # never loosened
])
def test_setup_raises_the_pipeline_variables_role_and_never_loosens_it(fake_gitlab, capsys, before, after,
                                                                         action):
    settings = fake_gitlab.projects[42]["settings"]
    settings.update(ci_forward_deployment_enabled=True, ci_forward_deployment_rollback_allowed=True,
                    restrict_user_defined_variables=True, ci_pipeline_variables_minimum_override_role=before)
    code, result, err = _run(capsys, "--no-schedule")
    assert code == 0, err
    item = next(i for i in result["items"] if i["item"] == "project settings")
    assert item["action"] == action and item["pipeline_variables_minimum_role"] == after
    assert settings["ci_pipeline_variables_minimum_override_role"] == after
    assert settings["restrict_user_defined_variables"] is True


def test_setup_scopes_the_write_token_to_publish_and_monitor(fake_gitlab, capsys, monkeypatch):
    monkeypatch.setenv("TOKEN_VALUE", "glpat-0123456789abcdef")
    monkeypatch.setenv("MODELCI_GITLAB_TOKEN", "glpat-test-api-token")
    code, result, err = _run(capsys, "--no-schedule", "--variable", "MODELCI_GITLAB_TOKEN=glpat-0123456789abcdef")
    assert code == 0, err
    scopes = sorted(v["environment_scope"] for v in fake_gitlab.projects[42]["variables"]
                    if v["key"] == "MODELCI_GITLAB_TOKEN")
    assert scopes == ["modelci/monitor", "modelci/publish"]
    assert {"variable MODELCI_GITLAB_TOKEN (modelci/publish)", "variable MODELCI_GITLAB_TOKEN (modelci/monitor)"} \
        <= set(_actions(result))
    assert "glpat-0123456789abcdef" not in err + json.dumps(result)
    # a token left under the '*' scope (every job, including those that load models) is reported
    import requests

    requests.post(f"{fake_gitlab.api_url}/projects/42/variables", headers={"PRIVATE-TOKEN": "glpat-test-api-token"},
                  json={"key": "MODELCI_GITLAB_TOKEN", "value": "glpat-old-token-value", "environment_scope": "*"},
                  timeout=5).raise_for_status()
    code, result, err = _run(capsys, "--no-schedule")
    assert code == 0 and _actions(result)["variable MODELCI_GITLAB_TOKEN (*)"] == "exposed"
    assert "is also defined for environment scope '*'" in err
