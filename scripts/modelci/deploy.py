"""Deploy a serving image to an environment on a Docker host without dropping requests.

Each environment is a stable front proxy (nginx, in its own container, listening on the
environment's port) in front of one backend container (the serving image, by digest, on a private
loopback port). A deploy starts the new backend beside the old one, waits for readiness, replays the
model's smoke test against it, then switches the proxy's upstream with a graceful `nginx -s reload`
(in-flight requests finish on the old workers, new ones go to the new backend) and only then stops
the old backend. Any failure before the switch removes the new backend: the old one keeps serving.
Deploys to one environment are serialised by a lock held on the target.

Why a proxy: with host networking two containers cannot listen on one port, and SO_REUSEPORT
hand-off would need both processes to cooperate and still drops connections queued on the closing
listener. A reload of a proxy is the standard, proven zero-downtime switch.
"""
from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import secrets
import socket
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import requests

from . import artifact, dockerutil, log
from .errors import ModelCIError

LABEL_NS = "io.modelci.namespace"
LABEL_ENV = "io.modelci.environment"
LABEL_ROLE = "io.modelci.role"
PROXY_IMAGE = "modelci/proxy:1"

PROXY_DOCKERFILE = """\
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends nginx >/dev/null \\
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb \\
 && mkdir -p /etc/modelci /tmp/nginx && chown -R 10001:10001 /etc/modelci /tmp/nginx
COPY nginx.conf /etc/modelci/nginx.conf
USER 10001
CMD ["nginx", "-c", "/etc/modelci/nginx.conf"]
"""

NGINX_CONF = """\
daemon off;
worker_processes 1;
pid /tmp/nginx/nginx.pid;
error_log stderr warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path /tmp/nginx/body;
    proxy_temp_path /tmp/nginx/proxy;
    fastcgi_temp_path /tmp/nginx/fastcgi;
    uwsgi_temp_path /tmp/nginx/uwsgi;
    scgi_temp_path /tmp/nginx/scgi;
    client_max_body_size 64m;
    include /etc/modelci/site.conf;
}
"""


def site_conf(listen: str, backend_port: int) -> str:
    return f"""\
upstream modelci_backend {{ server 127.0.0.1:{backend_port}; keepalive 32; }}
server {{
    listen {listen} reuseport;
    location = /modelci/proxy-health {{ return 200 "ok\\n"; }}
    location / {{
        proxy_pass http://modelci_backend;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $host;
        proxy_read_timeout 120s;
    }}
}}
# backend-port: {backend_port}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def default_namespace() -> str:
    return (os.environ.get("MODELCI_DEPLOY_NAMESPACE") or os.environ.get("CI_PROJECT_PATH_SLUG")
            or "modelci")


@contextlib.contextmanager
def target_lock(namespace: str, environment: str, timeout: float = 900.0) -> Iterator[None]:
    """Serialise deploys to one environment (GitLab's resource_group is not enforced everywhere)."""
    lock_dir = Path(os.environ.get("MODELCI_LOCK_DIR") or Path(tempfile.gettempdir()) / "modelci-locks")
    lock_dir.mkdir(parents=True, exist_ok=True)
    path = lock_dir / f"{namespace}--{environment}.lock"
    with open(path, "a+") as fh:
        start = time.time()
        announced = False
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not announced:
                    fh.seek(0)
                    log.info(f"deploy to {environment}: waiting for the lock ({path}) held by "
                             f"{fh.read().strip() or 'another deploy'}")
                    announced = True
                if time.time() - start > timeout:
                    raise ModelCIError(f"deploy to {environment}: lock {path} still held after "
                                       f"{timeout:.0f}s; another deploy is stuck, check it") from None
                time.sleep(0.5)
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} job {os.environ.get('CI_JOB_ID', '-')} since {time.ctime()}\n")
        fh.flush()
        log.info(f"deploy to {environment}: lock acquired after {time.time() - start:.1f}s")
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _put_file(container: Any, directory: str, name: str, content: str) -> None:
    buf = io.BytesIO()
    data = content.encode()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mode = 0o644
        info.uid = info.gid = 10001
        info.mtime = int(time.time())
        tar.addfile(info, io.BytesIO(data))
    if not container.put_archive(directory, buf.getvalue()):
        raise ModelCIError(f"could not write {directory}/{name} into {container.name}")


