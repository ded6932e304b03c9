"""Production's fixed release checks (scripts/modelci/trust.py) and content-addressed image reads
(oci.ImageReader). Each bypass of issue 12's "Why" is reproduced here and must be refused."""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from gitlab_fake import fake_gitlab  # noqa: F401 - fixture
from modelci import cli, trust
from modelci.errors import ModelCIError
from modelci.oci import ImageReader

SHA_A = "a" * 64
SHA_B = "b" * 64
COMMIT = "c0ffee" * 6 + "abcd"


# ---- a tiny registry v2 that serves one image by digest ---------------------------------------------
def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def make_image(model_sha: str = SHA_A, revision: str = COMMIT, files: dict[str, bytes] | None = None
               ) -> dict[str, bytes]:
    """blobs by digest + 'manifest' and 'digest' entries for a serving-like image."""
    files = files if files is not None else {"model.json": json.dumps({"sha256": model_sha}).encode(),
                                             "model.joblib": b"not a pickle"}
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"app/artifact/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("app/artifact/evil")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        tar.addfile(link)
    app_layer = gzip.compress(b"")
    model_layer = gzip.compress(raw.getvalue())
    config = json.dumps({"config": {"Labels": {"io.modelci.model.sha256": model_sha,
                                               "org.opencontainers.image.revision": revision,
                                               "io.modelci.model.version": "1.2.0"}}}).encode()
    manifest = json.dumps({"schemaVersion": 2,
                           "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                           "config": {"digest": _digest(config), "size": len(config)},
                           "layers": [{"digest": _digest(app_layer)}, {"digest": _digest(model_layer)}]}).encode()
    blobs = {_digest(b): b for b in (config, app_layer, model_layer)}
    return {"blobs": blobs, "manifest": manifest, "digest": _digest(manifest)}  # type: ignore[dict-item]


@pytest.fixture
def oci_registry():
    images: dict[str, dict] = {}
    paths: list[str] = []

    class H(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):  # noqa: N802
            paths.append(self.path)
            parts = self.path.split("/")
            kind, ref = parts[-2], parts[-1]
            for img in images.values():
                if kind == "manifests" and ref == img["digest"]:
                    return self._send(img["manifest"])
                if kind == "blobs" and ref in img["blobs"]:
                    return self._send(img["blobs"][ref])
            self.send_response(404)
            self.end_headers()

        def _send(self, body):
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    host = f"127.0.0.1:{srv.server_address[1]}"

    def add(name="good", **kw):
        img = make_image(**kw)
        images[name] = img
        return f"{host}/mlops/wine/serving@{img['digest']}", img

    add.host = host
    add.images = images
    add.paths = paths
    yield add
    srv.shutdown()


def test_image_reader_extracts_only_the_model_directory_by_digest(oci_registry, tmp_path):
    ref, img = oci_registry()
    path, digest = "mlops/wine/serving", img["digest"]
    labels = ImageReader(oci_registry.host).model_layer(path, digest, tmp_path / "m")
    assert labels["io.modelci.model.sha256"] == SHA_A
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["model.joblib", "model.json"]  # no link


def test_image_reader_refuses_substituted_content(oci_registry, tmp_path):
    ref, img = oci_registry()
    config_digest = json.loads(img["manifest"])["config"]["digest"]
    img["blobs"][config_digest] = img["blobs"][config_digest].replace(b"1.2.0", b"9.9.9")
    with pytest.raises(ModelCIError, match="does not hash to its digest"):
        ImageReader(oci_registry.host).labels("mlops/wine/serving", img["digest"])


# ---- committed outputs -----------------------------------------------------------------------------
def _repo(tmp_path: Path, *, index_version: int | None = None) -> Path:
    repo = tmp_path / "repo"
    (repo / "out" / "gate").mkdir(parents=True)
    (repo / "app").mkdir()
    (repo / "app" / "x.py").write_text("x = 1\n")
    (repo / ".gitignore").write_text("out/\n")
    (repo / "out" / "gate" / "verdict.json").write_text("{}")
    (repo / "out" / "build.env").write_text("MODELCI_IMAGE=x\n")

    def git(*a):
        subprocess.run(["git", "-C", str(repo), "-c", "user.email=t@t", "-c", "user.name=t", *a], check=True,
                       capture_output=True)

    git("init", "-q")
    git("add", "app", ".gitignore")
    git("commit", "-qm", "app")
    if index_version:
        git("update-index", "--index-version", str(index_version))
    return repo


