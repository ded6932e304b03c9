"""The Open Inference Protocol's gRPC service (inference.GRPCInferenceService) for the serving app.

Stubs: app/proto/grpc_predict_v2_pb2*.py are generated from app/proto/grpc_predict_v2.proto with
grpcio-tools and shipped (regenerate with the command in app/README.md; tests/test_app_oip.py checks
they match the .proto). Each worker runs a gRPC server on GRPC_PORT (SO_REUSEPORT: the kernel spreads
connections over the workers). Inference runs on the worker's event loop through the same code as
REST (`ServingApp.infer`): the same validation, statistics and metrics. Errors use the protocol's
status codes: INVALID_ARGUMENT (bad input, or the model cannot predict on it), NOT_FOUND (unknown
model or version), UNAVAILABLE (not ready, or too many requests in flight), INTERNAL.
"""
from __future__ import annotations

import asyncio
import logging
import time
from concurrent import futures
from typing import Any

import grpc

from . import __version__, binary
from .model import BadRequest
from .proto import grpc_predict_v2_pb2 as pb
from .proto import grpc_predict_v2_pb2_grpc as pb_grpc
from .server import EXTENSIONS, ServingApp

log = logging.getLogger("modelci.serving")

_CODES = {400: grpc.StatusCode.INVALID_ARGUMENT, 404: grpc.StatusCode.NOT_FOUND,
          408: grpc.StatusCode.DEADLINE_EXCEEDED, 413: grpc.StatusCode.RESOURCE_EXHAUSTED,
          422: grpc.StatusCode.INVALID_ARGUMENT, 503: grpc.StatusCode.UNAVAILABLE}
_CONTENTS = {"BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents",
             "INT32": "int_contents", "INT64": "int64_contents", "UINT8": "uint_contents",
             "UINT16": "uint_contents", "UINT32": "uint_contents", "UINT64": "uint64_contents",
             "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents"}
PREFIX = "/inference.GRPCInferenceService/"


def request_to_dict(req: Any) -> dict[str, Any]:
    """A ModelInferRequest as the REST JSON request (data decoded to lists)."""
    raw = list(req.raw_input_contents)
    if raw and len(raw) != len(req.inputs):
        raise BadRequest(f"raw_input_contents: {len(raw)} entries for {len(req.inputs)} inputs")
    inputs = []
    for i, t in enumerate(req.inputs):
        where = f"input '{t.name}'"
        if raw:
            if t.HasField("contents"):
                raise BadRequest(f"{where}: contents and raw_input_contents are exclusive")
            data = binary.decode(t.datatype, raw[i], where)
        else:
            field = _CONTENTS.get(t.datatype)
            if field is None:
                raise BadRequest(f"{where}: datatype {t.datatype!r} is not supported")
            data = list(getattr(t.contents, field))
            if t.datatype == "BYTES":
                try:
                    data = [b.decode("utf-8") for b in data]
                except UnicodeDecodeError:
                    raise BadRequest(f"{where}: BYTES element is not valid UTF-8 text") from None
        inputs.append({"name": t.name, "datatype": t.datatype, "shape": list(t.shape), "data": data})
    out: dict[str, Any] = {"inputs": inputs, "parameters": _params(req.parameters)}
    if req.outputs:
        out["outputs"] = [{"name": o.name} for o in req.outputs]
    return out


def _params(params: Any) -> dict[str, Any]:
    out = {}
    for k, v in params.items():
        which = v.WhichOneof("parameter_choice")
        if which:
            out[k] = getattr(v, which)
    return out


class Servicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, app: ServingApp) -> None:
        self.app = app

    # metadata and health answer from the gRPC thread (they only read state)
    def ServerLive(self, request: Any, context: Any) -> Any:
        return self._count("ServerLive", 200, time.perf_counter(), pb.ServerLiveResponse(live=True))

    def ServerReady(self, request: Any, context: Any) -> Any:
        return self._count("ServerReady", 200, time.perf_counter(),
                           pb.ServerReadyResponse(ready=self.app.is_ready()))

    def ServerMetadata(self, request: Any, context: Any) -> Any:
        return self._count("ServerMetadata", 200, time.perf_counter(), pb.ServerMetadataResponse(
            name="modelci-serving", version=__version__, extensions=EXTENSIONS))

    def ModelReady(self, request: Any, context: Any) -> Any:
        t0 = time.perf_counter()
        m = self.app.state.model
        ok = (m is not None and self.app.is_ready() and request.name == m.name
              and request.version in ("", m.version))
        return self._count("ModelReady", 200, t0, pb.ModelReadyResponse(ready=ok))

    def ModelMetadata(self, request: Any, context: Any) -> Any:
        t0 = time.perf_counter()
        try:
            m = self._model(request.name, request.version)
        except BadRequest as exc:
            self._abort("ModelMetadata", exc, t0, context)
        T = pb.ModelMetadataResponse.TensorMetadata
        outputs = [T(name="predict", datatype=m.predict_datatype, shape=[-1])]
        if m.has_proba:
            outputs.append(T(name="predict_proba", datatype="FP64",
                             shape=[-1, len(m.classes) if m.classes else -1]))
        return self._count("ModelMetadata", 200, t0, pb.ModelMetadataResponse(
            name=m.name, versions=[m.version] if m.version else [], platform="sklearn",
            inputs=[T(name=c.name, datatype=c.datatype, shape=[-1]) for c in m.columns],
            outputs=outputs))

    def ModelInfer(self, request: Any, context: Any) -> Any:
        t0 = time.perf_counter()
        loop = self.app.loop
        assert loop is not None
        fut = asyncio.run_coroutine_threadsafe(self._infer(request), loop)
        try:
            resp = fut.result()
        except BadRequest as exc:
            self._abort("ModelInfer", exc, t0, context)
        except Exception as exc:  # noqa: BLE001 - answered as INTERNAL, logged
            log.exception("internal error on gRPC ModelInfer")
            self.app.metrics.observe_request(PREFIX + "ModelInfer", "GRPC", 500, time.perf_counter() - t0)
            context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}")
        return self._count("ModelInfer", 200, t0, resp)

    async def _infer(self, request: Any) -> Any:
        app = self.app
        if app.inflight >= app.max_concurrency:
            raise BadRequest(f"too many requests in flight (MODELCI_MAX_CONCURRENCY={app.max_concurrency}); "
                             "retry shortly", 503)
        app.inflight += 1
        try:
            m = self._model(request.model_name, request.model_version)
            outputs = await app.infer(request_to_dict(request))
        finally:
            app.inflight -= 1
        t0 = time.perf_counter_ns()
        resp = pb.ModelInferResponse(model_name=m.name, model_version=m.version or "", id=request.id)
        for o in outputs:
            resp.outputs.add(name=o.name, datatype=o.datatype, shape=o.shape)
            resp.raw_output_contents.append(binary.encode(o.datatype, o.values))
        app.infer_stats.add("compute_output", time.perf_counter_ns() - t0)
        return resp

    def _model(self, name: str, version: str) -> Any:
        m = self.app.state.model
        if m is None or not self.app.state.ready:
            raise BadRequest(self.app._not_ready_reason(), 503)
        if name != m.name:
            raise BadRequest(f"unknown model '{name}'; this server serves '{m.name}'", 404)
        if version and version != m.version:
            raise BadRequest(f"unknown version '{version}' of model '{name}'; this server serves "
                             f"version {m.version}", 404)
        return m

    def _count(self, rpc: str, status: int, t0: float, resp: Any) -> Any:
        self.app.metrics.observe_request(PREFIX + rpc, "GRPC", status, time.perf_counter() - t0)
        return resp

    def _abort(self, rpc: str, exc: BadRequest, t0: float, context: Any) -> Any:
        self.app.metrics.observe_request(PREFIX + rpc, "GRPC", exc.status, time.perf_counter() - t0)
        context.abort(_CODES.get(exc.status, grpc.StatusCode.INTERNAL), exc.message)


class GrpcService:
    def __init__(self, app: ServingApp, host: str, port: int, threads: int) -> None:
        self.app = app
        self.address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.threads = threads
        self.server: Any = None

    def start(self) -> None:
        opts = [("grpc.so_reuseport", 1),
                ("grpc.max_receive_message_length", self.app.max_body),
                ("grpc.max_send_message_length", -1)]
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=self.threads,
                                                        thread_name_prefix="modelci-grpc"),
                             options=opts, maximum_concurrent_rpcs=max(self.app.max_concurrency, 1))
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(Servicer(self.app), server)
        if server.add_insecure_port(self.address) == 0:
            raise OSError(f"cannot bind {self.address}")
        server.start()
        self.server = server

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop(grace=5).wait(6)
