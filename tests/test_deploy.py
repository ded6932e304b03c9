"""Deploys that cannot break production (real Docker engine, real registry, real images).

The images are built once per module from the repo's Dockerfile around four model directories:
v1 and v2 (two good models), `broken` (model.joblib altered: never becomes ready) and `wrong`
(smoke.json expects other predictions: fails the smoke test).
"""
from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import localci
import pytest
import requests

from modelci import deploy as deploy_lib
from modelci.errors import ModelCIError

sys.path.insert(0, str(localci.ROOT / "bench"))
from deploy_under_load import LoadGenerator  # noqa: E402

pytestmark = pytest.mark.e2e
ROOT = localci.ROOT


def _train(tmp: Path, name: str, c_param: float) -> Path:
    proj = tmp / f"proj-{name}"
    shutil.copytree(ROOT / "model", proj)
    cfg = (proj / "modelci.yml").read_text().replace("params: {max_iter: 1000}",
                                                     f"params: {{max_iter: 1000, C: {c_param}}}")
    (proj / "modelci.yml").write_text(cfg)
    out = tmp / f"out-{name}"
    subprocess.run([str(localci.VENV_BIN / "modelci"), "train", "--config", str(proj / "modelci.yml"),
                    "--out", str(out)], check=True, capture_output=True)
    return out / "model"


