"""The proxy's site config: listeners, the one upstream it serves, the body limit.

The config file on the proxy's volume is the record of which backend is served: a deploy reads it
before switching and restores exactly that text on any failure, and at its start removes every
backend of the environment the config does not name (docs/deploy-targets.md#crash-safety).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

SITE_DIR = "/etc/modelci/site"
SITE_CONF = f"{SITE_DIR}/site.conf"
MAIN_CONF = "/etc/modelci/nginx.conf"
HEALTH_PATH = "/modelci/proxy-health"
_MARK = re.compile(r"^# modelci-backend: (?P<name>\S+) port=(?P<port>\d+) grpc=(?P<grpc>\d+)$", re.M)


@dataclass(frozen=True)
class Served:
    name: str
    port: int
    grpc_port: int


def site_conf(listen: str, backend: Served, max_body: int, grpc_listen: str | None) -> str:
    """nginx config for one environment. `listen` is HOST:PORT (or PORT); gRPC (HTTP/2, grpc_pass)
    gets its own listener when `grpc_listen` is set."""
    conf = f"""\
# modelci-backend: {backend.name} port={backend.port} grpc={backend.grpc_port}
upstream modelci_backend {{ server 127.0.0.1:{backend.port}; keepalive 32; }}
server {{
    listen {listen} reuseport;
    client_max_body_size {max_body};
    location = {HEALTH_PATH} {{ return 200 "ok\\n"; }}
    location / {{
        proxy_pass http://modelci_backend;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $host;
        proxy_read_timeout 120s;
    }}
}}
"""
    if grpc_listen and backend.grpc_port:
        conf += f"""\
server {{
    listen {grpc_listen} http2 reuseport;
    client_max_body_size {max_body};
    location / {{ grpc_pass grpc://127.0.0.1:{backend.grpc_port}; }}
}}
"""
    return conf


def served(conf: str | None) -> Served | None:
    m = _MARK.search(conf or "")
    return Served(m["name"], int(m["port"]), int(m["grpc"])) if m else None
