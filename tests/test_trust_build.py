"""Builds never overwrite (issue 12 part 5), and a retried build ends with one version tag (issue 14):
oci.push_version against a real, login-protected registry and the Docker engine. Two builds racing
for one version: at most one pushes it, the tag names the winner's image, the loser fails closed with
a one-line reason; a version claimed by one pipeline is never offered to another, and a retry of the
same pipeline's build job resumes it."""
from __future__ import annotations

import io
import secrets
import tarfile
import threading

import pytest

from modelci import dockerutil
from modelci.errors import ModelCIError
from modelci.oci import CLAIM, ImageReader, ImageRepo, RegistryClient, next_version, push_version

REASONS = ("another build claims this version at the same time",
           "before the push, the tag names another image",
           "while claiming it, the tag names another image",
           "after the push the tag names another image")


@pytest.fixture
def engine(docker_client, registry, monkeypatch):
    monkeypatch.setenv("CI_REGISTRY_USER", registry.htpasswd[0])
    monkeypatch.setenv("CI_REGISTRY_PASSWORD", registry.htpasswd[1])
    monkeypatch.delenv("CI_JOB_ID", raising=False)
    monkeypatch.delenv("CI_PIPELINE_ID", raising=False)  # each build its own pipeline unless a test says
    repo = ImageRepo.parse(f"{registry.host}/race/{secrets.token_hex(3)}/serving")
    auth = dockerutil.login(docker_client, registry.host)
    made = []

    def image(content: str, labels: dict[str, str] | None = None):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            data = content.encode()
            info = tarfile.TarInfo("build.txt")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        name = f"local/race-{secrets.token_hex(4)}"
        changes = [f"LABEL {k}={v}" for k, v in (labels or {}).items()]
        docker_client.api.import_image_from_data(buf.getvalue(), repository=name, tag="x", changes=changes)
        img = docker_client.images.get(f"{name}:x")
        made.append(img.id)
        return img

    yield docker_client, repo, auth, image
    for image_id in made:
        try:
            docker_client.images.remove(image_id, force=True)
        except Exception:  # noqa: BLE001
            pass


def _tag(registry, repo, tag):
    return ImageReader(repo.registry, *registry.htpasswd).tag_image(repo.path, tag)


def test_an_existing_version_is_never_overwritten(engine, registry):
    c, repo, auth, image = engine
    first, second = image("first"), image("second")
    _, ref = push_version(c, repo, "1.0.0", ["abc123"], first, auth)
    assert _tag(registry, repo, "1.0.0")[1] == first.id and ref.startswith(f"{repo}@sha256:")
    assert push_version(c, repo, "1.0.0", [], first, auth)[1] == ref  # a re-run of the same image
    with pytest.raises(ModelCIError, match=r"^.*:1\.0\.0: before the push, the tag names another image "
                                           r"\(sha256:.{12}…\); a version tag is never overwritten"):
        push_version(c, repo, "1.0.0", [], second, auth)
    assert _tag(registry, repo, "1.0.0")[1] == first.id


@pytest.mark.parametrize("round_", range(int(__import__("os").environ.get("RACE_ROUNDS", "3"))))
def test_two_concurrent_builds_never_both_push_a_version(engine, registry, round_):
    c, repo, auth, image = engine
    builds = {"A": image(f"A{round_}"), "B": image(f"B{round_}")}
    results: dict[str, object] = {}
    start = threading.Barrier(2)

    def build(name):
        start.wait()
        try:
            results[name] = push_version(c, repo, "1.1.0", [], builds[name], auth)[1]
        except ModelCIError as exc:
            results[name] = exc

    threads = [threading.Thread(target=build, args=(n,)) for n in builds]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    winners = [n for n, r in results.items() if isinstance(r, str)]
    assert len(winners) <= 1, results
    for name, r in results.items():
        if isinstance(r, ModelCIError):
            assert any(reason in str(r) for reason in REASONS) and "\n" not in str(r), r
    tag = _tag(registry, repo, "1.1.0")
    if winners:
        assert tag[1] == builds[winners[0]].id  # the tag names the winner's image, never the loser's
    # the next build never reuses a claimed version
    user, password = registry.htpasswd
    tags = RegistryClient(repo.registry, user, password).tags(repo.path)
    assert next_version(tags, 1) == "1.2.0"


