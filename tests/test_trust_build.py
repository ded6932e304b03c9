"""Builds never overwrite (issue 12 part 5): oci.push_version against a real, login-protected
registry and the Docker engine. Two builds racing for one version: at most one pushes it, the tag
names the winner's image, the loser fails closed with a one-line reason; a claimed version is never
offered again."""
from __future__ import annotations

import io
import secrets
import tarfile
import threading

import pytest

from modelci import dockerutil
from modelci.errors import ModelCIError
from modelci.oci import ImageReader, ImageRepo, RegistryClient, next_version, push_version

REASONS = ("another build claims this version at the same time",
           "before the push, the tag names another image",
           "while claiming it, the tag names another image",
           "after the push the tag names another image")


@pytest.fixture
def engine(docker_client, registry, monkeypatch):
    monkeypatch.setenv("CI_REGISTRY_USER", registry.htpasswd[0])
    monkeypatch.setenv("CI_REGISTRY_PASSWORD", registry.htpasswd[1])
    monkeypatch.delenv("CI_JOB_ID", raising=False)
    repo = ImageRepo.parse(f"{registry.host}/race/{secrets.token_hex(3)}/serving")
    auth = dockerutil.login(docker_client, registry.host)
    made = []

    def image(content: str):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            data = content.encode()
            info = tarfile.TarInfo("build.txt")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        name = f"local/race-{secrets.token_hex(4)}"
        docker_client.api.import_image_from_data(buf.getvalue(), repository=name, tag="x")
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
