"""The serving app: a raw ASGI application (no framework) for uvicorn.

Endpoints (Open Inference Protocol / KServe V2 REST, plus plain JSON):
  GET  /v2/health/live                          200 {"live": true}
  GET  /v2/health/ready                         200 {"ready": true} | 503 {"ready": false, "error"}
  GET  /v2                                      server metadata {"name", "version", "extensions"}
  GET  /v2/models/{name}[/versions/{v}]         model metadata (inputs/outputs signature)
  GET  /v2/models/{name}[/versions/{v}]/ready   model readiness
  POST /v2/models/{name}[/versions/{v}]/infer   V2 inference (one tensor per input column), JSON or with
                                                the binary tensor data extension
  GET  /v2/models/{name}[/versions/{v}]/stats   inference statistics in Triton's format
  POST /predict                                 [{"col": v, ...}] or {"records": [...]}
                                                -> {"predictions": [...], "model_version"}
  GET  /lineage                                 where the model comes from
  GET  /metrics                                 Prometheus text format

Errors are JSON {"error": "..."}: 400 bad input, 404 unknown route/model/version, 405 wrong method,
408 body not received in time (the connection is closed), 413 body too large, 422 the model could not
predict on the given values, 503 not ready yet or too many requests in flight (with Retry-After).
The same service speaks gRPC (app/grpc_service.py) when started by `python -m app`.

V2 outputs: "predict" always; "predict_proba" (classifiers, shape [batch, n_classes], columns in the
order of the model metadata's parameters.classes) only when requested, either the V2 way with
"outputs": [{"name": "predict_proba"}, ...] or with "parameters": {"predict_proba": true}. When
"outputs" is given, exactly the named outputs are returned.

Configuration (environment): MODELCI_MODEL_DIR (default /app/artifact), MODELCI_MODEL_VERSION,
MODELCI_MAX_BODY_BYTES (default 10485760), MODELCI_INLINE_ROWS (batches up to this size are predicted
on the event loop, larger ones in a worker thread; default 256), MODELCI_MAX_CONCURRENCY (requests in
flight per worker before 503; default 64), MODELCI_BODY_TIMEOUT_S (whole body within; default 30).
See app/README.md.
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

from . import __version__, binary
from .cluster import WorkerGroup, configure_logging, merge, render, snapshot
from .metrics import InferStats, Metrics, ModelStats
from .model import BadRequest, Model, ModelLoadError

log = logging.getLogger("modelci.serving")

JSON = b"application/json"
_HDR_JSON = [(b"content-type", JSON)]
_HDR_METRICS = [(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")]
_HDR_BUSY = [(b"content-type", JSON), (b"retry-after", b"1")]
_HDR_CLOSE = [(b"content-type", JSON), (b"connection", b"close")]
# Answered even when the concurrency cap is reached (probes and scrapes must not be starved).
_UNCAPPED = frozenset({"/v2/health/live", "/v2/health/ready", "/metrics"})
EXTENSIONS = ["binary_tensor_data", "statistics"]
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


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    try:
        return float(raw) if raw.strip() else default
    except ValueError:
        raise SystemExit(f"environment: {name}={raw!r}: expected a number") from None


class Output:
    """One inference output: name, V2 datatype, shape, values (numpy)."""

    __slots__ = ("binary", "datatype", "name", "shape", "values")

    def __init__(self, name: str, datatype: str, shape: list[int], values: Any, binary: bool) -> None:
        self.name = name
        self.datatype = datatype
        self.shape = shape
        self.values = values
        self.binary = binary


class ServingApp:
    """ASGI app serving one model directory.

    on_fatal(code) is called (from the loader thread) when the model cannot be served; by default it
    ends the process with that exit code after logging why. `python -m app` replaces it with a
    graceful uvicorn shutdown followed by the same exit code.
    """

    def __init__(self, model_dir: str | None = None, version: str | None = None,
                 max_body: int | None = None, inline_rows: int | None = None,
                 on_fatal: Callable[[int], None] | None = None, max_concurrency: int | None = None,
                 body_timeout: float | None = None, group: WorkerGroup | None = None) -> None:
        self.model_dir = model_dir or os.environ.get("MODELCI_MODEL_DIR") or "/app/artifact"
        self.version_override = version or os.environ.get("MODELCI_MODEL_VERSION") or None
        self.max_body = max_body if max_body is not None else _env_int("MODELCI_MAX_BODY_BYTES", 10 << 20)
        self.inline_rows = inline_rows if inline_rows is not None else _env_int("MODELCI_INLINE_ROWS", 256)
        self.max_concurrency = max_concurrency if max_concurrency is not None else \
            _env_int("MODELCI_MAX_CONCURRENCY", 64)
        self.body_timeout = body_timeout if body_timeout is not None else \
            _env_float("MODELCI_BODY_TIMEOUT_S", 30.0)
        self.group = group
        self.on_fatal = on_fatal or _exit_process
        self.state = ServingState()
        self.metrics = Metrics(self.state)
        self.infer_stats = InferStats()
        self.inflight = 0
        self.loop: asyncio.AbstractEventLoop | None = None
        self._loader: threading.Thread | None = None
        self._sibling_server: asyncio.AbstractServer | None = None
        self.on_startup: list[Callable[[], Awaitable[None]]] = []
        self.on_shutdown: list[Callable[[], Awaitable[None]]] = []
        self._server_meta = orjson.dumps({"name": "modelci-serving", "version": __version__,
                                          "extensions": EXTENSIONS})

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
        if self.group is not None:
            self.group.set_ready(True)
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
                self.loop = asyncio.get_running_loop()
                if self.group is not None:
                    self._sibling_server = await self.group.serve(self._answer_sibling)
                for hook in self.on_startup:
                    await hook()
                self.start_loading()
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                if self.group is not None:
                    self.group.set_ready(False)
                for hook in self.on_shutdown:
                    await hook()
                if self._sibling_server is not None:
                    self._sibling_server.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # ------------------------------------------------------------------ workers
    def is_ready(self) -> bool:
        """This worker is ready, and so is every sibling worker."""
        return self.state.ready and (self.group is None or self.group.all_ready())

    async def _answer_sibling(self, topic: bytes) -> bytes:
        if topic == b"stats":
            return orjson.dumps(self.infer_stats.snapshot())
        return orjson.dumps(snapshot(self.metrics.registry))

    async def metrics_text(self) -> bytes:
        from prometheus_client import generate_latest

        if self.group is None or self.group.size == 1:
            return generate_latest(self.metrics.registry)
        snaps = await self.group.gather(b"metrics", snapshot(self.metrics.registry))
        return render(merge(snaps))

    async def stats_snapshot(self) -> dict[str, Any]:
        own = self.infer_stats.snapshot()
        if self.group is None or self.group.size == 1:
            return own
        return InferStats.merged(await self.group.gather(b"stats", own))

    async def _http(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        t0 = time.perf_counter()
        path: str = scope["path"]
        method: str = scope["method"]
        endpoint = "other"
        capped = path not in _UNCAPPED
        try:
            if capped:
                if self.inflight >= self.max_concurrency:
                    raise BadRequest(f"too many requests in flight (MODELCI_MAX_CONCURRENCY="
                                     f"{self.max_concurrency}); retry shortly", 503, _HDR_BUSY)
                self.inflight += 1
            try:
                endpoint, status, body, headers = await self._route(path, method, scope, receive)
            finally:
                if capped:
                    self.inflight -= 1
        except BadRequest as exc:
            endpoint = _endpoint_label(path)
            status, body = exc.status, orjson.dumps({"error": exc.message})
            headers = exc.headers or _HDR_JSON
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
            if self.is_ready():
                return path, 200, b'{"ready":true}', _HDR_JSON
            return path, 503, orjson.dumps({"ready": False, "error": self._not_ready_reason()}), _HDR_JSON
        if path == "/v2/health/live":
            _method(method, "GET", "HEAD")
            return path, 200, b'{"live":true}', _HDR_JSON
        if path == "/metrics":
            _method(method, "GET")
            return path, 200, await self.metrics_text(), _HDR_METRICS
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
        if len(rest) > 1 or action not in ("", "ready", "infer", "stats") or not name:
            raise BadRequest(f"no route {path}", 404)
        endpoint = "/v2/models/{name}" + ("/versions/{version}" if version is not None else "") + \
            (f"/{action}" if action else "")
        m = self.state.model
        if not self.state.ready or m is None or (action == "ready" and not self.is_ready()):
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
            hlen = None
            for k, v in scope["headers"]:
                if k == b"inference-header-content-length":
                    hlen = v
                    break
            out, hdrs = await self._infer_rest(body, hlen)
            return endpoint, 200, out, hdrs
        if action == "stats":
            _method(method, "GET")
            return endpoint, 200, await self._stats_body(m.name, m.version), _HDR_JSON
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

    async def _stats_body(self, name: str | None, version: str | None) -> bytes:
        m = self.state.model
        if m is None:
            return b'{"model_stats":[]}'
        st = await self.stats_snapshot()
        d = st["durations"]
        return orjson.dumps({"model_stats": [{
            "name": m.name, "version": m.version or "",
            "last_inference": st["last_inference"],
            "inference_count": st["inference_count"], "execution_count": st["execution_count"],
            "inference_stats": {k: {"count": c, "ns": ns} for k, (c, ns) in d.items()},
            "response_stats": {},
            "batch_stats": [],
            "memory_usage": [],
        }]})

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
        try:
            async with asyncio.timeout(self.body_timeout):
                return await self._read_body_chunks(receive, limit)
        except TimeoutError:
            raise BadRequest(f"request body not received within {self.body_timeout:g}s "
                             "(MODELCI_BODY_TIMEOUT_S); closing the connection", 408, _HDR_CLOSE) from None

    @staticmethod
    async def _read_body_chunks(receive: Receive, limit: int) -> bytes:
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

    async def _infer_rest(self, body: bytes, header_length: bytes | None) -> tuple[bytes, list[tuple[bytes, bytes]]]:
        """V2 infer over REST: a JSON request, or the binary tensor data extension (a JSON header of
        Inference-Header-Content-Length bytes followed by the inputs' raw data)."""
        if header_length is None:
            req = self._parse(body)
        else:
            try:
                hlen = int(header_length)
            except ValueError:
                raise BadRequest("Inference-Header-Content-Length: not an integer") from None
            if not 0 < hlen <= len(body):
                raise BadRequest(f"Inference-Header-Content-Length: {hlen} is outside the body's "
                                 f"{len(body)} bytes")
            req = self._parse(body[:hlen])
            if type(req) is dict:
                _attach_binary_inputs(req, memoryview(body)[hlen:])
        if type(req) is not dict:
            raise BadRequest("body: expected a V2 inference request object {\"inputs\": [...]}")
        m = self.state.model
        assert m is not None
        outputs = await self.infer(req)
        t0 = time.perf_counter_ns()
        resp: dict[str, Any] = {"model_name": m.name, "model_version": m.version}
        rid = req.get("id")
        if rid is not None:
            resp["id"] = rid
        chunks: list[bytes] = []
        out = []
        for o in outputs:
            if o.binary:
                raw = binary.encode(o.datatype, o.values)
                chunks.append(raw)
                out.append({"name": o.name, "datatype": o.datatype, "shape": o.shape,
                            "parameters": {"binary_data_size": len(raw)}})
            else:
                out.append({"name": o.name, "datatype": o.datatype, "shape": o.shape,
                            "data": o.values.tolist() if o.name == "predict" else o.values.ravel()})
        resp["outputs"] = out
        header = orjson.dumps(resp, option=_NUMPY)
        self.infer_stats.add("compute_output", time.perf_counter_ns() - t0)
        if not chunks:
            return header, _HDR_JSON
        return header + b"".join(chunks), [(b"content-type", b"application/octet-stream"),
                                           (b"inference-header-content-length", str(len(header)).encode())]

    async def infer(self, req: dict[str, Any]) -> list[Output]:
        """Validate a V2 request (inputs' data already decoded to lists), predict, count it; the
        outputs asked for. Shared by REST (JSON and binary) and gRPC. Raises BadRequest."""
        m = self.state.model
        assert m is not None and self.state.stats is not None
        t0 = time.perf_counter_ns()
        try:
            want_predict, want_proba, binary_out = self._requested_outputs(req, m)
            batch = m.decode_v2(req.get("inputs"))
            t1 = time.perf_counter_ns()
            y, p = await self._run_predict(batch, want_proba)
            t2 = time.perf_counter_ns()
        except BadRequest:
            self.infer_stats.add("fail", time.perf_counter_ns() - t0)
            raise
        self.state.stats.observe(batch, y)
        st = self.infer_stats
        st.add("compute_input", t1 - t0)
        st.add("compute_infer", t2 - t1)
        st.add("success", t2 - t0)
        st.inference_count += batch.rows
        st.execution_count += 1
        st.last_inference = int(time.time() * 1000)
        out = []
        if want_predict:
            out.append(Output("predict", m.predict_datatype, [batch.rows], y, binary_out["predict"]))
        if want_proba:
            assert p is not None
            out.append(Output("predict_proba", "FP64", [batch.rows, int(p.shape[1])], p,
                              binary_out["predict_proba"]))
        return out

    @staticmethod
    def _requested_outputs(req: dict[str, Any], m: Model) -> tuple[bool, bool, dict[str, bool]]:
        params = req.get("parameters")
        if params is not None and type(params) is not dict:
            raise BadRequest("parameters: expected an object")
        params = params or {}
        default_binary = params.get("binary_data_output") is True
        binary_out = {"predict": default_binary, "predict_proba": default_binary}
        want_predict, want_proba = True, False
        outputs = req.get("outputs")
        if outputs is not None:
            if type(outputs) is not list:
                raise BadRequest("outputs: expected a list of {\"name\": ...}")
            names = []
            for o in outputs:
                if type(o) is not dict or not isinstance(o.get("name"), str):
                    raise BadRequest("outputs: expected a list of {\"name\": ...}")
                n = o["name"]
                if n not in ("predict", "predict_proba"):
                    raise BadRequest(f"outputs: unknown output '{n}'; this model has predict"
                                     + (" and predict_proba" if m.has_proba else ""))
                names.append(n)
                op = o.get("parameters")
                if type(op) is dict and "binary_data" in op:
                    binary_out[n] = op["binary_data"] is True
            if names:
                want_predict = "predict" in names
                want_proba = "predict_proba" in names
        if params.get("predict_proba") is True:
            want_proba = True
        if want_proba and not m.has_proba:
            raise BadRequest("predict_proba: this model has no class probabilities", 400)
        return want_predict, want_proba, binary_out


def _attach_binary_inputs(req: dict[str, Any], raw: memoryview) -> None:
    """Binary tensor data extension: inputs with parameters.binary_data_size take their data, in
    order, from the bytes after the JSON header."""
    inputs = req.get("inputs")
    off = 0
    if type(inputs) is list:
        for i, t in enumerate(inputs):
            params = t.get("parameters") if type(t) is dict else None
            size = params.get("binary_data_size") if type(params) is dict else None
            if size is None:
                continue
            if type(size) is not int or size < 0:
                raise BadRequest(f"inputs[{i}].parameters.binary_data_size: expected a byte count")
            if off + size > len(raw):
                raise BadRequest(f"inputs[{i}]: binary_data_size {size} overruns the {len(raw)} bytes of "
                                 "binary data")
            if "data" in t:
                raise BadRequest(f"inputs[{i}]: give either data or binary_data_size, not both")
            t["data"] = binary.decode(t.get("datatype"), bytes(raw[off:off + size]),
                                      f"input '{t.get('name')}'")
            off += size
    if off != len(raw):
        raise BadRequest(f"binary data: {len(raw) - off} bytes after the JSON header are not claimed by "
                         "any input's binary_data_size")


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
        if len(rest) == 1 and rest[0] in ("ready", "infer", "stats"):
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


def create_app(**kwargs: Any) -> ServingApp:
    configure_logging()
    return ServingApp(**kwargs)


app = create_app()
