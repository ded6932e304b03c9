"""A real MLflow tracking server for the whole test session (pytest plugin: `pytest_plugins =
["mlflow_server"]`), behind the fake GitLab's MLflow routes (tests/fake_gitlab_mlflow.py).

tools/harness.sh installs the pinned `mlflow` into its own virtualenv (.modelci-local/mlflow-venv);
the fixture starts `mlflow server` with a SQLite backend and a local artifact store on a free
loopback port, waits for /health (about 17 s on the 2-core machines), points every fake GitLab made
afterwards at it (FAKE_GITLAB_MLFLOW_URL/STORE, also inherited by the fakes that run as processes)
and stops it when the session ends.
"""
from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(os.environ.get("MODELCI_MLFLOW_VENV", ROOT / ".modelci-local" / "mlflow-venv"))


@dataclass
class MlflowServer:
    url: str
    root: Path
    store: Path
    proc: subprocess.Popen

    def get(self, endpoint: str, **params: str) -> dict:
        import requests

        return requests.get(f"{self.url}/api/2.0/mlflow/{endpoint}", params=params, timeout=30).json()

    def post(self, endpoint: str, body: dict) -> dict:
        import requests

        return requests.post(f"{self.url}/api/2.0/mlflow/{endpoint}", json=body, timeout=30).json()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:  # noqa: S310 - loopback only
            return resp.status == 200
    except OSError:
        return False


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    exe = VENV / "bin" / "mlflow"
    if not exe.exists():
        pytest.fail(f"{exe} not found: run `bash tools/harness.sh` (it installs the pinned mlflow in its own venv)")
    root = tmp_path_factory.mktemp("mlflow")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(root / "server.log", "ab")
    env = {**os.environ, "MLFLOW_HOME": str(root)}
    proc = subprocess.Popen([str(exe), "server", "--backend-store-uri", f"sqlite:///{root / 'db.sqlite'}",
                             "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1",
                             "--port", str(port), "--workers", "1"], stdout=log, stderr=log, cwd=root, env=env,
                            start_new_session=True)
    deadline = time.time() + 120
    while not _healthy(url):
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.fail(f"mlflow server did not start; see {root / 'server.log'}:\n"
                        + (root / "server.log").read_text()[-2000:])
        time.sleep(0.3)
    store = root / "gitlab-store"
    saved = {k: os.environ.get(k) for k in ("FAKE_GITLAB_MLFLOW_URL", "FAKE_GITLAB_MLFLOW_STORE")}
    os.environ["FAKE_GITLAB_MLFLOW_URL"] = url
    os.environ["FAKE_GITLAB_MLFLOW_STORE"] = str(store)
    yield MlflowServer(url, root, store, proc)
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    os.killpg(proc.pid, 15)
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
