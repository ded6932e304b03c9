"""End to end through the real pipeline: gitlab-ci-local runs .gitlab-ci.yml (which includes the
components from the same commit) against a real Docker engine and a real registry (with a login).
Staging and production live on a deploy host the runner does not share (tests/conftest.py's
namespaced engine): the deploy jobs reach it over ssh:// (shell executor) and, for the rollback
re-run, over TCP+TLS (Docker executor), with DOCKER_HOST and its credentials scoped to the
environments as GitLab's protected variables would be. Decoys on the runner's own loopback at the
environments' ports and the backends' ports answer readiness and /lineage with a wrong sha256: no
deploy may ever ask them.

One module-scoped scenario, in the order a team lives it; each test asserts one promise:
  A. first pipeline (+ the manual production job): staging and production serve 1.0.0
  B. a data commit: staging serves 1.1.0, production still 1.0.0; predictions match the registry artifact
  C. the manual production job promotes the digest staging runs: production serves 1.1.0
  D. a commit with no relevant change: no training, no build, no deploy
  E. a corrupt CSV: the pipeline fails before any image is built; both environments keep serving
"""
from __future__ import annotations

import http.server
import json
import os
import secrets
import shutil
import threading

import localci
import pytest

pytestmark = pytest.mark.e2e
pytest_plugins = ["mlflow_server"]  # GitLab's MLflow API, behind the fake GitLab, is a real MLflow server

TRAIN, GATE, BUILD, STAGING, PROD = ("modelci:train", "modelci:gate", "modelci:build", "modelci:staging",
                                    "modelci:production")


