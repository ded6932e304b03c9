"""An environment's containers on the target Docker engine, reached only through its API.

Names: `modelci-<namespace>-<environment>-proxy` (the proxy), `...-proxy-site` (its config
volume), `...-lock` (the deploy lock), `...-<digest12>-<random>` (backends). HTTP requests that
check a backend or the proxy run INSIDE a backend container on the target (`exec` of a short Python
script; backends use the target's host network, so they reach the target's loopback), never from
the job: the job's loopback is not the target's.
"""
from __future__ import annotations

import contextlib
import ipaddress
import json
import secrets
import time
from typing import Any
from urllib.parse import urlparse

from .. import log
from ..errors import ModelCIError
from . import proxy as proxy_conf

LABEL_NS = "io.modelci.namespace"
LABEL_ENV = "io.modelci.environment"
LABEL_ROLE = "io.modelci.role"
LABEL_PORT = "io.modelci.port"
LOG_CONFIG = {"type": "json-file", "config": {"max-size": "10m", "max-file": "3"}}
# every container modelci starts on a target: read-only root, no capabilities, no privilege gain,
# bounded logs (docs/deploy-targets.md#hardening)
HARDENING: dict[str, Any] = {"read_only": True, "cap_drop": ["ALL"],
                             "security_opt": ["no-new-privileges:true"], "log_config": LOG_CONFIG}

HTTP_SCRIPT = r"""
import json, sys, urllib.error, urllib.request
method, url, body, timeout = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
req = urllib.request.Request(url, data=body.encode() if body else None, method=method,
                             headers={"Content-Type": "application/json"})
try:
    with urllib.request.urlopen(req, timeout=timeout) as r:
        print(json.dumps({"status": r.status, "body": r.read().decode(errors="replace")}))
except urllib.error.HTTPError as e:
    print(json.dumps({"status": e.code, "body": e.read().decode(errors="replace")}))
except Exception as e:
    print(json.dumps({"status": 0, "body": type(e).__name__}))
"""
PORTS_SCRIPT = r"""
import socket, sys
avoid = set(int(p) for p in sys.argv[2:])
socks, ports = [], []
while len(ports) < int(sys.argv[1]):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
    p = s.getsockname()[1]
    if p not in avoid:
        ports.append(p)
print(" ".join(map(str, ports)))
"""


