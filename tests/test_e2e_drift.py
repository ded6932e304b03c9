"""Drift end to end: gitlab-ci-local runs this project's pipeline against a real Docker engine, a
real registry and the strict fake GitLab (issues area; pipeline variables need the Maintainer role,
and the schedules and the retrain run with a Developer's token).

One module-scoped scenario:
  A. the first pipeline's train, gate, build and (manual) production jobs: production serves 1.0.0
  S1. shifted traffic, then a scheduled pipeline: one drift issue is opened, no retrain
  S2. more shifted traffic, another schedule: the same issue is updated
  S3. production restarts (its counters start again, as after a deploy), clean traffic, a schedule:
      the issue is closed
  S4. `monitor.on_drift: [issue, retrain]`, shifted traffic, a schedule: a new issue and one
      retraining pipeline, created through the API without variables
  R. that retrain (an API pipeline on the default branch, no variables): the training job does not
      reuse the cached model ("reused": false in run.json), the gate passes NO_CHANGE, and the build
      finds the model identical to production's: no new image tag, no new model version.
The retrain runs train, gate and build only: what the deploy jobs do with the build's
MODELCI_IDENTICAL_TO_PRODUCTION dotenv belongs to the deploy step (docs/monitoring.md).
"""
from __future__ import annotations

import csv
import json
import secrets
import subprocess
import time
from pathlib import Path

import localci
import pytest
import requests

pytestmark = pytest.mark.e2e
PROJECT = "mlops/drift"  # the session's registry is shared: this module's serving tags are its own

TRAIN, GATE, BUILD, PROD, MONITOR = ("modelci:train", "modelci:gate", "modelci:build", "modelci:production",
                                     "modelci:monitor")
SCHEDULE = {"CI_PIPELINE_SOURCE": "schedule"}


class Fake:
    """tests/gitlab_fake.py in its own process for the whole scenario (the drift issue lives across
    pipelines): a Maintainer's token for pipeline A, a Developer's for the schedules and the retrain,
    the jobs' CI_JOB_TOKEN; it records deployments as GitLab does (the monitor finds production's
    model through them)."""

    record_deployments = localci.FakeGitLabProcess.record_deployments
    project_id = 1217

    def __init__(self, repo: Path, state: Path):
        self.state_file = state
        self.maintainer, self.developer = "glpat-m-" + secrets.token_hex(6), "glpat-d-" + secrets.token_hex(6)
        args = [str(localci.VENV_BIN / "python"), str(localci.ROOT / "tests" / "gitlab_fake.py"), "--port", "0",
                "--token", self.maintainer, "--developer-token", self.developer, "--project", f"1217:{localci.PROJECT_PATH}",
                "--pipeline-variables-role", "maintainer", "--state", str(state),
                "--job-token", localci.LocalGitLab.job_token]
        for c in localci.git(repo, "rev-list", "--all").split():
            args += ["--commit", c]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, start_new_session=True)
        assert self.proc.stdout is not None
        self.info = json.loads(self.proc.stdout.readline())
        self.api_url = self.info["api_url"]

    def state(self) -> dict:
        return json.loads(self.state_file.read_text())

    def project(self) -> dict:
        return self.state()["projects"]["1217"]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def _rows(repo: Path) -> list[dict]:
    with open(repo / "model" / "data" / "wine.csv") as fh:
        return list(csv.DictReader(fh))


def _send(url: str, records: list[dict]) -> None:
    for i in range(0, len(records), 50):
        localci.predict(url, records[i:i + 50])


def _traffic(repo: Path, url: str, *, shifted: bool, n: int) -> None:
    names = [i["name"] for i in localci.model_inputs(url)]
    rows = _rows(repo)
    out = []
    for k in range(n):
        row = rows[k % len(rows)]
        rec = {f: float(row[f]) for f in names}
        if shifted:  # a new supplier: stronger, darker wines
            rec["alcohol"] += 2.5
            rec["flavanoids"] *= 2.0
        out.append(rec)
    _send(url, out)