def test_build_job_is_serialised_per_serving_image():
    from pathlib import Path

    import yaml

    body = list(yaml.safe_load_all((Path(__file__).resolve().parents[1] / "templates" / "build.yml").read_text()))[1]
    job = body["$[[ inputs.job_prefix ]]build"]
    # one name for the project's builds: GitLab's resource_group allows no ':' (a registry port), so it
    # cannot name the serving image; oci.push_version's claim tags also serialise builds it does not cover
    assert job["resource_group"] == "modelci-build"


def _versions(registry, repo):
    user, password = registry.htpasswd
    tags = RegistryClient(repo.registry, user, password).tags(repo.path)
    return tags, sorted(t for t in tags if CLAIM not in t and t.count(".") == 2)


LABELS = {"io.modelci.model.sha256": "a" * 64, "org.opencontainers.image.revision": "c" * 40}


@pytest.mark.parametrize("fails_on", ["version tag", "commit tag"])
def test_a_retried_build_job_ends_with_one_version_tag(engine, registry, monkeypatch, fails_on):
    """The image push fails (before, or after, the version tag is written); GitLab's retry of the build
    job (same pipeline, new job id, an image rebuilt with a new id) resumes the same version: exactly one
    version tag, naming one image with this model; the next pipeline gets the next version."""
    from modelci import dockerutil

    c, repo, auth, image = engine
    first, retry = image("attempt 1", LABELS), image("attempt 2", LABELS)
    real_push = dockerutil.stream_push
    failing = {"1.0.0": "version tag", "abc1234": "commit tag"}

    def push(client, repository, tag, auth_config):
        if failing.get(tag) == fails_on:
            failing.clear()
            raise ModelCIError(f"push {repository}:{tag} failed: received unexpected HTTP status: 500")
        return real_push(client, repository, tag, auth_config)

    monkeypatch.setattr(dockerutil, "stream_push", push)
    monkeypatch.setenv("CI_PIPELINE_ID", "901")
    tags, _ = _versions(registry, repo)
    version = next_version(tags, 1, owner="901")
    with pytest.raises(ModelCIError, match="500"):
        push_version(c, repo, version, ["abc1234"], first, auth, "901")

    monkeypatch.setenv("CI_JOB_ID", "7702")  # the retried job
    tags, _ = _versions(registry, repo)
    assert next_version(tags, 1, owner="901") == version == "1.0.0"
    _, ref = push_version(c, repo, version, ["abc1234"], retry, auth, "901")
    tags, versions = _versions(registry, repo)
    assert versions == ["1.0.0"]
    kept = first if fails_on == "commit tag" else retry  # a pushed version tag is never re-pointed
    assert _tag(registry, repo, "1.0.0")[1] == kept.id == _tag(registry, repo, "abc1234")[1]
    assert ref == f"{repo}@{_tag(registry, repo, '1.0.0')[0]}"
    assert [t for t in tags if CLAIM in t] == ["1.0.0-claim-901"]
    assert next_version(tags, 1, owner="902") == "1.1.0"  # another pipeline never reuses it


def test_a_retry_never_adopts_an_image_of_another_model(engine, registry, monkeypatch):
    from modelci import dockerutil

    c, repo, auth, image = engine
    first = image("attempt 1", LABELS)
    other = image("attempt 2", {**LABELS, "io.modelci.model.sha256": "b" * 64})
    real_push = dockerutil.stream_push
    monkeypatch.setattr(dockerutil, "stream_push", lambda cl, r, tag, a: (_ for _ in ()).throw(
        ModelCIError("push failed: 500")) if tag == "abc1234" else real_push(cl, r, tag, a))
    with pytest.raises(ModelCIError, match="500"):
        push_version(c, repo, "1.0.0", ["abc1234"], first, auth, "903")
    monkeypatch.setattr(dockerutil, "stream_push", real_push)
    with pytest.raises(ModelCIError, match=r"1\.0\.0: this pipeline's earlier build pushed an image with another "
                                           r"io\.modelci\.model\.sha256"):
        push_version(c, repo, "1.0.0", ["abc1234"], other, auth, "903")
    assert _tag(registry, repo, "1.0.0")[1] == first.id


