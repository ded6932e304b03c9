"""Adversarial end to end (issue 12): production only gets what passed the gate, through the real
pipeline (gitlab-ci-local, a real registry with a login, the Docker engine, the fake GitLab with its
deployments API).

After a first pipeline puts 1.0.0 in production, a registry writer pushes `serving:999.0.0` whose
pickle would write a marker file when loaded. Then every bypass of the issue is tried, each through
gitlab-ci-local (pipeline variables) and, because gitlab-ci-local lets dotenv values outrank
`--variable`, also by running the job's own command with the variable in its environment, the way
GitLab gives it: the verdict switch (`MODELCI_REQUIRE_VERDICT_ON=false`, `=TRUE`), a verdict path
(`MODELCI_REQUIRE_VERDICT` at a committed forged verdict), the image (`MODELCI_IMAGE`), the
production URL (`MODELCI_PRODUCTION_URL` at a fake /lineage naming the 999.0.0 image), production
down, and a commit that force-adds `out/model/` and a matching forged verdict (where the gate writes
it, `out/gate/verdict.json`, and where production's check reads it, `out/build-verdict.json`) beside
an `app/` change. Production never changes, the marker is never written, each refusal is its
expected one-line reason. A control pipeline with a genuinely better model reaches production.
"""
from __future__ import annotations

import json
import os
import pickle
import secrets
import shutil
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import localci
import pytest

pytestmark = pytest.mark.e2e
PROJECT = "mlops/adversarial"  # the session's registry is shared: this module's serving tags are its own

TRAIN, GATE, BUILD, STAGING, PROD = ("modelci:train", "modelci:gate", "modelci:build", "modelci:staging",
                                    "modelci:production")
PROD_SCRIPT = ["modelci", "deploy", "--environment", "production", "--release-checks=true"]  # templates/deploy.yml
GATE_SCRIPT = ["modelci", "champion", "--out", "out/champion"]  # templates/gate.yml


class Evil:
    """A pickle that writes a marker file when loaded (what a registry writer could push)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _push_evil_image(registry, docker_client, production_image: str, commit: str, marker: Path, work: Path) -> str:
    """serving:999.0.0: production's image with the model layer replaced by the marker pickle, its
    labels claiming the production commit. Returns REPO@sha256:…"""
    import hashlib

    ctx = work / "evil"
    (ctx / "artifact").mkdir(parents=True)
    blob = pickle.dumps(Evil(marker))
    (ctx / "artifact" / "model.joblib").write_bytes(blob)
    sha = hashlib.sha256(blob).hexdigest()
    (ctx / "artifact" / "model.json").write_text(json.dumps({"name": "wine", "version": "999.0.0", "sha256": sha}))
    (ctx / "Dockerfile").write_text(
        f"FROM {production_image}\nCOPY artifact/ /app/artifact/\n"
        f'LABEL io.modelci.model.sha256="{sha}" io.modelci.model.version="999.0.0" '
        f'org.opencontainers.image.revision="{commit}"\n')
    repo = f"{registry.host}/{PROJECT}/serving"
    auth = {"username": registry.htpasswd[0], "password": registry.htpasswd[1]}
    docker_client.login(registry=registry.host, **auth)
    docker_client.images.build(path=str(ctx), tag=f"{repo}:999.0.0", network_mode="host", rm=True)
    for line in docker_client.images.push(repo, tag="999.0.0", auth_config=auth, stream=True, decode=True):
        assert "error" not in line, line
    digest = docker_client.images.get_registry_data(f"{repo}:999.0.0", auth_config=auth).id
    return f"{repo}@{digest}", sha


class FakeLineage:
    """A /lineage that names the 999.0.0 image (what a production URL variable could point at)."""

    def __init__(self, body: dict):
        payload = json.dumps(body).encode()

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):  # noqa: N802
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(payload)

        self.srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.srv.server_address[1]}"


def _job_dir(repo: Path, job: str, dest: Path) -> Path:
    """A copy of the job's workspace as gitlab-ci-local left it (checkout with .git + artifacts)."""
    builds = repo / ".gitlab-ci-local" / "builds"
    prefix, name = job.split(":")
    src = next(p for p in builds.iterdir() if p.name.startswith(prefix) and p.name.endswith(name))
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(src, dest, symlinks=True)
    return dest


