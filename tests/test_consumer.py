"""Another repository uses modelci the way the README tells users to: its .gitlab-ci.yml is the
README's snippet, verbatim, which includes this repository's components at a release tag.

Everything a GitLab user relies on is real here, except GitLab itself:
  - this repository's tracked files are published, tagged, in a local SSH git server
    (tools/sshgit.py); the consumer's `origin` points at it, and gitlab-ci-local fetches the
    components from it with `git archive --remote`, as it does from a GitLab server;
  - the tools image is built from images/tools.Dockerfile and pushed to the registry (with a login)
    under the name the components default to, `$CI_REGISTRY/modelci/modelci/tools:<version>`;
  - every job runs in that image (Docker executor, host networking, the host's Docker socket in
    place of a dind service), with the consumer's own data: Portuguese product names and
    descriptions (free text) -> category (tests/consumer/);
  - a fake GitLab API (tests/gitlab_fake.py) takes the gate's note and the model registry upload.

Project CI/CD variables are given with --variable (they override the snippet's YAML `variables:`, as
project variables do on GitLab): the two environment URLs (free loopback ports), the serving base
image available here, and the loopback GitLab/registry addresses.
"""
from __future__ import annotations

import json
import re
import secrets
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import localci
import pytest
import sshgit

pytestmark = pytest.mark.e2e

ROOT = localci.ROOT
CONSUMER_SRC = ROOT / "tests" / "consumer"
PROJECT = "group/consumer"
# the README snippet includes the composite `pipeline` component with a custom job prefix
TRAIN, GATE, BUILD, STAGING, PROD = ("ml:train", "ml:gate", "ml:build", "ml:staging", "ml:production")
PUBLISH = "ml:publish"
SNIPPET = re.compile(r"<!-- consumer-snippet -->\s*```yaml\n(.*?)```\s*<!-- /consumer-snippet -->", re.S)


def readme_snippet() -> str:
    m = SNIPPET.search((ROOT / "README.md").read_text())
    assert m, "README.md: no ```yaml block between <!-- consumer-snippet --> and <!-- /consumer-snippet -->"
    return m.group(1)


def snippet_ref(snippet: str) -> str:
    refs = set(re.findall(r"modelci/modelci/\w+@(\S+)", snippet))
    assert len(refs) == 1, f"the snippet should pin one version of every component: {refs}"
    return refs.pop()


def tools_tag() -> str:
    """The tag of the tools image the components run in by default (their `image` input)."""
    tags = {t for tpl in (ROOT / "templates").glob("*.yml") for t in re.findall(r'/tools:([^"\s]+)"', tpl.read_text())}
    assert len(tags) == 1, tags
    return tags.pop()


@pytest.fixture(scope="module")
def tools_image(base_image):
    """images/tools.Dockerfile built once for this module (Docker's layer cache makes a rebuild of an
    unchanged tree a cache hit)."""
    tag = "local/modelci-tools:dev"
    localci.build_tools_image(tag, base_image=base_image)
    return tag


@pytest.fixture(scope="module")
def git_server():
    server = sshgit.SSHGitServer().start()
    yield server
    server.stop()


def publish_modelci(server: sshgit.SSHGitServer, work: Path, ref: str) -> str:
    """This repository's current files (tracked and new, not ignored), committed and tagged `ref`,
    pushed to modelci/modelci.git on the SSH server. Returns the commit."""
    work.mkdir(parents=True)
    localci.git(work, "init", "-q", "-b", "main")
    for rel in localci.tracked_files(ROOT):
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, work / rel)
    localci.git(work, "add", "-A")
    localci.git(work, "commit", "-q", "-m", f"modelci {ref}")
    localci.git(work, "tag", "-a", ref, "-m", f"release {ref}")
    server.create_repo("modelci/modelci")
    server.push(work, "modelci/modelci", "main", ref)
    return localci.git(work, "rev-parse", "HEAD")


def make_consumer(server: sshgit.SSHGitServer, repo: Path, snippet: str) -> Path:
    """The consumer repository: an empty first commit pushed to its origin on the SSH server (so
    origin/main exists and the next commit's files all count as changed), then its own model
    config and data plus the README snippet as .gitlab-ci.yml."""
    repo.mkdir(parents=True)
    localci.git(repo, "init", "-q", "-b", "main")
    localci.git(repo, "commit", "-q", "--allow-empty", "-m", "empty base")
    server.create_repo(PROJECT)
    localci.git(repo, "remote", "add", "origin", server.url(PROJECT))
    server.push(repo, PROJECT, "main")
    subprocess.run(["git", "-C", str(repo), "fetch", "-q", "origin"], check=True, env=server.env())
    localci.git(repo, "remote", "set-head", "origin", "main")
    shutil.copytree(CONSUMER_SRC / "model", repo / "model")
    (repo / ".gitlab-ci.yml").write_text(snippet)
    localci.git(repo, "add", "-A")
    localci.git(repo, "commit", "-q", "-m", "produtos: first model")
    return repo


