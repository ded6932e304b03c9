"""Deploys that cannot break production: real images, a real registry, and a real deploy host the
test process does not share (a Docker engine in its own network namespace, tools/remotehost.py),
reached over TCP+TLS (and once over ssh://). Everything the deploy checks happens on that host.

The images are built once per module from the repo's Dockerfile around four model directories:
v1 and v2 (two good models), `broken` (model.joblib altered: never becomes ready) and `wrong`
(smoke.json expects other predictions: fails the smoke test).
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import localci
import pytest
import requests

from modelci.deploy import proxy as proxy_conf
from modelci.deploy.target import DockerTarget
from modelci.errors import ModelCIError
from modelci.settings.deploy import DeploySettings
from modelci.steps import deploy as step

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
def env(monkeypatch, registry, remote_host, proxy_image):
    monkeypatch.setenv("CI_REGISTRY_USER", registry.htpasswd[0])
    monkeypatch.setenv("CI_REGISTRY_PASSWORD", registry.htpasswd[1])
    for k, v in remote_host.tcp_env().items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("MODELCI_PROXY_IMAGE", proxy_image)
    monkeypatch.setenv("MODELCI_DRAIN_SECONDS", "1")
    ns = "dt" + secrets.token_hex(3)
    url = f"http://{remote_host.address}:{localci.free_port()}"
    penv = {**os.environ, "DOCKER_HOST": remote_host.tcp_env()["DOCKER_HOST"]}
    yield {"ns": ns, "url": url, "host": remote_host, "penv": penv}
    for environment in ("staging", "production"):
        DockerTarget(remote_host.client(), ns, environment, url).teardown()


def deploy(image, environment, url, namespace, ready_timeout=60, **kw):
    args = argparse.Namespace(environment=environment, url=url, image=image, namespace=namespace,
                              ready_timeout=ready_timeout, **kw)
    return step.deploy(DeploySettings.from_args(args))


def _served(url):
    return requests.get(f"{url}/lineage", timeout=5).json()["model_version"]


def _backends(env, environment="staging"):
    return DockerTarget(env["host"].client(), env["ns"], environment, env["url"]).backends()


def test_broken_image_never_replaces_the_serving_container(images, env):
    deploy(images["v1"], "staging", env["url"], env["ns"])
    before = [b.name for b in _backends(env)]
    with pytest.raises(ModelCIError, match="exited before becoming ready|not ready"):
        deploy(images["broken"], "staging", env["url"], env["ns"], ready_timeout=30)
    assert _served(env["url"]) == "v1"
    assert [b.name for b in _backends(env)] == before  # the failed backend was removed


def test_tampered_artifact_is_refused_before_anything_starts(images, env):
    deploy(images["v1"], "staging", env["url"], env["ns"])
    before = [b.name for b in _backends(env)]
    with pytest.raises(ModelCIError, match="does not match model.json"):
        deploy(images["tampered"], "staging", env["url"], env["ns"])
    assert _served(env["url"]) == "v1"
    assert [b.name for b in _backends(env)] == before


def test_wrong_model_fails_the_smoke_test_and_never_serves(images, env):
    deploy(images["v1"], "staging", env["url"], env["ns"])
    with pytest.raises(ModelCIError, match="smoke test"):
        deploy(images["wrong"], "staging", env["url"], env["ns"])
    assert _served(env["url"]) == "v1"
    assert len(_backends(env)) == 1


def test_no_request_fails_while_a_deploy_switches_versions(images, env):
    deploy(images["v1"], "staging", env["url"], env["ns"])
    records = images["smoke"]["inputs"][:1]
    with LoadGenerator(env["url"], records, threads=4, max_seconds=90) as load:
        time.sleep(1.0)
        deploy(images["v2"], "staging", env["url"], env["ns"])
        time.sleep(1.0)
    counts = load.counts()
    print("\nload during deploy:", json.dumps(counts))
    assert counts["failed"] == 0, counts
    assert counts["versions"].get("v1", 0) > 0 and counts["versions"].get("v2", 0) > 0, counts
    assert _served(env["url"]) == "v2"


def _cli(env, ref, environment="staging", extra_env=None, url=None):
    return subprocess.Popen(
        [str(localci.VENV_BIN / "modelci"), "deploy", "--environment", environment, "--url", url or env["url"],
         "--image", ref, "--namespace", env["ns"]], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env={**env["penv"], **(extra_env or {})})


def test_concurrent_deploys_to_one_environment_serialise_through_the_lock_on_the_target(images, env):
    """Two processes (no resource_group, no shared file system needed): the lock is a container
    on the target."""
    deploy(images["v1"], "staging", env["url"], env["ns"])
    procs = []
    for ref in (images["v2"], images["v1"]):
        procs.append(_cli(env, ref))
        time.sleep(1.5)
    outs = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-800:] for o in outs]
    results = [json.loads(o[0]) for o in outs]
    waited = [r for r, o in zip(results, outs) if "waiting for the lock" in o[1]]
    assert waited, "the second deploy did not wait for the first"
    # the waiting deploy held the lock only after the first released it
    assert waited[0]["timings"]["lock_s"] >= 1.0
    assert len(_backends(env)) == 1  # exactly one backend behind the proxy afterwards
    assert _served(env["url"]) == "v1"  # the later deploy won, as GitLab's resource_group would order it


def test_redeploying_an_older_digest_restores_it(images, env):
    """GitLab's 'Rollback environment' re-runs an older pipeline's deploy job, whose only input is
    that pipeline's digest: deploying it again must bring that exact image back."""
    first = deploy(images["v1"], "staging", env["url"], env["ns"])
    deploy(images["v2"], "staging", env["url"], env["ns"])
    again = deploy(images["v1"], "staging", env["url"], env["ns"])
    assert _served(env["url"]) == "v1"
    assert again["sha256"] == first["sha256"] and again["image"] == images["v1"]