def _restart_production(docker_client, ns: str, url: str) -> None:
    from modelci.deploy.target import LABEL_ENV, LABEL_NS, LABEL_ROLE

    (backend,) = docker_client.containers.list(filters={"label": [
        f"{LABEL_NS}={ns}", f"{LABEL_ENV}=production", f"{LABEL_ROLE}=backend"]})
    backend.restart(timeout=10)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if requests.get(url + "/v2/health/ready", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise AssertionError("production did not come back after the restart")


def _tags(registry) -> list[str]:
    r = requests.get(f"http://{registry.host}/v2/{PROJECT}/serving/tags/list", auth=registry.htpasswd,
                     timeout=5)
    return sorted(r.json().get("tags") or []) if r.status_code == 200 else []


@pytest.fixture(scope="module")
def drift(tmp_path_factory, registry, base_image, docker_client, proxy_image):  # deploys pull the proxy
    ns = "drift" + secrets.token_hex(3)
    saved_path, localci.PROJECT_PATH = localci.PROJECT_PATH, PROJECT  # its own registry repository
    staging_url = f"http://127.0.0.1:{localci.free_port()}"
    production_url = f"http://127.0.0.1:{localci.free_port()}"
    root = tmp_path_factory.mktemp("e2e-drift")
    repo = localci.make_project(root / "repo")
    fake = Fake(repo, root / "gitlab.json")
    extra = {"MODELCI_STAGING_URL": staging_url, "MODELCI_PRODUCTION_URL": production_url,
             "MODELCI_DEPLOY_NAMESPACE": ns}
    s: dict = {"repo": repo, "fake": fake, "production": production_url, "timings": {}}

    def run(name, token, **kw):
        gitlab = localci.LocalGitLab(registry, api_url=fake.api_url, extra={**extra, "MODELCI_GITLAB_TOKEN": token})
        res = localci.run_pipeline(repo, gitlab, **kw)
        fake.record_deployments(res, repo, {**gitlab.variables(), **kw.get("variables", {})})
        s[name] = res
        s["timings"][name] = {"total_s": round(res.seconds, 1), "jobs": res.job_seconds}
        return res

    def snapshot(name):
        project = fake.project()
        s[f"issues_{name}"] = [dict(i) for i in project["issues"]]
        s[f"pipelines_{name}"] = list(project["pipelines"])
        s[f"notes_{name}"] = fake.state()["issue_notes"]

    try:
        run("A", fake.maintainer, jobs=[TRAIN, GATE, BUILD, PROD])  # staging is not needed here
        s["lineage_A"] = localci.lineage(production_url)
        s["tags_A"] = _tags(registry)
        s["packages_A"] = sorted((p["name"], p["version"]) for p in fake.state()["packages"])

        _traffic(repo, production_url, shifted=True, n=200)
        run("S1", fake.developer, variables=SCHEDULE)
        snapshot("S1")
        _traffic(repo, production_url, shifted=True, n=100)
        run("S2", fake.developer, variables=SCHEDULE)
        snapshot("S2")
        _restart_production(docker_client, ns, production_url)
        _traffic(repo, production_url, shifted=False, n=240)
        run("S3", fake.developer, variables=SCHEDULE)
        snapshot("S3")

        cfg = repo / "model" / "modelci.yml"  # a tracked file: each job's copy of the project has it
        cfg.write_text(cfg.read_text().replace("  method: psi\n", "  method: psi\n  on_drift: [issue, retrain]\n"))
        _traffic(repo, production_url, shifted=True, n=600)
        run("S4", fake.developer, variables=SCHEDULE)
        snapshot("S4")

        # the pipeline the monitor created, as GitLab would run it: source api, no variables
        run("R", fake.developer, variables={"CI_PIPELINE_SOURCE": "api"}, jobs=[TRAIN, GATE, BUILD])
        s["tags_R"] = _tags(registry)
        s["packages_R"] = sorted((p["name"], p["version"]) for p in fake.state()["packages"])
        s["run_json_R"] = json.loads((repo / "out" / "run.json").read_text())
        s["lineage_R"] = localci.lineage(production_url)
        print("\nE2E drift timings:", json.dumps(s["timings"]))
        yield s
    finally:
        localci.PROJECT_PATH = saved_path
        fake.stop()
        for env, url in (("staging", staging_url), ("production", production_url)):
            subprocess.run([str(localci.VENV_BIN / "modelci"), "deploy", "--teardown", "--namespace", ns,
                            "--environment", env, "--url", url], capture_output=True)


def _drift_issues(issues: list[dict]) -> list[dict]:
    return [i for i in issues if "modelci::drift" in i["labels"]]


def test_production_serves_the_first_model(drift):
    a = drift["A"]
    assert a.returncode == 0, a.output[-3000:]
    assert a.jobs == {TRAIN: "passed", GATE: "passed", BUILD: "passed", PROD: "passed"}, a.jobs
    assert drift["lineage_A"]["model_version"] == "1.0.0"
    assert MONITOR not in a.jobs  # the monitor runs in schedules only


def test_a_drifted_schedule_opens_one_issue_and_starts_no_retrain(drift):
    s1 = drift["S1"]
    assert s1.returncode == 0, s1.output[-3000:]
    assert set(s1.jobs) == {MONITOR}, s1.jobs  # a schedule runs the monitor only
    (issue,) = _drift_issues(drift["issues_S1"])
    assert issue["state"] == "opened" and issue["title"] == "Input drift: wine in production"
    assert "| `alcohol` | numeric |" in issue["description"] and "**drift**" in issue["description"]
    assert "![drift](/uploads/" in issue["description"]  # the plot, uploaded
    assert f"{drift['production']}/lineage" in issue["description"]
    assert drift["pipelines_S1"] == []  # on_drift defaults to [issue]


def test_a_second_drifted_schedule_updates_the_same_issue(drift):
    assert drift["S2"].returncode == 0, drift["S2"].output[-3000:]
    (first,) = _drift_issues(drift["issues_S1"])
    (issue,) = _drift_issues(drift["issues_S2"])
    assert issue["iid"] == first["iid"] and issue["state"] == "opened"
    assert issue["updated_at"] > first["updated_at"]
    notes = drift["notes_S2"][f"1217#{issue['iid']}"]
    assert len(notes) == 1 and "still drifting" in notes[0]["body"]
    assert drift["pipelines_S2"] == []


def test_a_clean_schedule_closes_it(drift):
    assert drift["S3"].returncode == 0, drift["S3"].output[-3000:]
    (issue,) = _drift_issues(drift["issues_S3"])
    assert issue["state"] == "closed" and issue["closed_at"]
    assert "clean" in drift["notes_S3"][f"1217#{issue['iid']}"][-1]["body"]


def test_retrain_on_drift_creates_a_pipeline_without_variables(drift):
    assert drift["S4"].returncode == 0, drift["S4"].output[-3000:]
    issues = _drift_issues(drift["issues_S4"])
    assert [i["state"] for i in issues] == ["closed", "opened"]  # a new episode, a new issue
    (pipeline,) = drift["pipelines_S4"]
    assert pipeline["ref"] == "main" and pipeline["source"] == "api"
    assert pipeline["variables"] == []  # a Developer may create it: variables need a Maintainer here
    assert f"/-/pipelines/{pipeline['id']}" in issues[-1]["description"]


def test_a_retrain_on_unchanged_data_changes_nothing(drift):
    r = drift["R"]
    assert r.returncode == 0, r.output[-3000:]
    assert r.jobs == {TRAIN: "passed", GATE: "passed", BUILD: "passed"}, r.jobs
    record = drift["run_json_R"]
    assert record["reused"] is False and "a retrain, the cache is not reused" in r.output
    assert record["model"]["sha256"] == drift["lineage_A"]["sha256"]  # same rows, same seed
    assert "identical to production" in r.output
    build_env = drift["repo"] / "out" / "build.env"
    assert "MODELCI_IDENTICAL_TO_PRODUCTION=true" in build_env.read_text()
    assert "MODELCI_IMAGE=" not in build_env.read_text()
    assert drift["tags_R"] == drift["tags_A"]  # no new image tag
    assert drift["packages_R"] == drift["packages_A"]  # no new model version
    assert drift["lineage_R"]["model_version"] == "1.0.0"