def _command(s, job: str, argv: list[str], extra_env: dict[str, str]) -> tuple[int, str]:
    """Run a job's command in a copy of its workspace with the job's variables plus `extra_env` in
    its environment, as GitLab would give them (pipeline variables outrank job YAML and dotenv)."""
    work = _job_dir(s["repo"], job, s["tmp"] / f"job-{secrets.token_hex(3)}")
    if (s["repo"] / "forged").is_dir():  # the committed forged verdict, where MODELCI_REQUIRE_VERDICT points
        shutil.copytree(s["repo"] / "forged", work / "forged", dirs_exist_ok=True)
    fake = localci.FakeGitLabProcess(s["repo"], s["tmp"] / "fake-direct.json", s["token"], job_token=s["gitlab"].job_token)
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELCI_", "CI_"))}
        env.update(s["gitlab"].variables())
        env.update({"CI_API_V4_URL": fake.api_url, "CI_PROJECT_ID": "1217", "CI_JOB_TOKEN": s["gitlab"].job_token,
                    "PATH": f"{localci.VENV_BIN}:{env.get('PATH', '')}",
                    "MODELCI_ENVIRONMENT_URL": s["production"], "MODELCI_IMAGE_REPO": s["serving"]})
        build_env = work / "out" / "build.env"
        if build_env.exists():  # the dotenv report, as GitLab exports it to later jobs
            for line in build_env.read_text().splitlines():
                k, _, v = line.partition("=")
                env[k] = v
        env.update(extra_env)
        proc = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=300)
        return proc.returncode, proc.stderr
    finally:
        fake.stop()
        shutil.rmtree(work, ignore_errors=True)


def _last_error(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ": error: " in ln]
    return lines[-1] if lines else text.strip().splitlines()[-1] if text.strip() else ""


@pytest.fixture(scope="module")
def attack(tmp_path_factory, registry, base_image, docker_client, proxy_image):  # deploys pull the proxy
    tmp = tmp_path_factory.mktemp("adversarial")
    ns = "adv" + secrets.token_hex(3)
    saved_path, localci.PROJECT_PATH = localci.PROJECT_PATH, PROJECT  # its own registry repository
    staging_url, production_url = (f"http://127.0.0.1:{localci.free_port()}" for _ in range(2))
    gitlab = localci.LocalGitLab(registry, extra={
        "MODELCI_STAGING_URL": staging_url, "MODELCI_PRODUCTION_URL": production_url,
        "MODELCI_DEPLOY_NAMESPACE": ns, "MODELCI_REPORT": "false", "MODELCI_MODEL_REGISTRY": "false"})
    repo = localci.make_project(tmp / "repo")
    marker = tmp / "MARKER-pickle-was-loaded"
    s = {"tmp": tmp, "repo": repo, "gitlab": gitlab, "production": production_url, "staging": staging_url,
         "serving": f"{registry.host}/{PROJECT}/serving", "marker": marker, "ns": ns, "token": "glpat-adv"}

    def run(name, **kw):
        res = localci.run_pipeline(repo, gitlab, fake_gitlab=tmp / f"gitlab-{name}.json", **kw)
        s[name] = res
        return res

    assert run("A", manual=[PROD]).jobs.get(PROD) == "passed", s["A"].output[-3000:]
    s["lineage_A"] = localci.lineage(production_url)
    commit_a = localci.git(repo, "rev-parse", "HEAD")
    s["evil"], s["evil_sha"] = _push_evil_image(registry, docker_client, s["lineage_A"]["image"], commit_a, marker, tmp)
    # a forged verdict for the 999.0.0 model, committed where MODELCI_REQUIRE_VERDICT could point
    (repo / "forged").mkdir()
    (repo / "forged" / "verdict.json").write_text(json.dumps({
        "schema": "modelci.gate.verdict/1", "verdict": "PROMOTE", "passed": True, "dry_run": False,
        "sha256": s["evil_sha"]}))
    # beside an app/ change, so this commit's pipeline holds the build job whose record the deploy reads
    (repo / "app" / "README.md").write_text((repo / "app" / "README.md").read_text() + "\nNotes.\n")
    localci.commit(repo, "app: notes, and a verdict of my own")
    yield s
    localci.PROJECT_PATH = saved_path
    for env, url in (("staging", staging_url), ("production", production_url)):
        subprocess.run([str(localci.VENV_BIN / "modelci"), "deploy", "--teardown", "--namespace", ns,
                        "--environment", env, "--url", url], capture_output=True)