def test_a_tag_without_digest_is_refused(env):
    with pytest.raises(ModelCIError, match="not pinned by digest"):
        deploy("127.0.0.1:5000/x/serving:1.0.0", "staging", env["url"], env["ns"])


# --- killed deploys, the lock, two environments, hardening, ssh://, engine restart ----------------

def _kill_when(proc, pattern, sig):
    """Send `sig` to a deploy process as soon as its log shows `pattern`; returns its stderr."""
    lines = []

    def reader():
        for line in proc.stderr:
            lines.append(line)
            if pattern in line and proc.poll() is None:
                proc.send_signal(sig)
    th = threading.Thread(target=reader, daemon=True)
    th.start()
    proc.wait(timeout=180)
    th.join(5)
    return "".join(lines)


def _proxy_names(env, environment="staging"):
    t = DockerTarget(env["host"].client(), env["ns"], environment, env["url"])
    proxy = t.get(t.proxy_name)
    return proxy_conf.served(t.read_conf(proxy))


MOMENTS = {"after the new backend starts": "started on the target's",
           "during readiness": "waiting for readiness",
           "after the switch, before the old backend stops": "switched staging"}


def test_killed_deploys_leave_one_consistent_version_and_the_next_deploy_succeeds(images, env):
    """SIGTERM (GitLab's job cancel) and SIGKILL (a runner dying) after the new backend starts,
    during readiness, and after the switch before the old backend stops, one after the other on
    one environment (each next deploy is the following case's starting point): the environment
    answers throughout with one of the two versions, a SIGTERM restores exactly what was served,
    the proxy always names an existing backend, and the next deploy succeeds and cleans up."""
    current = "v1"
    deploy(images[current], "staging", env["url"], env["ns"])
    for moment, pattern in MOMENTS.items():
        for sig in (signal.SIGTERM, signal.SIGKILL):
            case, other = f"{sig.name} {moment}", "v2" if current == "v1" else "v1"
            with LoadGenerator(env["url"], images["smoke"]["inputs"][:1], threads=2, max_seconds=120,
                               rate=20) as load:
                proc = _cli(env, images[other], extra_env={"MODELCI_DRAIN_SECONDS": "5"})
                log = _kill_when(proc, pattern, sig)
                time.sleep(1.0)
            assert proc.returncode != 0, (case, log[-1500:])
            counts = load.counts()
            assert counts["failed"] == 0 and set(counts["versions"]) <= {"v1", "v2"}, (case, counts)
            served = _proxy_names(env)
            names = {b.name: b for b in _backends(env)}
            version = _served(env["url"])
            assert served is not None and served.name in names, case  # names an existing backend
            if sig == signal.SIGTERM:
                assert "cancelled (SIGTERM)" in log, (case, log[-1500:])
                assert version == current, case  # handled like a failure: what was served before
                assert len(names) == 1, (case, list(names))
            else:
                assert version == (other if "after the switch" in moment else current), case
            result = deploy(images[other], "staging", env["url"], env["ns"])
            assert _served(env["url"]) == other, case
            assert [b.name for b in _backends(env)] == [result["backend"]], case
            current = other


