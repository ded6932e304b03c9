"""Shared test fixtures. End-to-end tests share ONE prepared environment per session: the Docker
engine, the locally built base image and one real registry on a free loopback port."""
from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT / "tests"))

import localci  # noqa: E402

ALLOWED_SKIP_MARKERS = {"real_gitlab"}  # the only tests that may be skipped (opt-in, need a real GitLab)


def pytest_collection_modifyitems(session, config, items):
    config._modelci_e2e_collected = sum(1 for i in items if i.get_closest_marker("e2e"))


def pytest_sessionfinish(session, exitstatus):
    """A run that skips Docker tests is not green: fail when e2e tests were not collected (in a full
    run) or when anything but the opt-in real-GitLab tests was skipped."""
    config = session.config
    if os.environ.get("MODELCI_STRICT_SUITE") != "1":
        return
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    bad = []
    if reporter is not None:
        for rep in reporter.stats.get("skipped", []):
            keywords = getattr(rep, "keywords", {}) or {}
            if not any(m in keywords for m in ALLOWED_SKIP_MARKERS):
                bad.append(rep.nodeid)
    if not getattr(config, "_modelci_e2e_collected", 0):
        bad.append("<no end-to-end tests collected>")
    if bad:
        sys.stderr.write("\nSTRICT SUITE: not allowed: " + ", ".join(bad) + "\n")
        session.exitstatus = 1


@pytest.fixture(scope="session")
def docker_client():
    import docker

    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"Docker engine not reachable ({exc}); run tools/harness.sh (it starts dockerd)")
    return client


@pytest.fixture(scope="session")
def base_image(docker_client):
    name = localci.BASE_IMAGE
    try:
        docker_client.images.get(name)
    except Exception:  # noqa: BLE001
        subprocess.run(["bash", str(ROOT / "tools" / "harness.sh")], check=True)
    return name


@pytest.fixture(scope="session")
def registry(tmp_path_factory, docker_client):
    reg = localci.Registry(localci.free_port(), tmp_path_factory.mktemp("registry"),
                           htpasswd=("modelci", "reg-" + secrets.token_hex(8)))
    reg.start()
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def remote_host(tmp_path_factory, registry):
    """ONE deploy host the runner does not share, for the whole session (tools/remotehost.py): a
    Docker engine in its own network namespace on 198.18.0.0/24, TCP+TLS and ssh:// access, the
    session registry reachable from it under the same name. Torn down at the end, also after a
    failure (and by the next session's start if this process is killed)."""
    import remotehost

    # not under pytest's basetemp: a concurrent pytest session prunes old basetemps (keeping 3),
    # and this directory holds the engine's data root and the host's keys
    state = Path("/var/tmp") / f"modelci-remotehost-{os.getpid()}-{secrets.token_hex(2)}"
    host = remotehost.RemoteHost(state, forwards=[registry.port], owner_pid=os.getpid())
    try:
        host.start()
        yield host
    finally:
        host.stop()


@pytest.fixture(scope="session")
def proxy_image(docker_client, registry, base_image):
    """images/proxy.Dockerfile built on the main engine (as the release job does) and pushed to the
    session registry; deploys pull it onto the target by digest."""
    return localci.publish_proxy_image(registry, base_image)
