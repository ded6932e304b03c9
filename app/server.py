"""The serving app: a raw ASGI application (no framework) for uvicorn.

Endpoints (Open Inference Protocol / KServe V2 REST, plus plain JSON):
  GET  /v2/health/live                          200 {"live": true}
  GET  /v2/health/ready                         200 {"ready": true} | 503 {"ready": false, "error"}
  GET  /v2                                      server metadata {"name", "version", "extensions"}
  GET  /v2/models/{name}[/versions/{v}]         model metadata (inputs/outputs signature)
  GET  /v2/models/{name}[/versions/{v}]/ready   model readiness
  POST /v2/models/{name}[/versions/{v}]/infer   V2 inference (one tensor per input column)
  POST /predict                                 [{"col": v, ...}] or {"records": [...]}
                                                -> {"predictions": [...], "model_version"}
  GET  /lineage                                 where the model comes from
  GET  /metrics                                 Prometheus text format

Errors are JSON {"error": "..."}: 400 bad input, 404 unknown route/model/version, 405 wrong method,
413 body too large, 422 the model could not predict on the given values, 503 not ready yet.

V2 outputs: "predict" always; "predict_proba" (classifiers, shape [batch, n_classes], columns in the
order of the model metadata's parameters.classes) only when requested, either the V2 way with
"outputs": [{"name": "predict_proba"}, ...] or with "parameters": {"predict_proba": true}. When
"outputs" is given, exactly the named outputs are returned.

Configuration (environment): MODELCI_MODEL_DIR (default /app/artifact), MODELCI_MODEL_VERSION,
MODELCI_MAX_BODY_BYTES (default 10485760), MODELCI_INLINE_ROWS (batches up to this size are predicted
on the event loop, larger ones in a worker thread; default 256).
"""
from __future__ import annotations

import asyncio
import gc
import logging
import os
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from . import __version__
from .metrics import Metrics, ModelStats
from .model import BadRequest, Model, ModelLoadError

log = logging.getLogger("modelci.serving")