def _wait_http(url: str, timeout: float, container: Any | None = None, what: str = "ready") -> None:
    deadline = time.time() + timeout
    last = ""
    next_note = time.time() + 5
    while time.time() < deadline:
        if container is not None:
            container.reload()
            restarts = int(container.attrs.get("RestartCount") or 0)
            if container.status in ("exited", "dead", "restarting") or restarts:
                logs = container.logs(tail=15).decode(errors="replace").strip().splitlines()
                raise ModelCIError(f"container {container.name} exited before becoming {what} "
                                   f"(exit {container.attrs['State'].get('ExitCode')}, "
                                   f"{restarts} restarts): "
                                   f"{' | '.join(logs[-3:]) or 'no output'}")
        try:
            resp = requests.get(url, timeout=2)
            if resp.status_code == 200:
                return
            last = f"HTTP {resp.status_code}"
        except requests.RequestException as exc:
            last = exc.__class__.__name__
        if time.time() > next_note:
            log.info(f"  waiting for {url} ({last}, {deadline - time.time():.0f}s left)")
            next_note = time.time() + 5
        time.sleep(0.25)
    raise ModelCIError(f"{url} not {what} after {timeout:.0f}s (last: {last})")


def _values_match(expected: Any, got: Any) -> bool:
    if isinstance(expected, float) or isinstance(got, float):
        try:
            return abs(float(expected) - float(got)) <= 1e-6 * max(1.0, abs(float(expected)))
        except (TypeError, ValueError):
            return False
    return expected == got


def smoke_test(base_url: str, smoke: dict[str, Any] | None, expected_sha: str) -> dict[str, Any]:
    lineage = requests.get(f"{base_url}/lineage", timeout=10).json()
    if lineage.get("sha256") != expected_sha:
        raise ModelCIError(f"smoke test: {base_url}/lineage reports model sha256 "
                           f"{str(lineage.get('sha256'))[:12]}…, the image label says {expected_sha[:12]}…")
    if not smoke:
        return {"rows": 0, "lineage": lineage}
    inputs, expected = smoke.get("inputs") or [], smoke.get("expected") or []
    resp = requests.post(f"{base_url}/predict", json=inputs, timeout=30)
    if resp.status_code != 200:
        raise ModelCIError(f"smoke test: POST {base_url}/predict answered HTTP {resp.status_code}: "
                           f"{resp.text[:200]}")
    got = resp.json().get("predictions")
    if not isinstance(got, list) or len(got) != len(expected):
        raise ModelCIError(f"smoke test: expected {len(expected)} predictions, got {got!r:.200}")
    bad = [i for i, (e, g) in enumerate(zip(expected, got)) if not _values_match(e, g)]
    if bad:
        i = bad[0]
        raise ModelCIError(f"smoke test: {len(bad)}/{len(expected)} predictions differ from smoke.json "
                           f"(row {i}: expected {expected[i]!r}, got {got[i]!r}); not switching traffic")
    return {"rows": len(expected), "lineage": lineage}


