"""Variables read by the serving image (app/), declared here for the generated settings table.

Declarations only: the app reads os.environ itself and never imports modelci (the image carries only
app/ and its pinned runtime). app/README.md describes each variable in context. HOST, PORT and
GRPC_PORT (default 8081; 0 turns gRPC off) are read too but are not MODELCI_* names.
"""
from __future__ import annotations

from . import var

_APP = ("serving image",)

var("MODELCI_MODEL_DIR", "Model directory the serving app loads (model.joblib, model.json, smoke.json)",
    "/app/artifact", kind="path", used_by=_APP)
var("MODELCI_MODEL_VERSION", "Model version the serving app reports (baked into the image by the build; "
    "default: model.json's version)", used_by=_APP)
var("MODELCI_WORKERS", "Serving worker processes, each with its own copy of the model (default: the CPUs "
    "available to the container: affinity mask and cgroup CPU quota)", kind="int", used_by=_APP)
var("MODELCI_MAX_BODY_BYTES", "Largest request body the serving app accepts (413 beyond; gRPC: the "
    "largest message)", "10485760", kind="int", used_by=_APP)
var("MODELCI_INLINE_ROWS", "Batches up to this many rows are predicted on the event loop, larger ones in "
    "a thread", "256", kind="int", used_by=_APP)
var("MODELCI_MAX_CONCURRENCY", "Requests in flight per serving worker before it answers 503 with "
    "Retry-After (gRPC: UNAVAILABLE); health checks and /metrics are exempt", "64", kind="int",
    used_by=_APP)
var("MODELCI_HEADER_TIMEOUT_S", "Seconds a client has to send a request's headers before the serving "
    "app closes the connection", "10", kind="float", used_by=_APP)
var("MODELCI_BODY_TIMEOUT_S", "Seconds a client has to send a request's whole body (408, connection "
    "closed, beyond)", "30", kind="float", used_by=_APP)
var("MODELCI_GRPC_THREADS", "Threads per serving worker for the gRPC service", "8", kind="int",
    used_by=_APP)
var("MODELCI_KEEPALIVE_S", "HTTP keep-alive timeout of the serving app (above a typical load balancer's "
    "60 s)", "75", kind="int", used_by=_APP)
var("MODELCI_LOG_LEVEL", "Log level of the serving app", "INFO", used_by=_APP)
var("MODELCI_ACCESS_LOG", "1: the serving app logs every request (costs throughput; /metrics counts "
    "them anyway)", "0", kind="bool", used_by=_APP)