def _build(client, registry, model_dir: Path, tag: str, tmp: Path, base_image: str) -> str:
    ctx = tmp / f"ctx-{tag}"
    ctx.mkdir()
    shutil.copy2(ROOT / "Dockerfile", ctx / "Dockerfile")
    shutil.copytree(ROOT / "app", ctx / "app", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(model_dir, ctx / "artifact")
    meta = json.loads((model_dir / "model.json").read_text())
    repo = f"{registry.host}/deploytest/serving"
    client.images.build(path=str(ctx), tag=f"{repo}:{tag}", network_mode="host", rm=True,
                        buildargs={"BASE_IMAGE": base_image, "MODEL_VERSION": tag,
                                   "MODEL_SHA256": meta["sha256"]})
    client.login(username=registry.htpasswd[0], password=registry.htpasswd[1], registry=registry.host)
    for line in client.api.push(repo, tag=tag, stream=True, decode=True):
        assert "error" not in line, line
    image = client.images.get(f"{repo}:{tag}")
    return next(d for d in image.attrs["RepoDigests"] if d.startswith(repo))


@pytest.fixture(scope="module")
def images(tmp_path_factory, docker_client, registry, base_image):
    tmp = tmp_path_factory.mktemp("deploy")
    v1 = _train(tmp, "v1", 1.0)
    v2 = _train(tmp, "v2", 0.02)
    # broken: a model file that is not a model, with a matching sha256 (so only starting it can tell)
    from modelci.artifact import sha256_file

    broken = tmp / "broken"
    shutil.copytree(v1, broken)
    (broken / "model.joblib").write_bytes(b"not a pickle" * 100)
    meta = json.loads((broken / "model.json").read_text())
    meta["sha256"] = sha256_file(broken / "model.joblib")
    (broken / "model.json").write_text(json.dumps(meta))
    # tampered: model.joblib altered after training (sha256 no longer matches model.json)
    tampered = tmp / "tampered"
    shutil.copytree(v1, tampered)
    with open(tampered / "model.joblib", "ab") as fh:
        fh.write(b"tampered")
    wrong = tmp / "wrong"
    shutil.copytree(v2, wrong)
    smoke = json.loads((wrong / "smoke.json").read_text())
    classes = json.loads((wrong / "model.json").read_text())["classes"]
    smoke["expected"] = [classes[(classes.index(e) + 1) % len(classes)] for e in smoke["expected"]]
    (wrong / "smoke.json").write_text(json.dumps(smoke))
    refs = {name: _build(docker_client, registry, d, name, tmp, base_image)
            for name, d in (("v1", v1), ("v2", v2), ("broken", broken), ("wrong", wrong),
                                 ("tampered", tampered))}
    refs["smoke"] = json.loads((v1 / "smoke.json").read_text())
    return refs


@pytest.fixture
def env(monkeypatch, registry, docker_client, tmp_path):
    monkeypatch.setenv("CI_REGISTRY_USER", registry.htpasswd[0])
    monkeypatch.setenv("CI_REGISTRY_PASSWORD", registry.htpasswd[1])
    monkeypatch.setenv("MODELCI_LOCK_DIR", str(tmp_path / "locks"))
    ns = "dt" + secrets.token_hex(3)
    url = f"http://127.0.0.1:{localci.free_port()}"
    yield {"ns": ns, "url": url, "lock_dir": str(tmp_path / "locks")}
    deploy_lib.DockerTarget(ns, "staging", url).teardown()


def _served(url):
    return requests.get(f"{url}/lineage", timeout=5).json()["model_version"]


def _backends(ns):
    return deploy_lib.DockerTarget(ns, "staging", "http://127.0.0.1:1").backends()


def test_broken_image_never_replaces_the_serving_container(images, env):
    deploy_lib.deploy(images["v1"], "staging", env["url"], namespace=env["ns"], ready_timeout=60)
    before = [b.name for b in _backends(env["ns"])]
    with pytest.raises(ModelCIError, match="exited before becoming ready|not ready"):
        deploy_lib.deploy(images["broken"], "staging", env["url"], namespace=env["ns"], ready_timeout=30)
    assert _served(env["url"]) == "v1"
    assert [b.name for b in _backends(env["ns"])] == before  # the failed backend was removed


def test_tampered_artifact_is_refused_before_anything_starts(images, env):
    deploy_lib.deploy(images["v1"], "staging", env["url"], namespace=env["ns"], ready_timeout=60)
    before = [b.name for b in _backends(env["ns"])]
    with pytest.raises(ModelCIError, match="does not match model.json"):
        deploy_lib.deploy(images["tampered"], "staging", env["url"], namespace=env["ns"])
    assert _served(env["url"]) == "v1"
    assert [b.name for b in _backends(env["ns"])] == before


def test_wrong_model_fails_the_smoke_test_and_never_serves(images, env):
    deploy_lib.deploy(images["v1"], "staging", env["url"], namespace=env["ns"], ready_timeout=60)
    with pytest.raises(ModelCIError, match="smoke test"):
        deploy_lib.deploy(images["wrong"], "staging", env["url"], namespace=env["ns"], ready_timeout=60)
    assert _served(env["url"]) == "v1"
    assert len(_backends(env["ns"])) == 1


def test_no_request_fails_while_a_deploy_switches_versions(images, env):
    deploy_lib.deploy(images["v1"], "staging", env["url"], namespace=env["ns"], ready_timeout=60)
    records = images["smoke"]["inputs"][:1]
    with LoadGenerator(env["url"], records, threads=4, max_seconds=90) as load:
        time.sleep(1.0)
        deploy_lib.deploy(images["v2"], "staging", env["url"], namespace=env["ns"], ready_timeout=60)
        time.sleep(1.0)
    counts = load.counts()
    print("\nload during deploy:", json.dumps(counts))
    assert counts["failed"] == 0, counts
    assert counts["versions"].get("v1", 0) > 0 and counts["versions"].get("v2", 0) > 0, counts
    assert _served(env["url"]) == "v2"


def test_concurrent_deploys_to_one_environment_serialise(images, env):
    deploy_lib.deploy(images["v1"], "staging", env["url"], namespace=env["ns"], ready_timeout=60)
    procs = []
    import os
    penv = {**os.environ, "MODELCI_LOCK_DIR": env["lock_dir"]}
    for ref in (images["v2"], images["v1"]):
        procs.append(subprocess.Popen(
            [str(localci.VENV_BIN / "modelci"), "deploy", "--environment", "staging", "--url", env["url"],
             "--image", ref, "--namespace", env["ns"]], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env=penv))
        time.sleep(0.3)
    outs = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-800:] for o in outs]
    results = [json.loads(o[0]) for o in outs]
    waited = [r for r, o in zip(results, outs) if "waiting for the lock" in o[1]]
    assert waited, "the second deploy did not wait for the first"
    # the waiting deploy held the lock only after the first released it
    assert waited[0]["timings"]["lock_s"] >= 1.0
    assert len(_backends(env["ns"])) == 1  # exactly one backend behind the proxy afterwards
    assert _served(env["url"]) == "v1"  # the later deploy won, as GitLab's resource_group would order it


def test_redeploying_an_older_digest_restores_it(images, env):
    """GitLab's 'Rollback environment' re-runs an older pipeline's deploy job, whose only input is
    that pipeline's digest: deploying it again must bring that exact image back."""
    first = deploy_lib.deploy(images["v1"], "staging", env["url"], namespace=env["ns"], ready_timeout=60)
    deploy_lib.deploy(images["v2"], "staging", env["url"], namespace=env["ns"], ready_timeout=60)
    again = deploy_lib.deploy(images["v1"], "staging", env["url"], namespace=env["ns"], ready_timeout=60)
    assert _served(env["url"]) == "v1"
    assert again["sha256"] == first["sha256"] and again["image"] == images["v1"]


def test_a_tag_without_digest_is_refused(env):
    with pytest.raises(ModelCIError, match="not pinned by digest"):
        deploy_lib.deploy("127.0.0.1:5000/x/serving:1.0.0", "staging", env["url"], namespace=env["ns"])