def test_deploys_wait_for_publish_and_a_rollback_needs_only_the_build_record():
    """Deploy jobs wait for the build, the gate and the publish job (a failed publish stops them), but
    take artifacts from the build only; the build's record and verdict never expire, so GitLab can
    start a rollback re-run months later (it fails a job whose needed artifacts expired)."""
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parents[1]
    deploy = list(yaml.safe_load_all((root / "templates" / "deploy.yml").read_text()))[1]
    needs = {n["job"].replace("$[[ inputs.job_prefix ]]", ""): n for n in next(iter(deploy.values()))["needs"]}
    assert needs["build"].get("artifacts", True) is True and not needs["build"].get("optional")
    for job in ("gate", "publish", "$[[ inputs.after ]]"):
        assert needs[job]["artifacts"] is False and needs[job]["optional"] is True, job
    build = list(yaml.safe_load_all((root / "templates" / "build.yml").read_text()))[1]
    artifacts = build["$[[ inputs.job_prefix ]]build"]["artifacts"]
    assert artifacts["expire_in"] == "never"
    assert set(artifacts["paths"]) == {"out/build.env", "out/build-verdict.json"}


def test_a_verdict_path_given_by_variable_never_reaches_the_release_record(tmp_path, monkeypatch, registry,
                                                                          base_image, docker_client):
    """MODELCI_VERDICT may point the build's own check at any file (a pipeline variable, a committed
    forged verdict outside out/); the verdict kept with the build record, which production's release
    check and a rollback read, is only ever the gate job's own artifact. With the gate's verdict a dry
    run, production refuses the image; with a real passing one, it releases it on that verdict."""
    import json
    import shutil
    import subprocess
    from pathlib import Path

    from modelci import cli, trust
    from modelci.gate.decision import VERDICT_SCHEMA

    root = Path(__file__).resolve().parents[1]
    for part in ("model", "app"):
        shutil.copytree(root / part, tmp_path / part, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(root / "Dockerfile", tmp_path / "Dockerfile")
    venv_bin = Path(__import__("sys").executable).parent
    subprocess.run([str(venv_bin / "modelci"), "train", "--config", "model/modelci.yml", "--out", "out"],
                   cwd=tmp_path, check=True, capture_output=True)
    sha = json.loads((tmp_path / "out" / "model" / "model.json").read_text())["sha256"]
    verdict = {"schema": VERDICT_SCHEMA, "sha256": sha, "verdict": "PROMOTE", "passed": True, "dry_run": True}
    (tmp_path / "out" / "gate").mkdir()
    (tmp_path / "out" / "gate" / "verdict.json").write_text(json.dumps(verdict))  # the gate ran as a dry run
    (tmp_path / "forged").mkdir()
    (tmp_path / "forged" / "verdict.json").write_text(json.dumps({**verdict, "dry_run": False}))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(trust, "production_release", lambda env: None)  # nothing in production yet
    for k, v in {"CI_REGISTRY_USER": registry.htpasswd[0], "CI_REGISTRY_PASSWORD": registry.htpasswd[1],
                 "MODELCI_IMAGE_REPO": f"{registry.host}/verdictpath/{secrets.token_hex(3)}/serving",
                 "MODELCI_BASE_IMAGE": base_image, "MODELCI_VERDICT": "forged/verdict.json",
                 "CI_PIPELINE_ID": "7001"}.items():
        monkeypatch.setenv(k, v)
    assert cli.main(["build"]) == 0  # the build's own check followed the variable
    assert not trust.BUILD_VERDICT.exists()
    with pytest.raises(ModelCIError, match=r"^out/build-verdict.json: no gate verdict in this pipeline"):
        trust.check_release(None, "production")

    (tmp_path / "out" / "gate" / "verdict.json").write_text(json.dumps({**verdict, "dry_run": False}))
    monkeypatch.delenv("MODELCI_VERDICT")
    monkeypatch.setenv("CI_PIPELINE_ID", "7002")
    assert cli.main(["build"]) == 0
    assert json.loads(trust.BUILD_VERDICT.read_text())["dry_run"] is False
    assert trust.check_release(None, "production")["basis"] == "verdict"