def test_an_orphan_is_never_switched_to(images, env):
    """The review's reproduction: a deploy killed mid-way leaves a backend running; the next deploy
    fails after its switch; production must go back to what it served, never to the orphan."""
    deploy(images["v1"], "staging", env["url"], env["ns"])
    proc = _cli(env, images["v2"])
    _kill_when(proc, "waiting for readiness", signal.SIGKILL)
    orphans = [b.name for b in _backends(env)]
    assert len(orphans) == 2  # the killed deploy's backend is still there
    proc = _cli(env, images["v2"], extra_env={"MODELCI_DRAIN_SECONDS": "5"})
    log = _kill_when(proc, "switched staging", signal.SIGTERM)
    assert "not served by the proxy" in log, log[-1500:]  # the orphan was removed at the start
    assert _served(env["url"]) == "v1"
    remaining = [b.name for b in _backends(env)]
    assert len(remaining) == 1 and remaining[0] in orphans and _proxy_names(env).name == remaining[0]


def test_a_lock_whose_holder_was_killed_is_taken_over_once_stale(images, env):
    deploy(images["v1"], "staging", env["url"], env["ns"])
    stale = {"MODELCI_DEPLOY_LOCK_STALE": "6"}
    proc = _cli(env, images["v2"], extra_env=stale)
    _kill_when(proc, "started on the target's", signal.SIGKILL)  # holds the lock, then dies
    t0 = time.time()
    proc = _cli(env, images["v2"], extra_env=stale)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err[-1500:]
    assert "taking it over" in err and "waiting for the lock" in err, err[-1500:]
    assert time.time() - t0 >= 5
    assert _served(env["url"]) == "v2" and len(_backends(env)) == 1


def test_staging_and_production_on_one_host_do_not_disturb_each_other(images, env):
    # "prod": an environment named production also runs the release checks (tests/test_trust*.py,
    # tests/test_e2e_adversarial.py); here only the two environments' containers on one host matter
    prod_url = env["url"].rsplit(":", 1)[0] + ":" + str(localci.free_port())
    procs = [_cli(env, images["v1"]), _cli(env, images["v2"], "prod", url=prod_url)]
    outs = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-800:] for o in outs]
    assert not any("waiting for the lock" in o[1] for o in outs)  # one lock per environment
    assert _served(env["url"]) == "v1" and _served(prod_url) == "v2"
    assert len(_backends(env, "staging")) == 1 and len(_backends(env, "prod")) == 1
    deploy(images["v2"], "staging", env["url"], env["ns"])  # staging's cleanup leaves production alone
    assert _served(prod_url) == "v2" and len(_backends(env, "prod")) == 1


def test_containers_are_hardened_and_the_proxy_image_was_pulled(images, env, proxy_image):
    result = deploy(images["v1"], "staging", env["url"], env["ns"])
    c = env["host"].client()
    t = DockerTarget(c, env["ns"], "staging", env["url"])
    for ctr in (c.containers.get(result["backend"]), t.get(t.proxy_name)):
        hc = ctr.attrs["HostConfig"]
        assert hc["ReadonlyRootfs"] is True, ctr.name
        assert hc["CapDrop"] == ["ALL"] and "no-new-privileges:true" in hc["SecurityOpt"], ctr.name
        assert hc["Memory"] > 0 and hc["PidsLimit"] > 0, ctr.name
        assert hc["LogConfig"]["Config"].get("max-size"), ctr.name
        assert ctr.attrs["Config"]["User"] not in ("", "0", "root"), ctr.name
    # pulled by digest, not built on the target: the image the proxy runs has the registry's digest
    proxy = t.get(t.proxy_name)
    assert result["proxy_image"].startswith(proxy_image.rsplit(":", 1)[0] + "@sha256:")
    assert result["proxy_image"] in c.images.get(proxy.image.id).attrs["RepoDigests"]
    assert result["target"]["labels"] == [f"io.modelci.testhost={env['host'].info['name']}"]