def test_committed_outputs_none_when_only_artifacts_are_present(tmp_path):
    assert trust.committed_paths(_repo(tmp_path)) == []


@pytest.mark.parametrize("with_git", [True, False])
@pytest.mark.parametrize("index_version", [None, 3, 4])
def test_force_added_outputs_are_found_with_and_without_git(tmp_path, monkeypatch, with_git, index_version):
    repo = _repo(tmp_path, index_version=index_version)
    subprocess.run(["git", "-C", str(repo), "add", "-f", "out/gate/verdict.json", "out/build.env"], check=True)
    if not with_git:  # the tools image has no git: the index is read directly
        monkeypatch.setattr(trust.shutil, "which", lambda name: None)
    assert trust.committed_paths(repo) == ["out/build.env", "out/gate/verdict.json"]
    with pytest.raises(ModelCIError, match=r"^out/build.env, out/gate/verdict.json: committed to the "
                                           r"repository under out/; .* cannot be released"):
        trust.refuse_committed_outputs(repo)


# ---- the build record and verdicts --------------------------------------------------------------
def _record(workdir: Path, image: str, model_sha: str | None = None, verdict: dict | None = None) -> None:
    """The build job's artifacts: its record and the verdict it built the image on."""
    (workdir / "out" / "gate").mkdir(parents=True, exist_ok=True)
    (workdir / "out" / "build.env").write_text(f"MODELCI_IMAGE={image}\nMODELCI_MODEL_VERSION=1.2.0\n")
    if verdict is not None:
        (workdir / "out" / "build-verdict.json").write_text(json.dumps(verdict))


def test_image_comes_from_the_build_record_file_not_the_environment(tmp_path, monkeypatch):
    good = "127.0.0.1:5000/g/serving@sha256:" + "1" * 64
    evil = "127.0.0.1:5000/g/serving@sha256:" + "9" * 64
    with pytest.raises(ModelCIError, match=r"^out/build.env: no build record from this pipeline's build job"):
        trust.built_image(None, tmp_path)
    _record(tmp_path, good)
    monkeypatch.setenv("MODELCI_IMAGE", evil)
    assert trust.built_image(None, tmp_path) == good
    with pytest.raises(ModelCIError, match=rf"^image {evil}: not the image this pipeline's build job produced"):
        trust.built_image(evil, tmp_path)


@pytest.mark.parametrize("verdict,reason", [
    ({"sha256": SHA_B, "passed": True, "dry_run": False}, "sha256: the verdict is for model bbbbbbbbbbbb"),
    ({"sha256": SHA_A, "passed": True, "dry_run": True}, "dry_run: a dry-run gate verdict never"),
    ({"sha256": SHA_A, "passed": True}, "dry_run: a dry-run gate verdict never"),
    ({"sha256": SHA_A, "passed": False, "dry_run": False, "verdict": "REJECT"}, "verdict REJECT"),
])
def test_only_a_passing_real_verdict_for_the_exact_model_counts(tmp_path, verdict, reason):
    _record(tmp_path, "x", verdict=verdict)
    with pytest.raises(ModelCIError, match=reason):
        trust.passing_verdict(SHA_A, tmp_path)


# ---- check_release -----------------------------------------------------------------------------------
@pytest.fixture
def release(tmp_path, oci_registry, monkeypatch):
    """A workdir whose build record names a registry image holding model SHA_A."""
    ref, _ = oci_registry()
    _record(tmp_path, ref)
    monkeypatch.setattr(trust, "production_release", lambda env: None)
    return tmp_path, ref


def test_release_with_a_passing_verdict(release):
    workdir, ref = release
    _record(workdir, ref, verdict={"sha256": SHA_A, "passed": True, "dry_run": False, "verdict": "PROMOTE"})
    assert trust.check_release(None, "production", workdir)["basis"] == "verdict"