class DockerTarget:
    def __init__(self, client: Any, namespace: str, environment: str, url: str):
        self.c = client
        self.ns, self.env = namespace, environment
        self.url = url.rstrip("/")
        parsed = urlparse(self.url)
        if parsed.scheme != "http" or not parsed.port or not parsed.hostname:
            raise ModelCIError(f"environment URL {url!r} must be http://HOST:PORT (HOST the target's "
                               "address, PORT where the environment's proxy listens); fix the url input")
        self.port = parsed.port
        try:  # an IP literal: listen there only; a DNS name: listen on every address of the target
            self.listen_host: str | None = str(ipaddress.ip_address(parsed.hostname))
        except ValueError:
            self.listen_host = None
        self.prefix = f"modelci-{namespace}-{environment}"
        self.proxy_name = f"{self.prefix}-proxy"
        self.volume_name = f"{self.prefix}-proxy-site"
        self.lock_name = f"{self.prefix}-lock"
        self.labels = {LABEL_NS: namespace, LABEL_ENV: environment}

    def listen(self, port: int) -> str:
        return f"{self.listen_host}:{port}" if self.listen_host else str(port)

    def on_target_url(self, port: int | None = None) -> str:
        """The proxy's address as seen from a container on the target."""
        return f"http://{self.listen_host or '127.0.0.1'}:{port or self.port}"

    # -- generic -------------------------------------------------------------------------------
    def get(self, name: str) -> Any | None:
        import docker

        try:
            return self.c.containers.get(name)
        except docker.errors.NotFound:
            return None

    @staticmethod
    def exec(ctr: Any, cmd: list[str], environment: dict[str, str] | None = None) -> tuple[int, str]:
        code, out = ctr.exec_run(cmd, environment=environment, demux=False)
        return int(code if code is not None else 1), (out or b"").decode(errors="replace")

    def http(self, via: Any, method: str, url: str, body: str = "", timeout: float = 5.0) -> tuple[int, str]:
        """An HTTP request made on the target, from inside container `via` (host network)."""
        code, out = self.exec(via, ["python3", "-c", HTTP_SCRIPT, method, url, body, str(timeout)])
        if code != 0:
            return 0, f"exec failed ({code}): {out.strip()[-200:]}"
        try:
            doc = json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            return 0, f"unreadable answer: {out[-200:]}"
        return int(doc["status"]), str(doc["body"])

    # -- proxy ---------------------------------------------------------------------------------
    def ensure_proxy(self, image: str) -> Any:
        """The environment's proxy, running the wanted image (created on the first deploy, started
        if the engine came back without it, replaced without a gap when the image changed). Its
        config volume keeps the upstream across restarts and replacements."""
        ctr = self.get(self.proxy_name)
        if ctr is None:
            log.info(f"creating proxy {self.proxy_name} from {image}")
            ctr = self._run_proxy(image)
        elif ctr.status != "running":
            log.info(f"proxy {self.proxy_name} is {ctr.status}: starting it (its config is on {self.volume_name})")
            ctr.start()
            ctr.reload()
        if ctr.image.id != self.c.images.get(image).id:
            ctr = self._replace_proxy(ctr, image)
        for other in self.c.containers.list(all=True, filters={"label": [
                f"{LABEL_NS}={self.ns}", f"{LABEL_ENV}={self.env}", f"{LABEL_ROLE}=proxy"]}):
            if other.id != ctr.id:  # a replacement interrupted by a kill
                self.remove(other, "an earlier proxy of this environment")
        return ctr

    def _run_proxy(self, image: str) -> Any:
        return self.c.containers.run(
            image, name=self.proxy_name, detach=True, network_mode="host",
            labels={**self.labels, LABEL_ROLE: "proxy"}, restart_policy={"Name": "unless-stopped"},
            volumes={self.volume_name: {"bind": proxy_conf.SITE_DIR, "mode": "rw"}},
            tmpfs={"/tmp/nginx": "rw,size=64m,uid=10001,gid=10001,mode=0700"},
            mem_limit="256m", pids_limit=64, **HARDENING)

    def _replace_proxy(self, old: Any, image: str) -> Any:
        """A new proxy image: start it beside the old one (both listen with reuseport on the same
        ports, reading the same config volume), then let the old nginx quit gracefully."""
        log.info(f"proxy {self.proxy_name}: replacing its image with {image}")
        old.rename(f"{self.proxy_name}-old-{secrets.token_hex(2)}")
        try:
            new = self._run_proxy(image)
            for _ in range(50):
                code, _out = self.exec(new, ["sh", "-c", "test -s /tmp/nginx/nginx.pid"])
                if code == 0:
                    break
                time.sleep(0.2)
            else:
                raise ModelCIError(f"the new proxy {image} did not start: {new.logs(tail=5).decode(errors='replace')}")
        except BaseException:
            with contextlib.suppress(Exception):
                self.remove(self.c.containers.get(self.proxy_name), "failed proxy replacement")
            old.rename(self.proxy_name)
            raise
        time.sleep(1.0)  # the new workers accept; then the old nginx finishes its requests and quits
        with contextlib.suppress(Exception):
            old.stop(timeout=15)  # STOPSIGNAL SIGQUIT: graceful
        self.remove(old, "replaced by the new proxy image")
        return new

    def read_conf(self, proxy: Any) -> str:
        code, out = self.exec(proxy, ["cat", proxy_conf.SITE_CONF])
        if code != 0:
            raise ModelCIError(f"cannot read {proxy_conf.SITE_CONF} in {self.proxy_name}: {out.strip()[-200:]}")
        return out

    def write_conf(self, proxy: Any, text: str) -> None:
        """Replace the site config atomically (rename on the volume), check it and reload gracefully:
        in-flight requests finish on the old workers. A config nginx rejects is rolled back."""
        previous = self.read_conf(proxy)
        tmp = f"{proxy_conf.SITE_DIR}/.site.conf.new"
        code, out = self.exec(proxy, ["sh", "-c", f'printf "%s" "$MODELCI_SITE" > {tmp} && mv -f {tmp} '
                                      f"{proxy_conf.SITE_CONF}"], environment={"MODELCI_SITE": text})
        if code != 0:
            raise ModelCIError(f"cannot write the proxy config: {out.strip()[-300:]}")
        code, out = self.exec(proxy, ["nginx", "-t", "-q", "-c", proxy_conf.MAIN_CONF])
        if code != 0:
            self.exec(proxy, ["sh", "-c", f'printf "%s" "$MODELCI_SITE" > {tmp} && mv -f {tmp} '
                              f"{proxy_conf.SITE_CONF}"], environment={"MODELCI_SITE": previous})
            raise ModelCIError(f"proxy config rejected: {out.strip()[-300:]}")
        self.reload(proxy)

    def reload(self, proxy: Any) -> None:
        code, out = self.exec(proxy, ["nginx", "-c", proxy_conf.MAIN_CONF, "-s", "reload"])
        if code != 0:
            raise ModelCIError(f"proxy reload failed: {out.strip()[-300:]}")

    # -- backends ------------------------------------------------------------------------------
    def backends(self) -> list[Any]:
        return list(self.c.containers.list(all=True, filters={"label": [
            f"{LABEL_NS}={self.ns}", f"{LABEL_ENV}={self.env}", f"{LABEL_ROLE}=backend"]}))

    def free_ports(self, image: str, count: int) -> list[int]:
        """Ports free on the TARGET's loopback (asked on the target), avoiding every port a modelci
        backend there is labelled with (a stopped one may start again with its restart policy)."""
        taken = [c.labels.get(LABEL_PORT, "0") for c in self.c.containers.list(
            all=True, filters={"label": f"{LABEL_ROLE}=backend"})]
        taken += [c.labels.get("io.modelci.grpc-port", "0") for c in self.c.containers.list(
            all=True, filters={"label": f"{LABEL_ROLE}=backend"})]
        out = self.c.containers.run(image, ["python3", "-c", PORTS_SCRIPT, str(count), *taken],
                                    network_mode="host", remove=True, user="10001:10001",
                                    healthcheck={"test": ["NONE"]},
                                    pids_limit=32, mem_limit="128m", **HARDENING)
        return [int(p) for p in out.decode().split()]

    def backend_name(self, image_ref: str) -> str:
        return f"{self.prefix}-{image_ref.split('@sha256:')[-1][:12]}-{secrets.token_hex(2)}"

    def start_backend(self, name: str, image_ref: str, port: int, grpc_port: int, memory: str, pids: int) -> Any:
        # restart policy: a served backend comes back with the engine; one the proxy does not name
        # is never served (the proxy's config names it) and the next deploy removes it
        return self.c.containers.run(
            image_ref, name=name, detach=True, network_mode="host",
            environment={"PORT": str(port), "HOST": "127.0.0.1", "GRPC_PORT": str(grpc_port),
                         "MODELCI_ENVIRONMENT": self.env,
                         "MODELCI_IMAGE": image_ref},  # /lineage reports it (trust.production_release)
            labels={**self.labels, LABEL_ROLE: "backend", LABEL_PORT: str(port),
                    "io.modelci.grpc-port": str(grpc_port), "io.modelci.image": image_ref},
            restart_policy={"Name": "unless-stopped"}, tmpfs={"/tmp": "rw,size=64m,mode=1777"},
            mem_limit=memory, pids_limit=pids, **HARDENING)

    def remove(self, ctr: Any, why: str) -> None:
        log.info(f"removing {ctr.name} ({why})")
        with contextlib.suppress(Exception):
            ctr.remove(force=True)

    def teardown(self) -> list[str]:
        removed = []
        for ctr in [*self.backends(), self.get(self.proxy_name), self.get(self.lock_name)]:
            if ctr is not None:
                ctr.remove(force=True)
                removed.append(ctr.name)
        with contextlib.suppress(Exception):
            self.c.volumes.get(self.volume_name).remove(force=True)
        return removed