def test_over_ssh_the_deploy_reaches_the_target_engine(images, env, monkeypatch):
    for k, v in env["host"].ssh_env().items():
        monkeypatch.setenv(k, v)
    for k in ("DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"):
        monkeypatch.delenv(k, raising=False)
    result = deploy(images["v1"], "staging", env["url"], env["ns"])
    assert result["target"]["labels"] == [f"io.modelci.testhost={env['host'].info['name']}"]
    assert _served(env["url"]) == "v1"


def test_after_an_engine_restart_production_serves_the_same_version(images, env):
    deploy(images["v1"], "staging", env["url"], env["ns"])
    deploy(images["v2"], "staging", env["url"], env["ns"])
    env["host"].restart_engine()
    deadline, version = time.time() + 60, None
    while time.time() < deadline:
        try:
            version = _served(env["url"])
            break
        except (requests.RequestException, ValueError, KeyError):
            time.sleep(0.5)
    assert version == "v2"
    assert _proxy_names(env).name in [b.name for b in _backends(env)]


def test_a_new_proxy_image_replaces_the_proxy_without_a_failed_request(images, env, registry, docker_client,
                                                                       proxy_image, monkeypatch):
    """A release brings a new proxy image: the deploy that first uses it swaps the proxy container
    (same config volume, reuseport overlap) while the environment keeps answering."""
    import io

    newer = proxy_image.rsplit(":", 1)[0] + ":newer"
    docker_client.images.build(fileobj=io.BytesIO(f"FROM {proxy_image}\nLABEL io.modelci.test=newer\n".encode()),
                               tag=newer, rm=True)
    with monkeypatch.context() as main_engine:  # the release pushes from its own engine
        for k in env["host"].tcp_env():
            main_engine.delenv(k)
        localci.push_image(newer, newer, registry)
    deploy(images["v1"], "staging", env["url"], env["ns"])
    monkeypatch.setenv("MODELCI_PROXY_IMAGE", newer)
    with LoadGenerator(env["url"], images["smoke"]["inputs"][:1], threads=2, max_seconds=90, rate=40) as load:
        time.sleep(0.5)
        result = deploy(images["v2"], "staging", env["url"], env["ns"])
        time.sleep(0.5)
    counts = load.counts()
    assert counts["failed"] == 0, counts
    t = DockerTarget(env["host"].client(), env["ns"], "staging", env["url"])
    proxies = t.c.containers.list(all=True, filters={"label": [f"io.modelci.namespace={env['ns']}",
                                                                "io.modelci.role=proxy"]})
    assert [p.name for p in proxies] == [t.proxy_name]
    assert result["proxy_image"] in t.c.images.get(proxies[0].image.id).attrs["RepoDigests"]
    assert proxies[0].image.labels.get("io.modelci.test") == "newer"
    assert _served(env["url"]) == "v2"


def test_grpc_clients_reach_the_served_version_through_the_proxy(images, env):
    """The environment's gRPC listener (the deploy component's grpc_port) forwards the Open Inference
    Protocol's gRPC service to the served backend, and a deploy switches it with HTTP: a stock
    tritonclient gRPC client on another host sees v1, then v2, with the smoke test's predictions."""
    import numpy as np
    import tritonclient.grpc as tg

    grpc_port = localci.free_port()
    smoke = images["smoke"]
    rows = smoke["inputs"]
    address = f"{env['url'].split('//', 1)[1].rsplit(':', 1)[0]}:{grpc_port}"
    for version in ("v1", "v2"):
        deploy(images[version], "staging", env["url"], env["ns"], grpc_port=grpc_port)
        name = requests.get(f"{env['url']}/lineage", timeout=5).json()["name"]
        c = tg.InferenceServerClient(address)
        try:
            assert c.is_server_ready() and c.is_model_ready(name)
            assert c.get_model_metadata(name).versions == [version]
            inputs = []
            for column in rows[0]:
                inp = tg.InferInput(column, [len(rows)], "FP64")
                inp.set_data_from_numpy(np.array([r[column] for r in rows], dtype=np.float64))
                inputs.append(inp)
            got = c.infer(name, inputs).as_numpy("predict").tolist()
        finally:
            c.close()
        got = [v.decode() if isinstance(v, bytes) else v for v in got]
        if version == "v1":  # the smoke test was recorded with v1
            assert got == smoke["expected"]
        http = requests.post(f"{env['url']}/predict", json={"records": rows}, timeout=10).json()
        assert got == http["predictions"], (version, got, http)