JSON = b"application/json"
_HDR_JSON = [(b"content-type", JSON)]
_HDR_METRICS = [(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")]
_NUMPY = orjson.OPT_SERIALIZE_NUMPY

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]


class ServingState:
    def __init__(self) -> None:
        self.model: Model | None = None
        self.stats: ModelStats | None = None
        self.ready = False
        self.failed: str | None = None
        self.loading = False


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    try:
        return int(raw) if raw.strip() else default
    except ValueError:
        raise SystemExit(f"environment: {name}={raw!r}: expected an integer") from None


class ServingApp:
    """ASGI app serving one model directory.

    on_fatal(code) is called (from the loader thread) when the model cannot be served; by default it
    ends the process with that exit code after logging why. `python -m app` replaces it with a
    graceful uvicorn shutdown followed by the same exit code.
    """

    def __init__(self, model_dir: str | None = None, version: str | None = None,
                 max_body: int | None = None, inline_rows: int | None = None,
                 on_fatal: Callable[[int], None] | None = None) -> None:
        self.model_dir = model_dir or os.environ.get("MODELCI_MODEL_DIR") or "/app/artifact"
        self.version_override = version or os.environ.get("MODELCI_MODEL_VERSION") or None
        self.max_body = max_body if max_body is not None else _env_int("MODELCI_MAX_BODY_BYTES", 10 << 20)
        self.inline_rows = inline_rows if inline_rows is not None else _env_int("MODELCI_INLINE_ROWS", 256)
        self.on_fatal = on_fatal or _exit_process
        self.state = ServingState()
        self.metrics = Metrics(self.state)
        self._loader: threading.Thread | None = None
        self._server_meta = orjson.dumps({"name": "modelci-serving", "version": __version__,
                                          "extensions": []})

    # ------------------------------------------------------------------ loading
    def start_loading(self) -> threading.Thread:
        """Verify, load and warm up the model in a background thread (the server answers liveness
        meanwhile; readiness turns true only at the end)."""
        if self._loader is None:
            self.state.loading = True
            self._loader = threading.Thread(target=self._load, name="modelci-model-loader", daemon=True)
            self._loader.start()
        return self._loader

    def load(self) -> None:
        """Load synchronously (tests, tooling). Raises ModelLoadError."""
        self.state.loading = True
        self._load_or_raise()

    def _load(self) -> None:
        try:
            self._load_or_raise()
        except ModelLoadError as exc:
            log.error("refusing to serve: %s", exc)
            self.on_fatal(1)
        except Exception:
            log.exception("refusing to serve: unexpected error while loading %s", self.model_dir)
            self.on_fatal(1)

    def _load_or_raise(self) -> None:
        t0 = time.perf_counter()
        try:
            model = Model(self.model_dir, self.version_override)
            log.info("model %s version %s (sha256 %s) loaded from %s; warming up", model.name,
                     model.version, model.sha256[:12], self.model_dir)
            model.warmup()
        except ModelLoadError as exc:
            self.state.failed = str(exc)
            self.state.loading = False
            raise
        self._build_static(model)
        self.state.stats = ModelStats(model)
        self.state.model = model
        # The model's object graph is long-lived: keep the cyclic GC from rescanning it.
        gc.collect()
        gc.freeze()
        self.metrics.load_seconds.set(time.perf_counter() - t0)
        self.state.loading = False
        self.state.ready = True
        log.info("ready: model %s version %s, %d inputs, in %.2fs", model.name, model.version,
                 len(model.columns), time.perf_counter() - t0)

    def _build_static(self, m: Model) -> None:
        outputs = [{"name": "predict", "datatype": m.predict_datatype, "shape": [-1]}]
        if m.has_proba:
            outputs.append({"name": "predict_proba", "datatype": "FP64",
                            "shape": [-1, len(m.classes) if m.classes else -1]})
        params: dict[str, Any] = {"task": m.task}
        if m.classes is not None:
            params["classes"] = m.classes
        self._model_meta = orjson.dumps({
            "name": m.name,
            "versions": [m.version] if m.version else [],
            "platform": "sklearn",
            "inputs": [{"name": c.name, "datatype": c.datatype, "shape": [-1],
                        "parameters": {"kind": c.kind}} for c in m.columns],
            "outputs": outputs,
            "parameters": params,
        })
        meta = m.meta
        self._lineage = orjson.dumps({
            "name": m.name, "model_version": m.version, "sha256": m.sha256,
            "data_sha256": meta.get("data_sha256"), "commit": meta.get("commit"),
            "run_id": meta.get("run_id"), "metrics": meta.get("metrics") or {},
            "trained_at": meta.get("trained_at"),
            **({"image": os.environ["MODELCI_IMAGE"]} if os.environ.get("MODELCI_IMAGE") else {}),  # by deploy
        })
        self._version_bytes = m.version

    # ------------------------------------------------------------------ ASGI
    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        typ = scope["type"]
        if typ == "http":
            await self._http(scope, receive, send)
        elif typ == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                self.start_loading()
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        t0 = time.perf_counter()
        path: str = scope["path"]
        method: str = scope["method"]
        endpoint = "other"
        try:
            endpoint, status, body, headers = await self._route(path, method, scope, receive)
        except BadRequest as exc:
            endpoint = _endpoint_label(path)
            status, body, headers = exc.status, orjson.dumps({"error": exc.message}), _HDR_JSON
        except Exception as exc:
            endpoint = _endpoint_label(path)
            log.exception("internal error on %s %s", method, path)
            status, body, headers = 500, orjson.dumps({"error": f"internal error: {type(exc).__name__}"}), \
                _HDR_JSON
        await send({"type": "http.response.start", "status": status,
                    "headers": headers + [(b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
        self.metrics.observe_request(endpoint, method, status, time.perf_counter() - t0)

    async def _route(self, path: str, method: str, scope: dict[str, Any],
                     receive: Receive) -> tuple[str, int, bytes, list[tuple[bytes, bytes]]]:
        st = self.state
        if path.startswith("/v2/models/"):
            return await self._models_route(path, method, scope, receive)
        if path == "/predict":
            endpoint = "/predict"
            _method(method, "POST")
            self._require_ready()
            body = await self._read_body(scope, receive)
            return endpoint, 200, await self._predict_plain(body), _HDR_JSON
        if path == "/v2/health/ready":
            _method(method, "GET", "HEAD")
            if st.ready:
                return path, 200, b'{"ready":true}', _HDR_JSON
            return path, 503, orjson.dumps({"ready": False, "error": self._not_ready_reason()}), _HDR_JSON
        if path == "/v2/health/live":
            _method(method, "GET", "HEAD")
            return path, 200, b'{"live":true}', _HDR_JSON
        if path == "/metrics":
            _method(method, "GET")
            from prometheus_client import generate_latest

            return path, 200, generate_latest(self.metrics.registry), _HDR_METRICS
        if path == "/lineage":
            _method(method, "GET")
            self._require_ready()
            return path, 200, self._lineage, _HDR_JSON
        if path in ("/v2", "/v2/"):
            _method(method, "GET")
            return "/v2", 200, self._server_meta, _HDR_JSON
        raise BadRequest(f"no route {path}; see /v2, /v2/models/<name>, /predict, /lineage, /metrics", 404)

    async def _models_route(self, path: str, method: str, scope: dict[str, Any],
                            receive: Receive) -> tuple[str, int, bytes, list[tuple[bytes, bytes]]]:
        # /v2/models/{name}[/versions/{v}][/ready|/infer]
        parts = path[len("/v2/models/"):].split("/")
        name = parts[0]
        rest = parts[1:]
        version = None
        if len(rest) >= 2 and rest[0] == "versions":
            version = rest[1]
            rest = rest[2:]
        action = rest[0] if rest else ""
        if len(rest) > 1 or action not in ("", "ready", "infer") or not name:
            raise BadRequest(f"no route {path}", 404)
        endpoint = "/v2/models/{name}" + ("/versions/{version}" if version is not None else "") + \
            (f"/{action}" if action else "")
        m = self.state.model
        if not self.state.ready or m is None:
            if action == "ready":
                _method(method, "GET", "HEAD")
                return endpoint, 503, orjson.dumps({"name": name, "ready": False,
                                                    "error": self._not_ready_reason()}), _HDR_JSON
            raise BadRequest(self._not_ready_reason(), 503)
        if name != m.name:
            raise BadRequest(f"unknown model '{name}'; this server serves '{m.name}'", 404)
        if version is not None and version != m.version:
            raise BadRequest(f"unknown version '{version}' of model '{name}'; this server serves "
                             f"version {m.version}", 404)
        if action == "infer":
            _method(method, "POST")
            body = await self._read_body(scope, receive)
            return endpoint, 200, await self._infer_v2(body), _HDR_JSON
        _method(method, "GET", "HEAD")
        if action == "ready":
            return endpoint, 200, orjson.dumps({"name": name, "ready": True}), _HDR_JSON
        return endpoint, 200, self._model_meta, _HDR_JSON

    def _not_ready_reason(self) -> str:
        if self.state.failed:
            return f"model failed to load: {self.state.failed}"
        return "model is loading"

    def _require_ready(self) -> None:
        if not self.state.ready:
            raise BadRequest(self._not_ready_reason(), 503)

    async def _read_body(self, scope: dict[str, Any], receive: Receive) -> bytes:
        limit = self.max_body
        for k, v in scope["headers"]:
            if k == b"content-length":
                try:
                    declared = int(v)
                except ValueError:
                    raise BadRequest("invalid Content-Length header") from None
                if declared > limit:
                    raise BadRequest(f"request body of {declared} bytes exceeds the limit of {limit} bytes "
                                     "(MODELCI_MAX_BODY_BYTES); split the batch", 413)
                break
        msg = await receive()
        body = msg.get("body", b"")
        if not msg.get("more_body") and len(body) <= limit:
            return body
        chunks = [body]
        size = len(body)
        while size <= limit:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                raise BadRequest("client disconnected", 400)
            chunk = msg.get("body", b"")
            size += len(chunk)
            chunks.append(chunk)
            if not msg.get("more_body") and size <= limit:
                return b"".join(chunks)
        raise BadRequest(f"request body exceeds the limit of {limit} bytes (MODELCI_MAX_BODY_BYTES); "
                         "split the batch", 413)

    @staticmethod
    def _parse(body: bytes) -> Any:
        if not body:
            raise BadRequest("empty body; send a JSON document")
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise BadRequest(f"body is not valid JSON: {exc}") from None

    async def _run_predict(self, batch: Any, proba: bool) -> tuple[Any, Any]:
        m = self.state.model
        assert m is not None
        if batch.rows <= self.inline_rows:
            return m.predict(batch, proba)
        return await asyncio.get_running_loop().run_in_executor(None, m.predict, batch, proba)

    async def _predict_plain(self, body: bytes) -> bytes:
        m = self.state.model
        assert m is not None and self.state.stats is not None
        doc = self._parse(body)
        if type(doc) is dict:
            if "records" not in doc:
                raise BadRequest('body: expected a list of records or {"records": [...]}')
            doc = doc["records"]
        batch = m.decode_records(doc)
        y, _ = await self._run_predict(batch, False)
        self.state.stats.observe(batch, y)
        return orjson.dumps({"predictions": y.tolist(), "model_version": m.version})

    async def _infer_v2(self, body: bytes) -> bytes:
        m = self.state.model
        assert m is not None and self.state.stats is not None
        req = self._parse(body)
        if type(req) is not dict:
            raise BadRequest("body: expected a V2 inference request object {\"inputs\": [...]}")
        want_predict, want_proba = True, False
        outputs = req.get("outputs")
        if outputs is not None:
            if type(outputs) is not list:
                raise BadRequest("outputs: expected a list of {\"name\": ...}")
            names = []
            for o in outputs:
                if type(o) is not dict or not isinstance(o.get("name"), str):
                    raise BadRequest("outputs: expected a list of {\"name\": ...}")
                names.append(o["name"])
            for n in names:
                if n not in ("predict", "predict_proba"):
                    raise BadRequest(f"outputs: unknown output '{n}'; this model has predict"
                                     + (" and predict_proba" if m.has_proba else ""))
            if names:
                want_predict = "predict" in names
                want_proba = "predict_proba" in names
        params = req.get("parameters")
        if type(params) is dict and params.get("predict_proba") is True:
            want_proba = True
        if want_proba and not m.has_proba:
            raise BadRequest("predict_proba: this model has no class probabilities", 400)
        batch = m.decode_v2(req.get("inputs"))
        y, p = await self._run_predict(batch, want_proba)
        self.state.stats.observe(batch, y)
        out = []
        if want_predict:
            out.append({"name": "predict", "datatype": m.predict_datatype, "shape": [batch.rows],
                        "data": y.tolist()})
        if want_proba:
            out.append({"name": "predict_proba", "datatype": "FP64", "shape": [batch.rows, p.shape[1]],
                        "data": p.ravel()})
        resp: dict[str, Any] = {"model_name": m.name, "model_version": m.version, "outputs": out}
        rid = req.get("id")
        if rid is not None:
            resp["id"] = rid
        return orjson.dumps(resp, option=_NUMPY)


_STATIC = frozenset({"/predict", "/v2/health/ready", "/v2/health/live", "/metrics", "/lineage", "/v2"})


def _endpoint_label(path: str) -> str:
    """The route template for metrics labels (bounded cardinality), also for rejected requests."""
    if path in _STATIC:
        return path
    if path.startswith("/v2/models/"):
        rest = path[len("/v2/models/"):].split("/")[1:]
        label = "/v2/models/{name}"
        if len(rest) >= 2 and rest[0] == "versions":
            label += "/versions/{version}"
            rest = rest[2:]
        if len(rest) == 1 and rest[0] in ("ready", "infer"):
            return f"{label}/{rest[0]}"
        return label if not rest else "other"
    return "other"


def _method(method: str, *allowed: str) -> None:
    if method not in allowed:
        raise BadRequest(f"method {method} not allowed here; use {' or '.join(allowed)}", 405)


def _exit_process(code: int) -> None:
    """Default on_fatal when run as `uvicorn app.server:app`: nothing can be served, exit now."""
    logging.shutdown()
    sys.stderr.flush()
    os._exit(code)


def configure_logging() -> None:
    root = logging.getLogger("modelci")
    if not root.handlers:
        h = logging.StreamHandler(sys.stderr)
        h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(h)
        root.setLevel(os.environ.get("MODELCI_LOG_LEVEL", "INFO").upper())


def create_app(**kwargs: Any) -> ServingApp:
    configure_logging()
    return ServingApp(**kwargs)


app = create_app()
