"""The serving image (Dockerfile + app/ + artifact/): built once per session with the docker SDK from
a context like the one `modelci build` assembles, run with host networking on a free loopback port."""
from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path

import docker
import joblib
import pandas as pd
import pytest

from modelci.artifact import read_meta

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
MODEL_VERSION = "1.4.0"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _context(tmp: Path, make_artifact) -> Path:
    ctx = tmp / "context"
    ctx.mkdir()
    shutil.copy2(ROOT / "Dockerfile", ctx / "Dockerfile")
    shutil.copytree(ROOT / "app", ctx / "app", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    make_artifact(ctx / "artifact")
    return ctx


def _build(client, ctx: Path, tag: str, buildargs: dict[str, str]) -> tuple[object, float]:
    t0 = time.time()
    image, _logs = client.images.build(path=str(ctx), tag=tag, buildargs=buildargs, rm=True, forcerm=True,
                                       network_mode="host")
    return image, time.time() - t0


def _get(port: int, path: str, body: object | None = None, timeout: float = 5):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data,
                                 headers={"content-type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # loopback only
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def _wait_ready(container, port: int, timeout: float = 90) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        container.reload()
        if container.status in ("exited", "dead"):
            return False
        try:
            if _get(port, "/v2/health/ready", timeout=2)[0] == 200:
                return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


@pytest.fixture(scope="module")
def built(tmp_path_factory, docker_client, base_image):
    """One image for the module (the pip layer is cached across runs), plus a model-only rebuild
    with an altered model.joblib to check layer reuse and the refusal to serve it."""
    from test_app import make_wine

    tmp = tmp_path_factory.mktemp("image")
    ctx = _context(tmp, make_wine)
    meta = read_meta(ctx / "artifact")
    buildargs = {
        "BASE_IMAGE": base_image,
        "MODEL_VERSION": MODEL_VERSION,
        "MODEL_SHA256": meta["sha256"],
        "DATA_SHA256": meta["data_sha256"],
        "MODEL_METRICS": json.dumps(meta["metrics"], sort_keys=True),
        "VCS_REF": "0123456789abcdef0123456789abcdef01234567",
        "SOURCE_URL": "http://127.0.0.1/group/project",
        "CREATED": "2026-01-02T03:04:05Z",
    }
    suffix = secrets.token_hex(4)
    tag = f"modelci-test-app:{suffix}"
    image, build_s = _build(docker_client, ctx, tag, buildargs)

    # Model-only change: same app, a different (here: altered, unverifiable) model.joblib.
    bad_ctx = tmp / "tampered"
    shutil.copytree(ctx, bad_ctx)
    model = joblib.load(bad_ctx / "artifact" / "model.joblib")
    model.steps[-1][1].coef_[0, 0] += 1.0
    joblib.dump(model, bad_ctx / "artifact" / "model.joblib")
    bad_tag = f"modelci-test-app:{suffix}-tampered"
    bad_image, rebuild_s = _build(docker_client, bad_ctx, bad_tag, buildargs)
    yield {"image": image, "tag": tag, "ctx": ctx, "meta": meta, "buildargs": buildargs,
           "bad_image": bad_image, "bad_tag": bad_tag, "build_s": build_s, "rebuild_s": rebuild_s}
    for t in (tag, bad_tag):
        with contextlib.suppress(docker.errors.APIError):  # best-effort cleanup
            docker_client.images.remove(t, force=True, noprune=True)  # keep the cached layers


@pytest.fixture
def run_container(docker_client):
    started = []

    def run(image, port: int, **env):
        c = docker_client.containers.run(
            image.id, detach=True, name=f"modelci-test-app-{secrets.token_hex(4)}", network_mode="host",
            environment={"PORT": str(port), "HOST": "127.0.0.1", "GRPC_PORT": str(_free_port()), **env})
        started.append(c)
        return c

    yield run
    for c in started:
        with contextlib.suppress(docker.errors.APIError):  # best-effort cleanup
            c.remove(force=True)


def test_labels_user_and_config(built):
    image = built["image"]
    labels = image.labels
    args = built["buildargs"]
    assert labels["org.opencontainers.image.revision"] == args["VCS_REF"]
    assert labels["org.opencontainers.image.source"] == args["SOURCE_URL"]
    assert labels["org.opencontainers.image.created"] == args["CREATED"]
    assert labels["org.opencontainers.image.version"] == MODEL_VERSION
    assert labels["io.modelci.model.version"] == MODEL_VERSION
    assert labels["io.modelci.model.sha256"] == built["meta"]["sha256"]
    assert labels["io.modelci.data.sha256"] == built["meta"]["data_sha256"]
    assert json.loads(labels["io.modelci.model.metrics"]) == built["meta"]["metrics"]
    cfg = image.attrs["Config"]
    assert cfg["User"] and cfg["User"].split(":")[0] not in ("", "0", "root")
    assert f"MODELCI_MODEL_VERSION={MODEL_VERSION}" in cfg["Env"]
    assert "8080/tcp" in cfg["ExposedPorts"]
    assert cfg["Healthcheck"]["Test"][0] == "CMD" and "/v2/health/ready" in " ".join(cfg["Healthcheck"]["Test"])


def test_model_only_change_rebuilds_one_small_layer(built):
    good = built["image"].attrs["RootFS"]["Layers"]
    bad = built["bad_image"].attrs["RootFS"]["Layers"]
    assert len(good) == len(bad)
    assert good[:-1] == bad[:-1], "only the model layer may differ"
    assert good[-1] != bad[-1]
    history = built["image"].history()
    top = next(h for h in history if h["Size"] > 0)
    assert "artifact" in top["CreatedBy"] and top["Size"] < 1_000_000
    # generous bound for a shared 2-core machine; typically well under 2 s
    assert built["rebuild_s"] < 20, built["rebuild_s"]


def test_container_serves_the_model(built, run_container):
    port, grpc_port = _free_port(), _free_port()
    c = run_container(built["image"], port, GRPC_PORT=str(grpc_port), MODELCI_WORKERS="2")
    assert _wait_ready(c, port), c.logs().decode(errors="replace")
    # two workers and the OIP gRPC service, from the image's own runtime
    import tritonclient.grpc as tg

    g = tg.InferenceServerClient(f"127.0.0.1:{grpc_port}")
    assert g.is_server_ready() and g.get_model_metadata("wine").versions == [MODEL_VERSION]
    g.close()
    assert "with 2 worker(s)" in c.logs().decode(errors="replace")
    # runs as non-root
    code, out = c.exec_run(["id", "-u"])
    assert code == 0 and out.decode().strip() not in ("", "0")
    # the image's own HEALTHCHECK command succeeds, and Docker reports the container healthy
    test = built["image"].attrs["Config"]["Healthcheck"]["Test"][1:]
    code, out = c.exec_run(test, environment={"PORT": str(port)})
    assert code == 0, out
    deadline = time.time() + 60
    while time.time() < deadline:
        c.reload()
        if c.attrs["State"].get("Health", {}).get("Status") == "healthy":
            break
        time.sleep(0.5)
    assert c.attrs["State"]["Health"]["Status"] == "healthy"
    # predictions equal the in-process model's
    art = built["ctx"] / "artifact"
    model = joblib.load(art / "model.joblib")
    smoke = json.loads((art / "smoke.json").read_text())
    rows = smoke["inputs"]
    status, resp = _get(port, "/predict", rows)
    cols = [i["name"] for i in built["meta"]["inputs"]]
    assert status == 200
    assert resp == {"predictions": model.predict(pd.DataFrame(rows)[cols]).tolist(),
                    "model_version": MODEL_VERSION}
    assert resp["predictions"] == smoke["expected"]
    status, lin = _get(port, "/lineage")
    assert status == 200 and lin["model_version"] == MODEL_VERSION and lin["sha256"] == built["meta"]["sha256"]
    status, meta = _get(port, "/v2/models/wine")
    assert status == 200 and meta["versions"] == [MODEL_VERSION]
    # lean final image: no pip in the app's venv, no compilers, no pip cache
    code, _ = c.exec_run(["/opt/venv/bin/python", "-c", "import pip"])
    assert code != 0
    code, out = c.exec_run(["sh", "-c", "command -v gcc cc; ls /root/.cache/pip 2>/dev/null; true"],
                           user="0")
    assert out.decode().strip() == ""


def test_tampered_artifact_never_becomes_ready(built, run_container):
    port = _free_port()
    c = run_container(built["bad_image"], port)
    assert not _wait_ready(c, port, timeout=60)
    result = c.wait(timeout=30)
    assert result["StatusCode"] != 0
    logs = c.logs().decode(errors="replace")
    assert "altered" in logs and "refusing" in logs