@pytest.fixture(scope="module")
def consumer(tmp_path_factory, registry, base_image, tools_image, git_server, docker_client, proxy_image):
    tmp = tmp_path_factory.mktemp("consumer")
    snippet = readme_snippet()
    ref = snippet_ref(snippet)
    published = publish_modelci(git_server, tmp / "modelci", ref)

    # the tools image under the name the components default to, in the registry that needs a login
    image = f"{registry.host}/modelci/modelci/tools:{tools_tag()}"
    localci.push_image(tools_image, image, registry)

    # one job gets an image of its own (a job-level override in the consumer's file): with no hidden
    # job shared between component files, every other job keeps the composite's image
    other_image = f"{registry.host}/tools-mirror/modelci-tools:{tools_tag()}"
    localci.push_image(tools_image, other_image, registry)
    snippet = snippet + f'\n"{STAGING}":\n  image: {other_image}\n'
    repo = make_consumer(git_server, tmp / "consumer", snippet)
    staging_url, production_url = f"http://127.0.0.1:{localci.free_port()}", f"http://127.0.0.1:{localci.free_port()}"
    ns = "consumer" + secrets.token_hex(3)
    gitlab = localci.LocalGitLab(registry, job_token="job-" + secrets.token_hex(12))
    # a project CI/CD variable picks the generic package registry (GitLab without the Model Registry)
    project_vars = {"STAGING_URL": staging_url, "PRODUCTION_URL": production_url, "MODELCI_DEPLOY_NAMESPACE": ns,
                    "MODELCI_MODEL_REGISTRY": "generic"}
    state = tmp / "gitlab-state.json"
    Path("/tmp/modelci-locks").mkdir(exist_ok=True)
    res = localci.run_docker_pipeline(
        repo, gitlab, project_path=PROJECT, manual=[PROD], variables=project_vars,
        volumes=["/tmp/modelci-locks:/tmp/modelci-locks"], env={"GIT_SSH_COMMAND": git_server.ssh_command},
        fake_gitlab=state)
    (tmp / "pipeline.log").write_text(res.output)
    print(f"\nconsumer pipeline: {res.seconds:.0f} s, jobs {json.dumps(res.job_seconds)}; log {tmp / 'pipeline.log'}")
    s = {"repo": repo, "result": res, "image": image, "other_image": other_image, "published": published,
         "ref": ref, "state": state, "staging": staging_url, "production": production_url, "registry": registry,
         "snippet": snippet, "gitlab": gitlab, "project_vars": project_vars}
    for env, url in (("staging", staging_url), ("production", production_url)):
        try:
            s[f"lineage_{env}"] = localci.lineage(url)
        except OSError as exc:
            s[f"lineage_{env}"] = {"error": str(exc)}
    yield s
    for env, url in (("staging", staging_url), ("production", production_url)):
        subprocess.run([str(localci.VENV_BIN / "modelci"), "deploy", "--teardown", "--namespace", ns,
                        "--environment", env, "--url", url], capture_output=True)


def test_consumer_ci_file_is_the_readme_snippet():
    """tests/consumer/.gitlab-ci.yml is a browsable copy; the README is what the test runs (plus one
    job-level image override)."""
    assert (CONSUMER_SRC / ".gitlab-ci.yml").read_text() == readme_snippet(), \
        "tests/consumer/.gitlab-ci.yml differs from the README snippet: copy the snippet into it"


def test_components_come_from_the_tagged_release_over_ssh(consumer):
    res = consumer["result"]
    assert f"downloaded modelci/modelci {consumer['ref']}" in res.output, res.output[:3000]
    fetched = consumer["repo"] / ".gitlab-ci-local" / "includes" / "127.0.0.1" / "modelci" / "modelci" / consumer["ref"]
    for name in ("pipeline", "train", "gate", "build", "deploy"):
        got = (fetched / "templates" / f"{name}.yml").read_text()
        assert got == (ROOT / "templates" / f"{name}.yml").read_text()