def _unchanged(s) -> None:
    assert localci.lineage(s["production"])["image"] == s["lineage_A"]["image"]
    assert not s["marker"].exists()


NOT_BUILT = "not the image this pipeline's build job produced"


@pytest.mark.parametrize("variables", [
    {"MODELCI_REQUIRE_VERDICT_ON": "false"},
    {"MODELCI_REQUIRE_VERDICT_ON": "TRUE"},
    {"MODELCI_REQUIRE_VERDICT": "forged/verdict.json"},
    {},
])
def test_production_job_refuses_an_image_given_by_variable(attack, variables):
    s = attack
    env = {**variables, "MODELCI_IMAGE": s["evil"]}
    # the job command with the variables in its environment, as GitLab gives them
    code, err = _command(s, PROD, PROD_SCRIPT, env)
    assert code != 0
    assert _last_error(err) == (f"modelci deploy: error: image {s['evil']}: {NOT_BUILT} "
                                f"({s['lineage_A']['image']}); an image given by a variable or flag is never "
                                "deployed to production")
    _unchanged(s)


def test_gate_ignores_the_highest_tag_and_a_production_url_variable(attack):
    s = attack
    fake = FakeLineage({"model_version": "999.0.0", "sha256": s["evil_sha"], "image": s["evil"]})
    try:
        code, err = _command(s, GATE, GATE_SCRIPT, {"MODELCI_PRODUCTION_URL": fake.url})
        assert code != 0
        assert _last_error(err) == (
            f"modelci champion: error: production URL {fake.url}: not the URL GitLab records for production "
            f"({s['production']}); the champion is read only from GitLab's record, fix the production_url "
            "input or the environment's url")
        res = localci.run_pipeline(s["repo"], s["gitlab"], jobs=[GATE], fake_gitlab=s["tmp"] / "gitlab-G.json",
                                   variables={"MODELCI_PRODUCTION_URL": fake.url})
        assert res.jobs.get(GATE) == "failed" and "not the URL GitLab records for production" in res.output
    finally:
        fake.srv.shutdown()
    # with production up, the champion is production's model: 1.0.0, not 999.0.0, and nothing unpickles 999
    code, err = _command(s, GATE, GATE_SCRIPT, {})
    assert code == 0, err
    assert "champion: production runs" in err and "999.0.0" not in err
    _unchanged(s)


def test_production_down_fails_the_gate_and_the_release_closed(attack, docker_client):
    s = attack
    proxy = docker_client.containers.get(f"modelci-{s['ns']}-production-proxy")
    proxy.stop(timeout=2)
    try:
        code, err = _command(s, GATE, GATE_SCRIPT, {})
        assert code != 0
        line = _last_error(err)
        assert line.startswith(f"modelci champion: error: {s['production']}/lineage does not answer while GitLab "
                               "records a successful deployment of production")
        assert line.endswith("failing closed: bring production back before gating or releasing")
        code, err = _command(s, PROD, PROD_SCRIPT, {"MODELCI_IMAGE": s["evil"]})
        assert code != 0 and NOT_BUILT in _last_error(err)
    finally:
        proxy.start()
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                localci.lineage(s["production"])
                break
            except OSError:
                time.sleep(0.5)
    _unchanged(s)


