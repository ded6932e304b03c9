"""GitLab's container registry authenticates with tokens, not htpasswd: a real distribution registry
configured with `auth: token` sends every client to GitLab's /jwt/auth (here the fake GitLab's, signing
RS256 tokens with the key the registry trusts). What the build, the gate and production's release
check read from the registry (tag lists, labels and the model layer by digest) and what the Docker
engine pushes (`modelci.oci.push_version`, after `docker login` with CI_REGISTRY_USER and
CI_REGISTRY_PASSWORD = gitlab-ci-token + CI_JOB_TOKEN) go through that flow; wrong credentials and
another project's job token are one-line refusals."""
from __future__ import annotations

import hashlib
import io
import json
import secrets
import tarfile

import localci
import pytest

from fakegitlab import FakeGitLab
from fakegitlab.registry_auth import RegistryAuth, signing_key
from modelci import dockerutil
from modelci.errors import ModelCIError
from modelci.oci import MODEL_LABEL, ImageReader, ImageRepo, RegistryClient, push_version, split_digest_ref

MODEL = b"not a pickle: a model file's bytes"
META = json.dumps({"name": "wine", "sha256": hashlib.sha256(MODEL).hexdigest()}).encode()


@pytest.fixture(scope="module")
def gitlab_registry(tmp_path_factory, docker_client):
    tmp = tmp_path_factory.mktemp("gitlab-registry")
    fake = FakeGitLab(projects={77: {"path": "mlops/tokreg"}, 78: {"path": "mlops/other"}})
    tokens = {name: f"{name}-{secrets.token_hex(4)}" for name in ("job-77", "job-78", "glpat-reader")}
    fake.add_token(tokens["job-77"], kind="job", role="developer", projects=[77])
    fake.add_token(tokens["job-78"], kind="job", role="developer", projects=[78])
    fake.add_token(tokens["glpat-reader"], scopes=["read_registry"], role="reporter", projects=[77])
    key, cert = signing_key(tmp)
    fake.area(RegistryAuth).configure(key, issuer="gitlab-issuer")
    fake.start()
    reg = localci.Registry(localci.free_port(), tmp / "registry",
                           token_auth={"realm": f"{fake.url}/jwt/auth", "issuer": "gitlab-issuer",
                                       "rootcertbundle": cert})
    reg.start()
    yield fake, reg, tokens
    reg.stop()
    fake.stop()


def _model_image(docker_client, labels: dict[str, str]):
    """One layer holding app/artifact/ (the serving image's last layer), labelled like a serving image."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in (("app/artifact/model.joblib", MODEL), ("app/artifact/model.json", META)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    name = f"local/tokreg-{secrets.token_hex(4)}"
    docker_client.api.import_image_from_data(buf.getvalue(), repository=name, tag="x",
                                             changes=[f"LABEL {k}={v}" for k, v in labels.items()])
    return docker_client.images.get(f"{name}:x")


def test_build_gate_and_release_reads_work_with_gitlabs_registry_tokens(gitlab_registry, docker_client,
                                                                       monkeypatch, tmp_path):
    fake, reg, tokens = gitlab_registry
    monkeypatch.setenv("CI_REGISTRY_USER", "gitlab-ci-token")
    monkeypatch.setenv("CI_REGISTRY_PASSWORD", tokens["job-77"])
    repo = ImageRepo.parse(f"{reg.host}/mlops/tokreg/serving")
    sha = hashlib.sha256(MODEL).hexdigest()
    image = _model_image(docker_client, {MODEL_LABEL: sha})
    try:
        auth = dockerutil.login(docker_client, reg.host)  # the engine's own token flow
        _, ref = push_version(docker_client, repo, "1.0.0", ["abc1234"], image, auth, "5001")
    finally:
        docker_client.images.remove(image.id, force=True)
    user, password = dockerutil.registry_credentials()
    assert sorted(RegistryClient(reg.host, user, password).tags(repo.path)) == ["1.0.0", "1.0.0-claim-5001",
                                                                               "abc1234"]
    reader = ImageReader(reg.host, user, password)
    _, digest = split_digest_ref(ref)
    assert reader.labels(repo.path, digest)[MODEL_LABEL] == sha
    reader.model_layer(repo.path, digest, tmp_path / "model")
    assert (tmp_path / "model" / "model.joblib").read_bytes() == MODEL
    # GitLab was asked what the registry's challenge named, with the job token, and granted exactly that
    asked = [r["query"] for r in fake.requests if r["route"] == "jwt_auth" and r["auth"] == "basic:gitlab-ci-token"]
    assert {"service": "container_registry", "scope": f"repository:{repo.path}:pull"} in asked
    granted = [a for claims in fake.registry_tokens for a in claims["access"] if a["name"] == repo.path]
    assert {"type": "repository", "name": repo.path, "actions": ["pull", "push"]} in granted
    # a read_registry token (a reporter's) reads the same, as a monitor or a gate would
    reader = ImageReader(reg.host, "reporter", tokens["glpat-reader"])
    assert reader.labels(repo.path, digest)[MODEL_LABEL] == sha


@pytest.mark.parametrize("who, reason", [
    ("wrong password", r"its token service http://127\.0\.0\.1:\d+/jwt/auth refused the credentials \(HTTP 401\); "
                       r"check CI_REGISTRY_USER/CI_REGISTRY_PASSWORD"),
    ("other project's job token", r"401 listing mlops/tokreg/serving; check CI_REGISTRY_USER/CI_REGISTRY_PASSWORD"),
])
def test_refusals_are_one_line(gitlab_registry, who, reason):
    fake, reg, tokens = gitlab_registry
    password = "not-a-token" if who == "wrong password" else tokens["job-78"]
    with pytest.raises(ModelCIError, match=reason) as err:
        RegistryClient(reg.host, "gitlab-ci-token", password).tags("mlops/tokreg/serving")
    assert "\n" not in str(err.value) and password not in str(err.value)
    digest = "sha256:" + "0" * 64
    with pytest.raises(ModelCIError, match=r"refused the credentials|HTTP 401 reading") as err:
        ImageReader(reg.host, "gitlab-ci-token", password).labels("mlops/tokreg/serving", digest)
    assert "\n" not in str(err.value)