def test_pipeline_runs_every_job_in_the_tools_image(consumer):
    res = consumer["result"]
    assert res.returncode == 0, res.output[-5000:]
    assert all(res.jobs.get(j) == "passed" for j in (TRAIN, GATE, BUILD, STAGING, PROD)), res.jobs
    for job in (TRAIN, GATE, BUILD, PROD):  # the default image input: $CI_REGISTRY/modelci/modelci/tools:X
        assert re.search(rf"(^|\s){re.escape(job)} starting {re.escape(consumer['image'])} ", res.output, re.M), job
    # the one job given another image runs in it, and only that job
    assert re.search(rf"(^|\s){re.escape(STAGING)} starting {re.escape(consumer['other_image'])} ", res.output, re.M)
    assert len(re.findall(rf" starting {re.escape(consumer['other_image'])} ", res.output)) == 1
    # the build had no app/ or Dockerfile of its own: the serving app bundled in the tools image
    assert "using modelci's serving app from /opt/modelci-serving" in res.output


def test_staging_and_production_serve_the_consumer_model(consumer):
    for env in ("staging", "production"):
        lin = consumer[f"lineage_{env}"]
        assert lin.get("name") == "produtos", lin
        assert lin.get("model_version") == "1.0.0", lin
        assert lin.get("commit") == localci.git(consumer["repo"], "rev-parse", "HEAD")
    assert consumer["lineage_staging"]["sha256"] == consumer["lineage_production"]["sha256"]


def test_portuguese_text_predictions_with_and_without_accents(consumer):
    records = [
        {"nome": "Panela de pressão 6 litros", "descricao": "Panela de pressão de inox para fogão a gás"},
        {"nome": "Panela de pressao 6 litros", "descricao": "Panela de pressao de inox para fogao a gas"},
        {"nome": "Mouse óptico USB", "descricao": "Mouse com fio para computador e notebook"},
        {"nome": "Shampoo anticaspa", "descricao": "Shampoo para cabelos oleosos com caspa"},
        {"nome": "Boneca bebê", "descricao": "Boneca que chora e fala para crianças"},
        {"nome": "Tenis de corrida masculino", "descricao": "Tenis com amortecimento para corrida"},
    ]
    expected = ["casa e cozinha", "casa e cozinha", "informática", "beleza e saúde", "brinquedos",
                "esporte e lazer"]
    for env in ("staging", "production"):
        assert localci.predict(consumer[env], records) == expected


def test_gate_report_and_model_registry_reach_the_consumer_project(consumer):
    state = json.loads(consumer["state"].read_text())
    head = localci.git(consumer["repo"], "rev-parse", "HEAD")
    notes = [n for d in state["discussions"].get(f"1217@{head}", []) for n in d["notes"]]
    assert len(notes) == 1 and "<!-- modelci-report:produtos -->" in notes[0]["body"], state["discussions"]
    pkgs = [p for p in state["packages"] if p.get("name") == "produtos" and p.get("version") == "1.0.0"]
    assert pkgs, state["packages"]


def test_no_secret_in_any_log(consumer):
    """Neither the registry password nor any token appears in gitlab-ci-local's output or in anything
    it wrote under .gitlab-ci-local/ (job logs, artifacts, dotenv reports)."""
    res = consumer["result"]
    given = res.gitlab_variables
    secrets_ = {given["CI_REGISTRY_PASSWORD"], given["CI_JOB_TOKEN"], given["MODELCI_GITLAB_TOKEN"]}
    assert all(len(v) >= 8 for v in secrets_)
    leaks = [v[:4] + "..." for v in secrets_ if v in res.output]
    state_dir = consumer["repo"] / ".gitlab-ci-local"
    logs = [p for p in state_dir.rglob("*") if p.is_file()]
    assert any(p.suffix == ".log" for p in logs), "no job log found under .gitlab-ci-local/"
    for p in logs:
        data = p.read_bytes()
        leaks += [f"{p.relative_to(state_dir)}: {v[:4]}..." for v in secrets_ if v.encode() in data]
    assert not leaks, leaks


def test_serving_image_is_in_the_consumers_registry_behind_a_login(consumer):
    import requests

    reg = consumer["registry"]
    url = f"http://{reg.host}/v2/{PROJECT}/serving/tags/list"
    assert requests.get(url, timeout=5).status_code == 401
    tags = requests.get(url, auth=reg.htpasswd, timeout=5).json().get("tags") or []
    assert "1.0.0" in tags, tags


def to_project_form(snippet: str, ref: str) -> str:
    """The same pipeline with `include: project:` + `file:` (GitLab's form before CI/CD components;
    inputs work the same way)."""
    return re.sub(r"- component: \$CI_SERVER_FQDN/modelci/modelci/(\w+)@\S+",
                  rf"- project: modelci/modelci\n    ref: {ref}\n    file: /templates/\1.yml", snippet)