def test_release_reads_the_verdict_kept_with_the_build_record_not_the_gates_artifacts(release):
    """A rollback re-run after the gate job's artifacts expired has only the build job's artifacts (they
    never expire); a verdict in the gate's artifact directory is not what production's check reads."""
    workdir, ref = release
    good = {"sha256": SHA_A, "passed": True, "dry_run": False, "verdict": "PROMOTE"}
    (workdir / "out" / "gate" / "verdict.json").write_text(json.dumps(good))
    with pytest.raises(ModelCIError, match=r"^out/build-verdict.json: no gate verdict in this pipeline"):
        trust.check_release(None, "production", workdir)
    shutil.rmtree(workdir / "out" / "gate")  # expired
    _record(workdir, ref, verdict=good)
    assert trust.check_release(None, "production", workdir)["basis"] == "verdict"


def test_release_without_verdict_needs_the_model_production_runs(release, monkeypatch):
    workdir, ref = release
    with pytest.raises(ModelCIError, match=r"^out/build-verdict.json: no gate verdict in this pipeline, and "
                                           r"the image's model aaaaaaaaaaaa… is not the one production runs "
                                           r"\(nothing yet\)"):
        trust.check_release(ref, "production", workdir)
    monkeypatch.setattr(trust, "production_release", lambda env: {"model_sha256": SHA_B})
    with pytest.raises(ModelCIError, match=r"not the one production runs \(model bbbbbbbbbbbb…\)"):
        trust.check_release(ref, "production", workdir)
    monkeypatch.setattr(trust, "production_release", lambda env: {"model_sha256": SHA_A})
    assert trust.check_release(ref, "production", workdir)["basis"] == "same-model"


# ---- the deploy command: no variable turns the checks off or redirects them -------------------------
@pytest.mark.parametrize("env", [
    {"MODELCI_REQUIRE_VERDICT_ON": "false"},
    {"MODELCI_REQUIRE_VERDICT_ON": "TRUE"},
    {"MODELCI_REQUIRE_VERDICT": "forged.json"},
    {"MODELCI_IMAGE": "127.0.0.1:5000/g/serving@sha256:" + "9" * 64},
])
def test_production_deploy_checks_cannot_be_switched_off_by_variables(tmp_path, monkeypatch, capsys, env,
                                                                      oci_registry):
    ref, _ = oci_registry("evil", model_sha=SHA_B)
    (tmp_path / "forged.json").write_text(json.dumps({"sha256": SHA_B, "passed": True, "dry_run": False}))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MODELCI_IMAGE", ref)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    code = cli.main(["deploy", "--environment", "production", "--url", "http://127.0.0.1:1",
                     "--release-checks=false"])
    err = capsys.readouterr().err
    assert code != 0
    assert err.strip().splitlines()[-1].startswith(
        "modelci deploy: error: out/build.env: no build record from this pipeline's build job")


def test_production_deploy_refuses_an_image_given_by_variable(tmp_path, monkeypatch, capsys, oci_registry):
    good, _ = oci_registry("good")
    evil, _ = oci_registry("evil", model_sha=SHA_B)
    _record(tmp_path, good, verdict={"sha256": SHA_A, "passed": True, "dry_run": False})
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MODELCI_IMAGE", evil)
    code = cli.main(["deploy", "--environment", "production", "--url", "http://127.0.0.1:1"])
    assert code != 0
    assert f"error: image {evil}: not the image this pipeline's build job produced" in capsys.readouterr().err


# ---- production_release: GitLab's deployment record + production's lineage + labels by digest ------
class Lineage:
    def __init__(self):
        self.body: dict | None = None

        outer = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):  # noqa: N802
                body = json.dumps(outer.body).encode()
                self.send_response(200 if outer.body else 503)
                self.end_headers()
                self.wfile.write(body)

        self.srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.srv.server_address[1]}"


@pytest.fixture
def production(fake_gitlab, oci_registry, monkeypatch):  # noqa: F811
    monkeypatch.delenv("MODELCI_GITLAB_TOKEN")
    monkeypatch.setenv("CI_JOB_TOKEN", "job-token-123")  # the only token deploy and gate jobs hold
    lin = Lineage()
    yield fake_gitlab, lin
    lin.srv.shutdown()


def test_never_deployed_means_no_record(production):
    assert trust.production_release("production") is None