class DockerTarget:
    def __init__(self, namespace: str, environment: str, url: str, base_image: str | None = None):
        self.c = dockerutil.client()
        self.ns = namespace
        self.env = environment
        self.url = url.rstrip("/")
        parsed = urlparse(self.url)
        if parsed.scheme != "http" or not parsed.port:
            raise ModelCIError(f"environment URL {url!r} must be http://HOST:PORT (the port the "
                               "environment's proxy listens on); fix the url input")
        self.port = parsed.port
        self.host = parsed.hostname or "127.0.0.1"
        self.base_image = base_image
        self.proxy_name = f"modelci-{namespace}-{environment}-proxy"

    # -- proxy -------------------------------------------------------------------------------------
    def _proxy_image(self) -> str:
        try:
            self.c.images.get(PROXY_IMAGE)
            return PROXY_IMAGE
        except Exception:  # noqa: BLE001 - docker.errors.ImageNotFound
            pass
        with log.section("modelci_proxy_image", f"building {PROXY_IMAGE} (once per Docker host)"):
            with tempfile.TemporaryDirectory() as ctx:
                Path(ctx, "Dockerfile").write_text(PROXY_DOCKERFILE)
                Path(ctx, "nginx.conf").write_text(NGINX_CONF)
                args = {"BASE_IMAGE": self.base_image} if self.base_image else {}
                for chunk in self.c.api.build(path=ctx, tag=PROXY_IMAGE, buildargs=args, rm=True,
                                              network_mode="host", decode=True):
                    if "error" in chunk:
                        raise ModelCIError(f"building the proxy image failed: {chunk['error'].strip()}")
        return PROXY_IMAGE

    def proxy(self) -> Any | None:
        try:
            return self.c.containers.get(self.proxy_name)
        except Exception:  # noqa: BLE001
            return None

    def current_backend_port(self, proxy: Any) -> int | None:
        code, out = proxy.exec_run(["cat", "/etc/modelci/site.conf"])
        if code != 0:
            return None
        for line in out.decode().splitlines():
            if line.startswith("# backend-port:"):
                return int(line.split(":")[1])
        return None

    def switch(self, backend_port: int) -> None:
        proxy = self.proxy()
        listen = f"{self.host}:{self.port}" if self.host not in ("localhost",) else str(self.port)
        conf = site_conf(listen, backend_port)
        if proxy is None or proxy.status != "running":
            if proxy is not None:
                proxy.remove(force=True)
            image = self._proxy_image()
            proxy = self.c.containers.create(
                image, name=self.proxy_name, network_mode="host", detach=True,
                labels={LABEL_NS: self.ns, LABEL_ENV: self.env, LABEL_ROLE: "proxy"},
                restart_policy={"Name": "unless-stopped"})
            _put_file(proxy, "/etc/modelci", "site.conf", conf)
            proxy.start()
            _wait_http(f"http://127.0.0.1:{self.port}/modelci/proxy-health", 20, proxy, "up")
            return
        _put_file(proxy, "/etc/modelci", "site.conf", conf)
        code, out = proxy.exec_run(["nginx", "-c", "/etc/modelci/nginx.conf", "-t"])
        if code != 0:
            raise ModelCIError(f"proxy config rejected: {out.decode(errors='replace')[-300:]}")
        code, out = proxy.exec_run(["nginx", "-c", "/etc/modelci/nginx.conf", "-s", "reload"])
        if code != 0:
            raise ModelCIError(f"proxy reload failed: {out.decode(errors='replace')[-300:]}")

    # -- backends ----------------------------------------------------------------------------------
    def backends(self) -> list[Any]:
        return self.c.containers.list(all=True, filters={"label": [
            f"{LABEL_NS}={self.ns}", f"{LABEL_ENV}={self.env}", f"{LABEL_ROLE}=backend"]})

    def start_backend(self, image_ref: str, port: int) -> Any:
        digest = image_ref.split("@sha256:")[-1][:12]
        name = f"modelci-{self.ns}-{self.env}-{digest}-{secrets.token_hex(2)}"
        return self.c.containers.run(
            image_ref, name=name, detach=True, network_mode="host",
            environment={"PORT": str(port), "HOST": "127.0.0.1", "MODELCI_ENVIRONMENT": self.env,
                         "MODELCI_IMAGE": image_ref},  # /lineage reports it (trust.production_release)
            labels={LABEL_NS: self.ns, LABEL_ENV: self.env, LABEL_ROLE: "backend",
                    "io.modelci.port": str(port), "io.modelci.image": image_ref},
            restart_policy={"Name": "unless-stopped"})

    def teardown(self) -> list[str]:
        removed = []
        for ctr in self.backends() + ([self.proxy()] if self.proxy() else []):
            ctr.remove(force=True)
            removed.append(ctr.name)
        return removed