class Decoy:
    """An HTTP listener on the runner's loopback that answers like a ready model server with a
    wrong sha256 and counts every request."""

    def __init__(self, port: int):
        decoy = self
        self.requests: list[str] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self):
                decoy.requests.append(f"{self.command} {self.path}")
                body = json.dumps({"sha256": "0" * 64, "model_version": "decoy", "status": "ready"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def _variables_file(path, environments, values):
    """gitlab-ci-local's variables file: each variable scoped to the deploy environments only (as
    protected, environment-scoped CI/CD variables are on GitLab). Returned relative to the repo:
    gitlab-ci-local reads `<cwd>/<--variables-file>` (an absolute path is silently not found)."""
    import yaml

    path.write_text(yaml.safe_dump({k: {"values": {e: v for e in environments}} for k, v in values.items()}))
    return os.path.relpath(path, path.parent / "repo")


@pytest.fixture(scope="module")
def scenario(tmp_path_factory, registry, base_image, docker_client, mlflow_server, remote_host, proxy_image):
    ns = "e2e" + secrets.token_hex(3)
    staging, production = localci.free_port(), localci.free_port()
    staging_url = f"http://{remote_host.address}:{staging}"
    production_url = f"http://{remote_host.address}:{production}"
    decoys = {p: Decoy(p) for p in (staging, production)}
    gitlab = localci.LocalGitLab(registry, extra={
        "MODELCI_STAGING_URL": staging_url, "MODELCI_PRODUCTION_URL": production_url,
        "MODELCI_DEPLOY_NAMESPACE": ns})
    repo = localci.make_project(tmp_path_factory.mktemp("e2e") / "repo")
    envs = ("staging", "production")
    ssh_vars = _variables_file(repo.parent / "ssh-variables.yml", envs, remote_host.ssh_env())
    s = {"repo": repo, "gitlab": gitlab, "staging": staging_url, "production": production_url,
         "registry": registry, "timings": {}, "decoys": decoys, "host": remote_host}

    def add_backend_decoys():
        for ctr in remote_host.client().containers.list(filters={"label": "io.modelci.namespace=" + ns}):
            port = int(ctr.labels.get("io.modelci.port") or 0)
            if port and port not in decoys:
                try:
                    decoys[port] = Decoy(port)
                except OSError:
                    pass  # something else of the runner listens there: not a decoy of ours

    def run(name, **kw):
        kw["extra_args"] = [*kw.get("extra_args", []), "--variables-file", str(ssh_vars)]
        res = localci.run_pipeline(repo, gitlab, fake_gitlab=repo.parent / f"gitlab-{name}.json", **kw)
        s[name] = res
        s["timings"][name] = {"total_s": round(res.seconds, 1), "jobs": res.job_seconds}
        add_backend_decoys()
        return res

    run("A", manual=[PROD])
    s["lineage_A"] = {"staging": localci.lineage(staging_url), "production": localci.lineage(production_url)}
    # what GitLab keeps of pipeline A: its job artifacts and dotenv reports (digest, verdict)
    artifacts_a = repo.parent / "pipeline-A-artifacts"
    shutil.copytree(repo / ".gitlab-ci-local" / "artifacts", artifacts_a)

    data = repo / "model" / "data"
    with open(data / "wine.csv", "a") as fh:
        fh.write((data / "new-batch.csv").read_text())  # header-less rows, see model/data/README.md
    s["commit_B"] = localci.commit(repo, "data: append a new batch of wine measurements")
    run("B")
    s["lineage_B"] = {"staging": localci.lineage(staging_url), "production": localci.lineage(production_url)}
    s["tags_B"] = _tags(registry, docker_client)

    run("C", jobs=[PROD])
    s["lineage_C"] = {"staging": localci.lineage(staging_url), "production": localci.lineage(production_url)}

    (repo / "app" / "README.md").write_text((repo / "app" / "README.md").read_text() + "\nServing notes.\n")
    localci.commit(repo, "app: a change to the serving app only")
    run("G")
    s["lineage_G"] = {"staging": localci.lineage(staging_url), "production": localci.lineage(production_url)}
    s["tags_G"] = _tags(registry, docker_client)
    run("G-production", jobs=[PROD])
    s["lineage_G_prod"] = localci.lineage(production_url)

    (repo / "README.md").write_text((repo / "README.md").read_text() + "\nA line of docs.\n")
    localci.commit(repo, "docs: no relevant change")
    run("D")

    cfg = repo / "model" / "modelci.yml"
    good_cfg = cfg.read_text()
    cfg.write_text(good_cfg.replace("accuracy: {min: 0.8}", "accuracy: {min: 0.995}"))
    localci.commit(repo, "config: a threshold no model can meet")
    run("F")
    s["tags_F"] = _tags(registry, docker_client)
    cfg.write_text(good_cfg)

    (data / "wine.csv").write_bytes(b"<html><body>502 Bad Gateway</body></html>\n")
    localci.commit(repo, "data: corrupt export")
    run("E")
    s["tags_E"] = _tags(registry, docker_client)
    s["lineage_E"] = {"staging": localci.lineage(staging_url), "production": localci.lineage(production_url)}

    # GitLab's "Rollback environment": re-run pipeline A's production job months later, when only its
    # build job's artifacts are left (they never expire; train's, gate's and publish's have), this time
    # as a Docker-executor runner reaching the deploy host over TCP+TLS
    shutil.rmtree(repo / ".gitlab-ci-local" / "artifacts")
    kept = [d for d in artifacts_a.iterdir() if d.name.startswith("modelci") and d.name.endswith("build")]
    assert len(kept) == 1, sorted(d.name for d in artifacts_a.iterdir())
    s["rollback_artifacts"] = sorted(p.relative_to(kept[0]).as_posix() for p in kept[0].rglob("*") if p.is_file())
    shutil.copytree(kept[0], repo / ".gitlab-ci-local" / "artifacts" / kept[0].name)
    localci.build_tools_image("local/modelci-tools:dev")
    certs = repo.parent / "deploy-certs"  # what a file variable would hold, readable by the job's user
    shutil.copytree(remote_host.tcp_env()["DOCKER_CERT_PATH"], certs)
    for f in certs.iterdir():
        f.chmod(0o644)
    tls_vars = _variables_file(repo.parent / "tls-variables.yml", envs,
                               {**remote_host.tcp_env(), "DOCKER_CERT_PATH": str(certs)})
    res = localci.run_docker_pipeline(
        repo, gitlab, project_path="mlops/wine", jobs=[PROD], volumes=[f"{certs}:{certs}:ro"],
        fake_gitlab=repo.parent / "gitlab-R.json", extra_args=["--variables-file", str(tls_vars)])
    s["R"] = res
    s["timings"]["R"] = {"total_s": round(res.seconds, 1), "jobs": res.job_seconds}
    s["lineage_R"] = localci.lineage(production_url)
    print("\nE2E stage timings:", json.dumps(s["timings"], indent=1))
    yield s
    import subprocess
    for d in decoys.values():
        d.stop()
    for env, url in (("staging", staging_url), ("production", production_url)):
        subprocess.run([str(localci.VENV_BIN / "modelci"), "deploy", "--teardown", "--namespace", ns,
                        "--environment", env, "--url", url], capture_output=True,
                       env={**os.environ, **remote_host.tcp_env()})


def _tags(registry, docker_client):
    import requests

    r = requests.get(f"http://{registry.host}/v2/mlops/wine/serving/tags/list", auth=registry.htpasswd,
                     timeout=5)
    return sorted(r.json().get("tags") or []) if r.status_code == 200 else []


def test_first_pipeline_serves_1_0_0_everywhere(scenario):
    a = scenario["A"]
    assert a.returncode == 0, a.output[-3000:]
    assert all(a.jobs.get(j) == "passed" for j in (TRAIN, GATE, BUILD, STAGING, PROD)), a.jobs
    lin = scenario["lineage_A"]
    assert lin["staging"]["model_version"] == "1.0.0"
    assert lin["production"]["model_version"] == "1.0.0"


def test_data_commit_reaches_staging_not_production(scenario):
    b = scenario["B"]
    assert b.returncode == 0, b.output[-3000:]
    assert {TRAIN, GATE, BUILD, STAGING} <= set(b.jobs), b.jobs
    assert PROD not in b.jobs  # manual: waits for a person
    lin = scenario["lineage_B"]
    assert lin["staging"]["model_version"] == "1.1.0"
    assert lin["production"]["model_version"] == "1.0.0"
    assert lin["staging"]["sha256"] != lin["production"]["sha256"]
    assert lin["staging"]["commit"] == scenario["commit_B"]
    assert "1.1.0" in scenario["tags_B"]


def test_gate_evidence_reaches_gitlab(scenario):
    """The gate's note lands on the commit (no MR), through the GitLab API (a strict stand-in server: no
    GitLab can run here). The new model's registry version: test_models_and_runs_reach_gitlab_ml."""
    state = json.loads((scenario["repo"].parent / "gitlab-B.json").read_text())
    notes = [n for d in state["discussions"].get(f"1217@{scenario['commit_B']}", []) for n in d["notes"]]
    assert len(notes) == 1 and "<!-- modelci-report:wine -->" in notes[0]["body"]
    assert "PROMOTE" in notes[0]["body"] or "NO_CHANGE" in notes[0]["body"]
    assert any(u["alt"] == "gate" for u in state["uploads"])


def test_models_and_runs_reach_gitlab_ml(scenario, mlflow_server, tmp_path):
    """One experiment run per training, one complete Model Registry version (files, metrics, job) per new
    model, in the real MLflow server behind the fake GitLab; `registry pull` of 1.1.0 verifies."""
    import e2e_model_registry

    e2e_model_registry.check(scenario, mlflow_server, tmp_path)


def test_staging_predictions_equal_the_registry_artifact(scenario, docker_client, tmp_path):
    import pandas as pd

    from modelci import artifact, dockerutil

    reg = scenario["registry"]
    ref = f"{reg.host}/mlops/wine/serving:1.1.0"
    docker_client.login(username=reg.htpasswd[0], password=reg.htpasswd[1], registry=reg.host)
    docker_client.images.pull(ref)
    model_dir = dockerutil.extract_dir(docker_client, ref, "/app/artifact", tmp_path / "artifact")
    estimator, meta = artifact.load_model(model_dir)  # verifies the sha256
    labels = docker_client.images.get(ref).labels
    served = scenario["lineage_B"]["staging"]
    assert served["sha256"] == labels["io.modelci.model.sha256"] == meta["sha256"]

    import io

    csv_at_b = localci.git(scenario["repo"], "show", f"{scenario['commit_B']}:model/data/wine.csv")
    rows = pd.read_csv(io.StringIO(csv_at_b)).tail(15)  # rows of the new batch
    features = [i["name"] for i in meta["inputs"]]
    records = json.loads(rows[features].to_json(orient="records"))
    expected = estimator.predict(pd.DataFrame.from_records(records, columns=features)).tolist()
    got = localci.predict(scenario["staging"], records)
    assert got == expected


def test_manual_production_job_promotes_the_staged_digest(scenario):
    c = scenario["C"]
    assert c.returncode == 0, c.output[-3000:]
    assert c.jobs.get(PROD) == "passed", c.jobs
    assert TRAIN not in c.jobs and BUILD not in c.jobs  # nothing rebuilt for production
    lin = scenario["lineage_C"]
    assert lin["production"]["model_version"] == "1.1.0"
    assert lin["production"]["sha256"] == scenario["lineage_B"]["staging"]["sha256"]


def test_app_only_change_rebuilds_around_the_champion_model(scenario):
    g = scenario["G"]
    assert g.returncode == 0, g.output[-3000:]
    assert TRAIN not in g.jobs and GATE not in g.jobs, g.jobs
    assert g.jobs.get(BUILD) == "passed" and g.jobs.get(STAGING) == "passed", g.jobs
    lin = scenario["lineage_G"]
    assert lin["staging"]["model_version"] == "1.1.1"  # patch: same model, new image
    assert lin["staging"]["sha256"] == scenario["lineage_C"]["production"]["sha256"]
    # production accepts it without a new verdict because it is the model production already serves
    assert scenario["G-production"].returncode == 0, scenario["G-production"].output[-3000:]
    assert scenario["lineage_G_prod"]["model_version"] == "1.1.1"


def test_irrelevant_commit_runs_nothing(scenario):
    d = scenario["D"]
    assert d.returncode == 0, d.output[-3000:]
    assert not set(d.jobs) & {TRAIN, GATE, BUILD, STAGING, PROD}, d.jobs


def test_unmeetable_threshold_fails_the_gate_and_pushes_no_image(scenario):
    f = scenario["F"]
    assert f.returncode != 0
    assert f.jobs.get(TRAIN) == "passed" and f.jobs.get(GATE) == "failed", f.jobs
    assert BUILD not in f.jobs and STAGING not in f.jobs
    assert "REJECT" in f.output
    assert scenario["tags_F"] == scenario["tags_G"]


def test_rerunning_an_old_pipelines_production_job_rolls_back_to_its_digest(scenario):
    r = scenario["R"]
    assert r.returncode == 0, r.output[-3000:]
    assert r.jobs == {PROD: "passed"}
    assert {"out/build.env", "out/build-verdict.json"} <= set(scenario["rollback_artifacts"])
    assert not any(a.startswith(("out/gate/", "out/model/")) for a in scenario["rollback_artifacts"])
    assert "release checks passed for production: model " in r.output
    assert "on basis verdict" in r.output  # the verdict kept with the build record, gate artifacts gone
    assert scenario["lineage_R"]["model_version"] == "1.0.0"
    assert scenario["lineage_R"]["sha256"] == scenario["lineage_A"]["production"]["sha256"]


def test_corrupt_csv_fails_before_any_image_is_built(scenario):
    e = scenario["E"]
    assert e.returncode != 0
    assert e.jobs.get(TRAIN) == "failed", e.jobs
    assert BUILD not in e.jobs or e.jobs[BUILD] != "passed"
    assert "wine.csv" in e.output  # the error names the file
    assert scenario["tags_E"] == scenario["tags_G"]  # no new image tag
    lin = scenario["lineage_E"]
    assert lin["staging"]["model_version"] == "1.1.1"
    assert lin["production"]["model_version"] == "1.1.1"


def test_deploys_reached_the_namespaced_host_and_never_the_runners_loopback(scenario):
    """Over ssh:// (shell executor) and TCP+TLS (Docker executor): the deploy jobs' output names the
    namespaced engine, and the decoys on the runner's loopback saw no request at all."""
    label = f"io.modelci.testhost={scenario['host'].info['name']}"
    assert "ssh://" not in scenario["A"].gitlab_variables.get("DOCKER_HOST", "")  # scoped, not global
    for name in ("A", "C", "R"):
        assert label in scenario[name].output, scenario[name].output[-2000:]
    assert len(scenario["decoys"]) >= 3  # the environments' ports and at least one backend port
    assert {p: d.requests for p, d in scenario["decoys"].items() if d.requests} == {}