def test_production_down_with_a_deployment_fails_closed(production):
    fake, lin = production
    fake.add_deployment(42, "production", COMMIT, external_url=lin.url)
    with pytest.raises(ModelCIError, match=r"/lineage does not answer while GitLab records a successful "
                                           r"deployment of production \(deployment #\d+ of commit c0ffeec0\); "
                                           r"failing closed"):
        trust.production_release("production")


def test_unreachable_gitlab_fails_closed(production, monkeypatch):
    monkeypatch.setenv("CI_API_V4_URL", "http://127.0.0.1:9/api/v4")
    monkeypatch.setenv("MODELCI_GITLAB_RETRIES", "1")
    with pytest.raises(ModelCIError, match="cannot reach it while reading the last successful production"):
        trust.production_release("production")


def test_lineage_must_agree_with_gitlab_and_the_image_labels(production, oci_registry):
    fake, lin = production
    ref, _ = oci_registry("prod")
    fake.add_deployment(42, "production", COMMIT, external_url=lin.url)
    lin.body = {"model_version": "1.2.0", "sha256": SHA_A, "image": ref}
    got = trust.production_release("production")
    assert got["model_sha256"] == SHA_A and got["image"] == ref and got["commit"] == COMMIT
    # a fake /lineage naming an image pushed by a registry writer (other commit label) is refused
    evil, _ = oci_registry("evil", model_sha=SHA_B, revision="d" * 40)
    lin.body = {"model_version": "999.0.0", "sha256": SHA_B, "image": evil}
    with pytest.raises(ModelCIError, match=r"names image sha256:.* of commit dddddddd, but GitLab's last "
                                           r"successful deployment of production is commit c0ffeec0"):
        trust.production_release("production")
    lin.body = {"model_version": "1.2.0", "sha256": SHA_B, "image": ref}
    with pytest.raises(ModelCIError, match="but its image .* is labelled aaaaaaaaaaaa"):
        trust.production_release("production")
    lin.body = {"model_version": "1.2.0", "sha256": SHA_A}
    with pytest.raises(ModelCIError, match="reports no image digest"):
        trust.production_release("production")


def test_deployments_route_is_shaped_like_gitlabs(fake_gitlab):  # noqa: F811
    import requests

    fake_gitlab.add_deployment(42, "production", COMMIT, external_url="http://127.0.0.1:9")
    fake_gitlab.add_deployment(42, "staging", COMMIT)
    fake_gitlab.add_deployment(42, "production", "1" * 40, status="failed")
    url = f"{fake_gitlab.api_url}/projects/42/deployments"
    assert requests.get(url, timeout=5).status_code == 401
    got = requests.get(url, params={"environment": "production", "status": "success", "order_by": "finished_at",
                                    "sort": "desc"}, headers={"JOB-TOKEN": "job-token-123"}, timeout=5)
    assert got.status_code == 200 and got.headers["X-Total"] == "1"
    assert got.json()[0]["sha"] == COMMIT and got.json()[0]["environment"]["external_url"] == "http://127.0.0.1:9"
    bad = requests.get(url, params={"order_by": "finished_at"}, headers={"JOB-TOKEN": "job-token-123"}, timeout=5)
    assert bad.status_code == 400


def test_standalone_fake_keeps_deployments_across_runs(tmp_path):
    """The e2e harness restarts the fake per pipeline; GitLab's deployments outlive pipelines."""
    import subprocess
    import sys

    import requests

    keep = tmp_path / "deployments.json"
    for round_ in range(2):
        proc = subprocess.Popen([sys.executable, str(Path(__file__).parent / "gitlab_fake.py"), "--port", "0",
                                 "--job-token", "jt", "--project", "1217:mlops/wine", "--deployments", str(keep)],
                                stdout=subprocess.PIPE, text=True)
        try:
            info = json.loads(proc.stdout.readline())
            got = requests.get(f"{info['api_url']}/projects/1217/deployments", headers={"JOB-TOKEN": "jt"},
                               params={"environment": "production"}, timeout=5).json()
            assert [d["sha"] for d in got] == ["a" * 40] * round_
            if round_ == 0:
                requests.post(f"{info['url']}/__fake__/deployment", timeout=5, json={
                    "project": 1217, "environment": "production", "sha": "a" * 40,
                    "external_url": "http://127.0.0.1:9"}).raise_for_status()
        finally:
            proc.terminate()
            proc.wait(10)