def _image_model(c: Any, image_ref: str, work: Path) -> tuple[dict[str, str], dict[str, Any], dict | None]:
    labels = dockerutil.image_labels(c, image_ref)
    model_dir = dockerutil.extract_dir(c, image_ref, "/app/artifact", work / "artifact")
    meta = artifact.verify_model(model_dir)
    if labels.get("io.modelci.model.sha256") and labels["io.modelci.model.sha256"] != meta["sha256"]:
        raise ModelCIError(f"{image_ref}: label io.modelci.model.sha256 does not match the model inside")
    smoke_path = model_dir / "smoke.json"
    smoke = json.loads(smoke_path.read_text()) if smoke_path.exists() else None
    return labels, meta, smoke


def deploy(image_ref: str, environment: str, url: str, *, namespace: str | None = None,
           verdict: str | None = None, ready_timeout: float = 120.0, drain_seconds: float = 2.0,
           base_image: str | None = None) -> dict[str, Any]:
    if "@sha256:" not in image_ref:
        raise ModelCIError(f"image {image_ref!r} is not pinned by digest (REPO@sha256:…); deploy the "
                           "digest from the build job's dotenv report (MODELCI_IMAGE)")
    namespace = namespace or default_namespace()
    t0 = time.time()
    target = DockerTarget(namespace, environment, url, base_image=base_image)
    timings: dict[str, float] = {}
    with target_lock(namespace, environment):
        timings["lock_s"] = round(time.time() - t0, 2)
        auth = dockerutil.login(target.c, image_ref.split("/", 1)[0])
        with log.section("modelci_pull", f"pull {image_ref}"):
            dockerutil.pull(target.c, image_ref, auth)
        with tempfile.TemporaryDirectory(prefix="modelci-deploy-") as tmp:
            labels, meta, smoke = _image_model(target.c, image_ref, Path(tmp))
            if verdict:
                from .gate import require_passing_verdict

                require_passing_verdict(verdict, Path(tmp) / "artifact")
                log.info(f"gate verdict {verdict} passes for model sha256 {meta['sha256'][:12]}…")
        version = labels.get("io.modelci.model.version") or meta.get("version")
        port = free_port()
        log.info(f"deploy {meta.get('name')} {version} to {environment}: new backend on 127.0.0.1:{port}")
        new = target.start_backend(image_ref, port)
        try:
            ts = time.time()
            with log.section("modelci_ready", f"waiting for readiness of {new.name}"):
                _wait_http(f"http://127.0.0.1:{port}/v2/health/ready", ready_timeout, new)
            timings["ready_s"] = round(time.time() - ts, 2)
            smoke_result = smoke_test(f"http://127.0.0.1:{port}", smoke, meta["sha256"])
            log.info(f"smoke test passed on {smoke_result['rows']} rows")
            old = [b for b in target.backends() if b.id != new.id]
            target.switch(port)
            # Confirm the environment URL now serves the new model.
            deadline = time.time() + 15
            while True:
                try:
                    served = requests.get(f"http://127.0.0.1:{target.port}/lineage", timeout=5).json()
                    if served.get("sha256") == meta["sha256"]:
                        break
                except (requests.RequestException, ValueError):
                    pass
                if time.time() > deadline:
                    raise ModelCIError(f"{url} does not serve the new model after the switch")
                time.sleep(0.2)
        except BaseException:
            log.warn(f"deploy to {environment} failed: removing {new.name}; the previous backend keeps serving")
            current = target.proxy()
            if current is not None and target.current_backend_port(current) == port:
                previous = [b for b in target.backends() if b.id != new.id and b.status == "running"]
                if previous:
                    target.switch(int(previous[0].labels.get("io.modelci.port", 0)))
            with contextlib.suppress(Exception):
                new.remove(force=True)
            raise
        time.sleep(drain_seconds)  # let in-flight requests on old proxy workers finish
        for b in old:
            with contextlib.suppress(Exception):
                b.stop(timeout=10)
                b.remove(force=True)
        timings["total_s"] = round(time.time() - t0, 2)
    return {"environment": environment, "url": url, "image": image_ref, "model_name": meta.get("name"),
            "model_version": version, "sha256": meta["sha256"], "backend": new.name,
            "replaced": [b.name for b in old], "timings": timings}