def test_include_project_file_form_resolves_the_same_jobs(consumer, git_server, tmp_path):
    """Users on a GitLab without components include the files by project; over the same SSH server
    the listed pipeline (jobs, stages, when) is the same as with the README's component form."""
    repo = Path(shutil.copytree(consumer["repo"], tmp_path / "consumer", ignore=shutil.ignore_patterns(".gitlab-ci-local")))
    gitlab = localci.LocalGitLab(consumer["registry"])
    env = {"GIT_SSH_COMMAND": git_server.ssh_command}
    localci.git(repo, "update-ref", "refs/remotes/origin/main", "HEAD~1")  # the commit counts as changed
    as_components = localci.list_jobs(repo, gitlab, project_path=PROJECT, env=env)
    project_form = to_project_form(consumer["snippet"], consumer["ref"])
    assert "component:" not in project_form and project_form.count("- project: modelci/modelci") == 1
    (repo / ".gitlab-ci.yml").write_text(project_form)
    shutil.rmtree(repo / ".gitlab-ci-local", ignore_errors=True)
    as_files = localci.list_jobs(repo, gitlab, project_path=PROJECT, env=env)
    assert as_files == as_components
    assert as_components == {TRAIN: "on_success", GATE: "on_success", BUILD: "on_success",
                             "ml:publish": "always", STAGING: "on_success", PROD: "manual",
                             "ml:monitor": "never"}  # schedules only


def test_commit_breaking_an_expectation_is_rejected_with_the_case_named(consumer, git_server, tmp_path):
    """The consumer's config expects "Casinha de bonecas" to be a toy (gate.expectations). A data
    commit relabels that catalogue row as kitchenware, the retrained model follows it, and the gate
    rejects the model although its hold-out metrics did not move: the failing case is named in the
    commit note (fake GitLab) and in the JUnit report; nothing is built, production keeps 1.0.0.
    Runs on a copy of the consumer repository, so the module's other tests keep their HEAD."""
    repo = Path(shutil.copytree(consumer["repo"], tmp_path / "consumer",
                                ignore=shutil.ignore_patterns(".gitlab-ci-local", "out")))
    csv = repo / "model" / "data" / "produtos.csv"
    text = csv.read_text()
    row = next(line for line in text.splitlines() if line.startswith("133,Casinha de bonecas,"))
    assert row.endswith(",brinquedos")
    csv.write_text(text.replace(row, row.rsplit(",", 1)[0] + ",casa e cozinha"))
    head = localci.commit(repo, "data: relabel Casinha de bonecas")
    state = tmp_path / "gitlab-state.json"
    res = localci.run_docker_pipeline(
        repo, consumer["gitlab"], project_path=PROJECT, manual=[PROD], variables=consumer["project_vars"],
        volumes=["/tmp/modelci-locks:/tmp/modelci-locks"], env={"GIT_SSH_COMMAND": git_server.ssh_command},
        fake_gitlab=state)
    (tmp_path / "pipeline.log").write_text(res.output)
    print(f"\nexpectation pipeline: {res.seconds:.0f} s, jobs {json.dumps(res.job_seconds)}")
    assert res.jobs.get(TRAIN) == "passed" and res.jobs.get(GATE) == "failed", res.jobs
    assert res.jobs.get(BUILD) != "passed" and res.jobs.get(STAGING) != "passed", res.jobs
    if PUBLISH not in res.jobs:
        # GitLab runs the `when: always` publish job after the REJECT (stages train, gate, build,
        # publish); gitlab-ci-local 4.72.0 ends the pipeline at the skipped build stage, so run it as
        # the next job of this pipeline, with the artifacts the gate job left
        res = localci.run_docker_pipeline(
            repo, consumer["gitlab"], project_path=PROJECT, jobs=[PUBLISH], variables=consumer["project_vars"],
            env={"GIT_SSH_COMMAND": git_server.ssh_command}, fake_gitlab=state)
        (tmp_path / "publish.log").write_text(res.output)
    assert res.jobs.get(PUBLISH) == "passed", res.output[-3000:]

    notes = [n for d in json.loads(state.read_text())["discussions"].get(f"1217@{head}", []) for n in d["notes"]]
    assert len(notes) == 1, notes
    body = notes[0]["body"]
    assert "REJECT" in body and "| expectation casinha de bonecas is a toy | **FAIL** |" in body, body
    assert "| expectation boneca de pano is a toy | pass |" in body

    junit = sorted((repo / ".gitlab-ci-local" / "artifacts").glob("*gate/out/gate/junit.xml"))
    assert len(junit) == 1, "the gate job's artifacts should hold one out/gate/junit.xml"
    failures = ET.parse(junit[0]).getroot().findall(".//testcase[failure]")
    assert [f.get("name") for f in failures] == ["expectation casinha de bonecas is a toy"]
    assert "predicted 'casa e cozinha'" in failures[0].find("failure").get("message")
    assert localci.lineage(consumer["production"])["model_version"] == "1.0.0"