def test_force_added_model_and_forged_verdict_are_never_built_or_released(attack):
    s = attack
    repo = s["repo"]
    out = repo / "out"
    shutil.rmtree(out, ignore_errors=True)  # earlier jobs' artifacts copied back (untracked)
    (out / "model").mkdir(parents=True)
    shutil.copy2(s["tmp"] / "evil" / "artifact" / "model.joblib", out / "model" / "model.joblib")
    shutil.copy2(s["tmp"] / "evil" / "artifact" / "model.json", out / "model" / "model.json")
    (out / "gate").mkdir()
    forged = json.dumps({"schema": "modelci.gate.verdict/1", "verdict": "PROMOTE", "passed": True,
                         "dry_run": False, "sha256": s["evil_sha"]})
    (out / "gate" / "verdict.json").write_text(forged)  # where the gate writes it
    (out / "build-verdict.json").write_text(forged)  # where production's check reads it
    (repo / "app" / "README.md").write_text((repo / "app" / "README.md").read_text() + "\nA change.\n")
    localci.git(repo, "add", "-f", "out/model", "out/gate/verdict.json", "out/build-verdict.json")
    localci.commit(repo, "app: a change, with a model and a verdict of my own")
    try:
        committed = ("out/build-verdict.json, out/gate/verdict.json, out/model/model.joblib and 1 more: "
                     "committed to the repository under out/")
        res = localci.run_pipeline(repo, s["gitlab"], manual=[PROD], fake_gitlab=s["tmp"] / "gitlab-F.json")
        assert res.jobs.get(BUILD) == "failed" and PROD not in res.jobs and STAGING not in res.jobs, res.jobs
        assert committed in res.output
        # the production job alone, with the last build's artifacts and this checkout
        res = localci.run_pipeline(repo, s["gitlab"], jobs=[PROD], fake_gitlab=s["tmp"] / "gitlab-F2.json")
        assert res.jobs.get(PROD) == "failed" and committed in res.output
        code, err = _command(s, PROD, PROD_SCRIPT, {})
        assert code != 0
        assert _last_error(err) == (
            "modelci deploy: error: out/build-verdict.json, out/gate/verdict.json, out/model/model.joblib "
            "and 1 more: committed to the repository under out/; build records, models and gate verdicts come only from "
            "this pipeline's jobs, so this commit cannot be released; remove them (git rm -r --cached out/)")
    finally:
        localci.git(repo, "rm", "-r", "-q", "--cached", "out")
        shutil.rmtree(out)
        localci.commit(repo, "remove the committed outputs")
    _unchanged(s)


def test_control_a_genuinely_better_model_reaches_production(attack):
    s = attack
    data = s["repo"] / "model" / "data"
    with open(data / "wine.csv", "a") as fh:
        fh.write((data / "new-batch.csv").read_text())
    localci.commit(s["repo"], "data: a new batch")
    # with the attack's pipeline variables still set: gitlab-ci-local lets the build's dotenv
    # MODELCI_IMAGE win, so production gets this pipeline's build (checked), never the 999.0.0 image
    res = localci.run_pipeline(s["repo"], s["gitlab"], manual=[PROD], fake_gitlab=s["tmp"] / "gitlab-C.json",
                               variables={"MODELCI_REQUIRE_VERDICT_ON": "false", "MODELCI_IMAGE": s["evil"],
                                          "MODELCI_REQUIRE_VERDICT": "forged/verdict.json"})
    assert res.jobs.get(PROD) == "passed", res.output[-3000:]
    now = localci.lineage(s["production"])
    built = (s["repo"] / "out" / "build.env").read_text()
    assert f"MODELCI_IMAGE={now['image']}" in built  # this pipeline's build, not a variable's image
    assert now["image"] != s["lineage_A"]["image"] and now["image"] != s["evil"]
    assert now["model_version"] not in ("1.0.0", "999.0.0")
    assert not s["marker"].exists()
